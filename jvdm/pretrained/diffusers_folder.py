"""A diffusers-format model folder: `model_index.json` names each component's library and class,
and each component has a folder of its own (`transformer/`, `vae/`, `text_encoder/`,
`tokenizer/`, `scheduler/`). This module reads the index and the components jvdm can build
so far: the UMT5 text encoder, its tokenizer, the CLIP image encoder with its processor, and the
scheduler as jvdm sampler settings.
"""

import dataclasses
import pathlib
from typing import Any

from jvdm.diffusion.flow import FlowProcess
from jvdm.errors import CheckpointError, ConfigError
from jvdm.pretrained.clip_vision import (
  ImageEncoder,
  load_clip_preprocessing,
  load_clip_vision,
)
from jvdm.pretrained.json_files import read_json
from jvdm.pretrained.umt5 import load_umt5
from jvdm.pretrained.wan_prompts import WAN_MAX_LENGTH, PromptEncoder, load_tokenizer

MODEL_INDEX = "model_index.json"
# Components jvdm reads: name in model_index.json -> the classes it can build from them.
SUPPORTED_CLASSES = {
  "transformer": ("WanTransformer3DModel",),
  "vae": ("AutoencoderKLWan",),
  "text_encoder": ("UMT5EncoderModel",),
  "tokenizer": ("T5TokenizerFast", "AutoTokenizer", "T5Tokenizer"),
  "scheduler": ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"),
  "image_encoder": ("CLIPVisionModel", "CLIPVisionModelWithProjection"),
  "image_processor": ("CLIPImageProcessor", "CLIPImageProcessorFast"),
}


def _read_index(folder: pathlib.Path) -> dict[str, Any]:
  return read_json(
    folder / MODEL_INDEX,
    "a diffusers-format model folder (expected model_index.json beside transformer/, vae/, "
    "text_encoder/, tokenizer/, scheduler/)",
  )


def pipeline_options(folder: str | pathlib.Path) -> dict[str, Any]:
  """The entries of `model_index.json` that are not components: `_class_name` (the pipeline)
  and its options (e.g. `boundary_ratio`, `expand_timesteps`)."""
  index = _read_index(pathlib.Path(folder))
  return {name: value for name, value in index.items() if not isinstance(value, list)}


def read_model_index(folder: str | pathlib.Path) -> dict[str, tuple[str, str]]:
  """component -> (library, class name), from the folder's `model_index.json`; CheckpointError
  for a folder that is not in diffusers format or lacks a listed component's folder."""
  folder = pathlib.Path(folder)
  path = folder / MODEL_INDEX
  index = _read_index(folder)
  components = {
    name: tuple(value)
    for name, value in index.items()
    if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and value[1]
  }
  missing = [name for name in components if not (folder / name).is_dir()]
  if missing:
    raise CheckpointError(f"{path} lists components whose folders are missing: {missing}.")
  return components


def check_component(folder: str | pathlib.Path, name: str) -> pathlib.Path:
  """The folder of component `name`, once jvdm can build its class (ConfigError naming the
  class and what jvdm builds otherwise)."""
  components = read_model_index(folder)
  if name not in components:
    raise CheckpointError(f"{pathlib.Path(folder) / MODEL_INDEX} lists no {name!r} component.")
  _, class_name = components[name]
  if class_name not in SUPPORTED_CLASSES.get(name, ()):
    raise ConfigError(
      f"The {name!r} of {folder} is a {class_name}, which jvdm cannot build yet; it builds "
      + ", ".join(f"{n}: {list(c)}" for n, c in SUPPORTED_CLASSES.items())
      + "."
    )
  return pathlib.Path(folder) / name


@dataclasses.dataclass(frozen=True)
class SchedulerSettings:
  """A diffusers flow scheduler as jvdm's process and sampler settings (`config.sample`)."""

  process: FlowProcess
  prediction: str
  sampler: str
  spacing: str
  # The scheduler calls the network at integer timesteps (UniPC's are int64; FlowMatchEuler's
  # are sigma * 1000 as they are).
  integer_timesteps: bool


def scheduler_settings(folder: str | pathlib.Path) -> SchedulerSettings:
  """The sampler that reproduces the folder's scheduler number for number: UniPC with
  `use_flow_sigmas` (Wan 2.1) or flow-matching Euler. ConfigError names a setting jvdm's
  sampler does not reproduce."""
  path = check_component(folder, "scheduler") / "scheduler_config.json"
  config = read_json(path, "a diffusers scheduler folder")

  def require(key, expected, default=None):
    if config.get(key, default) != expected:
      raise ConfigError(
        f"{path}: {key}={config.get(key, default)!r}; jvdm's sampler reproduces {key}="
        f"{expected!r} for a {config['_class_name']}."
      )

  require("num_train_timesteps", 1000)
  require("use_dynamic_shifting", False, False)
  if config["_class_name"] == "FlowMatchEulerDiscreteScheduler":
    return SchedulerSettings(
      FlowProcess(shift=config.get("shift", 1.0)), "flow", "flow_euler", "flow", False
    )
  require("use_flow_sigmas", True)
  require("prediction_type", "flow_prediction")
  require("solver_order", 2)
  require("solver_type", "bh2")
  require("predict_x0", True)
  require("final_sigmas_type", "zero", "zero")
  require("thresholding", False, False)
  return SchedulerSettings(FlowProcess(shift=config["flow_shift"]), "flow", "unipc", "flow", True)


def load_prompt_encoder(
  folder: str | pathlib.Path, max_length: int = WAN_MAX_LENGTH, **placement
) -> PromptEncoder:
  """Wan's prompt encoding from the folder's `text_encoder/` and `tokenizer/`; `placement`:
  `load_umt5`'s dtype, mesh and rules."""
  encoder, params = load_umt5(check_component(folder, "text_encoder"), **placement)
  tokenizer = load_tokenizer(check_component(folder, "tokenizer"))
  return PromptEncoder(tokenizer, encoder, params, max_length)


def load_image_encoder(folder: str | pathlib.Path) -> ImageEncoder:
  """The CLIP image encoder of the folder's `image_encoder/` with the preprocessing of its
  `image_processor/`, giving the features Wan's image-to-video pipeline takes
  (`hidden_states[-2]`)."""
  model, params = load_clip_vision(check_component(folder, "image_encoder"))
  preprocessing = load_clip_preprocessing(check_component(folder, "image_processor"))
  if preprocessing.crop_size != (model.image_size, model.image_size):
    raise ConfigError(
      f"{folder}: the image processor crops {preprocessing.crop_size}; the image encoder takes "
      f"{model.image_size}x{model.image_size} images."
    )
  return ImageEncoder(preprocessing, model, params)
