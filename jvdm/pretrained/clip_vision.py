"""CLIP image encoders saved by transformers (`CLIPVisionModel.save_pretrained`: `config.json`
and safetensors, e.g. the `image_encoder/` folder of Wan 2.1's image-to-video models) as
`jvdm.models.clip_vision.CLIPVisionEncoder`, with the preprocessing of the matching
`CLIPImageProcessor` (`image_processor/preprocessor_config.json`).

  encoder = load_image_encoder("Wan2.1-I2V-14B-480P-Diffusers")  # image_encoder/, image_processor/
  features = encoder([image])  # [1, 257, 1280]: transformers' hidden_states[-2]

The preprocessing resizes with PIL (bicubic) as transformers' PIL backend does, so the pixel
values equal transformers' (the tests: to float32 rounding).
"""

import dataclasses
import functools
import pathlib
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
from flax import traverse_util

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.clip_vision import ACTIVATIONS, CLIPVisionEncoder
from jvdm.pretrained.images import as_pil_image
from jvdm.pretrained.json_files import read_json
from jvdm.pretrained.safetensors_files import iter_tensors

# transformers' key (after "encoder.layers.{i}.") -> jvdm layer's param path. Keys may start with
# "vision_model." (as transformers before 5 saved them, e.g. Wan's image encoders) or not.
_LAYER_KEYS = {
  "layer_norm1.weight": ("attention_norm", "scale"),
  "layer_norm1.bias": ("attention_norm", "bias"),
  "self_attn.q_proj.weight": ("query", "kernel"),
  "self_attn.q_proj.bias": ("query", "bias"),
  "self_attn.k_proj.weight": ("key", "kernel"),
  "self_attn.k_proj.bias": ("key", "bias"),
  "self_attn.v_proj.weight": ("value", "kernel"),
  "self_attn.v_proj.bias": ("value", "bias"),
  "self_attn.out_proj.weight": ("out", "kernel"),
  "self_attn.out_proj.bias": ("out", "bias"),
  "layer_norm2.weight": ("mlp_norm", "scale"),
  "layer_norm2.bias": ("mlp_norm", "bias"),
  "mlp.fc1.weight": ("up", "kernel"),
  "mlp.fc1.bias": ("up", "bias"),
  "mlp.fc2.weight": ("down", "kernel"),
  "mlp.fc2.bias": ("down", "bias"),
}
_GLOBAL_KEYS = {
  "embeddings.class_embedding": ("class_embedding",),
  "embeddings.patch_embedding.weight": ("patch_embedding", "kernel"),
  "embeddings.position_embedding.weight": ("position_embedding",),
  "pre_layrnorm.weight": ("pre_norm", "scale"),
  "pre_layrnorm.bias": ("pre_norm", "bias"),
}
# Keys of a CLIP vision model that the penultimate features do not use.
_UNUSED_KEYS = (
  "post_layernorm.weight",
  "post_layernorm.bias",
  "embeddings.position_ids",  # a buffer older transformers saved
  "visual_projection.weight",  # CLIPVisionModelWithProjection
)
CLASSES = ("CLIPVisionModel", "CLIPVisionModelWithProjection")


def clip_vision_from_config(
  config: dict[str, Any], path: str = "config.json", output_layer: int = -2
) -> CLIPVisionEncoder:
  """The encoder of a transformers `CLIPVisionConfig`, giving `hidden_states[output_layer]`
  (Wan: -2, the input of the last layer)."""
  if config.get("model_type") != "clip_vision_model":
    raise ConfigError(
      f"{path} describes a {config.get('model_type')!r} model, not a CLIP vision model "
      "('clip_vision_model')."
    )
  if config.get("hidden_act", "quick_gelu") not in ACTIVATIONS:
    raise ConfigError(
      f"{path}: hidden_act={config['hidden_act']!r}; jvdm's CLIP builds {list(ACTIVATIONS)}."
    )
  depth = config["num_hidden_layers"]
  num_layers = depth + 1 + output_layer if output_layer < 0 else output_layer
  if not 0 <= num_layers <= depth:
    raise ConfigError(
      f"output_layer={output_layer}: the hidden states of a {depth}-layer encoder are "
      f"indexed {-depth - 1}..{depth}."
    )
  return CLIPVisionEncoder(
    image_size=config["image_size"],
    patch_size=config["patch_size"],
    width=config["hidden_size"],
    num_layers=num_layers,
    num_heads=config["num_attention_heads"],
    mlp_dim=config["intermediate_size"],
    activation=config.get("hidden_act", "quick_gelu"),
    epsilon=config.get("layer_norm_eps", 1e-5),
  )


def _convert(path: tuple[str, ...], array: np.ndarray) -> np.ndarray:
  if path == ("patch_embedding", "kernel"):  # Conv2d [O, I, kh, kw] -> [kh, kw, I, O]
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
  if path[-1] == "kernel":  # Linear [O, I] -> [I, O]
    return np.ascontiguousarray(array.T)
  return array


def _transformers_key(path: tuple[str, ...]) -> str:
  """transformers' name (without "vision_model.") of a jvdm param path."""
  names = {value: key for key, value in _GLOBAL_KEYS.items()}
  if path in names:
    return names[path]
  layer = {value: key for key, value in _LAYER_KEYS.items()}[path[1:]]
  return f"encoder.layers.{path[0].removeprefix('layer_')}.{layer}"


def clip_vision_params(
  model: CLIPVisionEncoder, tensors, depth: int, source: str = "the checkpoint"
) -> dict[str, Any]:
  """jvdm params from transformers' CLIP vision keys ((key, array) pairs) for the `model.
  num_layers` layers the features use, of a `depth`-layer checkpoint; the later layers, the
  final norm and a projection are skipped. Unknown or missing keys and wrong shapes are
  CheckpointErrors naming them."""
  flat: dict[tuple[str, ...], np.ndarray] = {}
  unknown = []
  for key, array in tensors:
    name = key.removeprefix("vision_model.")
    match = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", name)
    if match and match.group(2) in _LAYER_KEYS and int(match.group(1)) < depth:
      if int(match.group(1)) >= model.num_layers:
        continue  # after the layer whose output the features are
      path = (f"layer_{match.group(1)}",) + _LAYER_KEYS[match.group(2)]
    elif name in _GLOBAL_KEYS:
      path = _GLOBAL_KEYS[name]
    elif key in _UNUSED_KEYS or name in _UNUSED_KEYS:
      continue
    else:
      unknown.append(key)
      continue
    flat[path] = _convert(path, np.asarray(array))
  if unknown:
    raise CheckpointError(f"{source} has keys a CLIP vision model does not have: {unknown}.")
  size = model.image_size
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
  )
  expected = {path: leaf.shape for path, leaf in traverse_util.flatten_dict(shapes).items()}
  missing = sorted(_transformers_key(path) for path in expected.keys() - flat.keys())
  if missing:
    raise CheckpointError(f"{source} lacks the CLIP vision params {missing}.")
  for path, array in flat.items():
    if array.shape != expected[path]:
      raise CheckpointError(
        f"{source}: {'.'.join(path)} has shape {array.shape} in jvdm's layout; the config "
        f"describes {expected[path]}."
      )
  return traverse_util.unflatten_dict(flat)


def load_clip_vision(
  folder: str | pathlib.Path, output_layer: int = -2
) -> tuple[CLIPVisionEncoder, dict[str, Any]]:
  """(the encoder of `hidden_states[output_layer]`, its params as numpy arrays in their stored
  dtype) of a transformers `CLIPVisionModel` folder."""
  folder = pathlib.Path(folder)
  path = folder / "config.json"
  config = read_json(path, "a transformers model folder")
  model = clip_vision_from_config(config, str(path), output_layer)
  params = clip_vision_params(model, iter_tensors(folder), config["num_hidden_layers"], str(folder))
  return model, params


@dataclasses.dataclass(frozen=True)
class CLIPPreprocessing:
  """transformers' `CLIPImageProcessor`: the shortest side resized to `shortest_edge` (PIL,
  bicubic by default), a center crop, pixels times `rescale_factor`, then `(x - mean) / std`
  per channel."""

  shortest_edge: int
  crop_size: tuple[int, int]  # (height, width)
  resample: int  # a PIL resampling filter (3: bicubic)
  rescale_factor: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  def __call__(self, images: Sequence[Any]) -> np.ndarray:
    """float32 `[N, height, width, 3]` pixel values of PIL images or uint8 `[H, W, 3]` arrays."""
    return np.stack([self._one(as_pil_image(image)) for image in images])

  def _one(self, image: PIL.Image.Image) -> np.ndarray:
    width, height = image.size
    short, long = sorted((width, height))
    new_long = int(self.shortest_edge * long / short)  # transformers' size rule (truncates)
    size = (new_long, self.shortest_edge) if width >= height else (self.shortest_edge, new_long)
    pixels = np.asarray(image.resize(size, resample=self.resample, reducing_gap=None))
    crop_height, crop_width = self.crop_size
    top, left = (pixels.shape[0] - crop_height) // 2, (pixels.shape[1] - crop_width) // 2
    pixels = pixels[top : top + crop_height, left : left + crop_width]
    pixels = (pixels.astype(np.float64) * self.rescale_factor).astype(np.float32)
    mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
    return ((pixels - mean) / std).astype(np.float32)


def load_clip_preprocessing(folder: str | pathlib.Path) -> CLIPPreprocessing:
  """The preprocessing of a transformers `CLIPImageProcessor` folder
  (`preprocessor_config.json`); ConfigError for an option jvdm does not reproduce."""
  path = pathlib.Path(folder) / "preprocessor_config.json"
  config = read_json(path, "a transformers image processor folder")
  expected = dict(do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True)
  for key, value in expected.items():
    if config.get(key, value) != value:
      raise ConfigError(f"{path}: {key}={config[key]!r}; jvdm reproduces CLIP's {key}={value}.")
  size, crop = config.get("size", {"shortest_edge": 224}), config.get("crop_size", 224)
  if isinstance(crop, int):
    crop = {"height": crop, "width": crop}
  if set(size) != {"shortest_edge"}:
    raise ConfigError(f"{path}: size={size}; jvdm reproduces CLIP's {{'shortest_edge': n}}.")
  if size["shortest_edge"] < max(crop["height"], crop["width"]):
    raise ConfigError(f"{path}: a crop of {crop} from a shortest side of {size} pads; not built.")
  return CLIPPreprocessing(
    shortest_edge=size["shortest_edge"],
    crop_size=(crop["height"], crop["width"]),
    resample=config.get("resample", PIL.Image.BICUBIC),
    rescale_factor=config.get("rescale_factor", 1 / 255),
    mean=tuple(config.get("image_mean", (0.48145466, 0.4578275, 0.40821073))),
    std=tuple(config.get("image_std", (0.26862954, 0.26130258, 0.27577711))),
  )


@dataclasses.dataclass(frozen=True)
class ImageEncoder:
  """CLIP features of images as Wan's image-to-video pipeline takes them
  (`WanImageToVideoPipeline.encode_image`: the processor, then `hidden_states[-2]`)."""

  preprocessing: CLIPPreprocessing
  model: CLIPVisionEncoder
  params: Any

  @functools.cached_property
  def _apply(self):
    return jax.jit(self.model.apply)

  def __call__(self, images: Sequence[Any]) -> np.ndarray:
    """float32 `[N, 1 + patches, width]` of N PIL images or uint8 `[H, W, 3]` arrays."""
    pixels = self.preprocessing(images)
    return np.asarray(self._apply({"params": self.params}, jnp.asarray(pixels)), np.float32)
