"""Every config field's type and allowed values, one rule per field.

`check_fields(config)` walks every field of a config and checks it against its rule, so a bad
value (a float where an integer is meant, an eta of 5, a misspelt sampler) stops the run with
a message that names the field, the value and what is allowed, before anything is created.
A field with no rule is an error too: a new config field needs a rule here (the tests check
every shipped config). Rules that relate two fields (warmup shorter than the run, a batch that
splits over the mesh) are in `jvdm.config_validation`.

Model fields depend on the model (`patch_size` is an int for the UNet, a 3-tuple for the DiT):
their rules are looked up under `model:<name>`.
"""

import dataclasses
import math
from typing import Any

import ml_collections

from jvdm.data.pipeline import DATASETS
from jvdm.diffusion import LOSS_WEIGHTINGS, PREDICTIONS, PROCESSES, SCHEDULES, TIME_SAMPLINGS
from jvdm.diffusion.discrete import BETA_SCHEDULES
from jvdm.errors import ConfigError
from jvdm.models.dit import LAYOUTS, POSITIONS
from jvdm.models.unet3d import ATTENTION_KINDS
from jvdm.models.vae.autoencoder import ARCHITECTURES
from jvdm.models.vae.blocks import NORMS
from jvdm.parallel.context_attention import IMPLEMENTATIONS as ATTENTION_IMPLEMENTATIONS
from jvdm.parallel.context_attention import METHODS as CONTEXT_PARALLEL_METHODS
from jvdm.samplers import SAMPLERS
from jvdm.samplers.grids import ALL_SPACINGS
from jvdm.training.vae_objective import RECONSTRUCTION_LOSSES

DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Number:
  """An int (`integer`) or a real number in [low, high] (an open end with `*_open`)."""

  integer: bool
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False

  def problem(self, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
      return "an integer" if self.integer else "a number"
    below = value <= self.low if self.low_open else value < self.low
    above = value >= self.high if self.high_open else value > self.high
    if below or above or (not self.integer and math.isnan(value)):
      return self.describe()
    return None

  def describe(self) -> str:
    kind = "an integer" if self.integer else "a number"
    if self.low == -math.inf and self.high == math.inf:
      return kind
    if self.high == math.inf:
      return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
    if self.low == -math.inf:
      return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
    left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
    return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"


@dataclasses.dataclass(frozen=True)
class OneOf:
  options: tuple

  def problem(self, value: Any) -> str | None:
    ok = any(value == option and type(value) is type(option) for option in self.options)
    return None if ok else f"one of {list(self.options)}"


@dataclasses.dataclass(frozen=True)
class Text:
  """Any string (paths, dataset names)."""

  def problem(self, value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


@dataclasses.dataclass(frozen=True)
class Flag:
  def problem(self, value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


@dataclasses.dataclass(frozen=True)
class TupleOf:
  """A tuple of elements that each satisfy `element`, of `length` elements (None: any)."""

  element: Any
  length: int | None = None

  def problem(self, value: Any) -> str | None:
    expected = f"a tuple of {'' if self.length is None else f'{self.length} '}elements, each "
    expected += self.element.describe() if hasattr(self.element, "describe") else "valid"
    if not isinstance(value, tuple) or (self.length is not None and len(value) != self.length):
      return expected
    if any(self.element.problem(item) for item in value):
      return expected
    return None


@dataclasses.dataclass(frozen=True)
class Structure:
  """A structured field checked where it is used (the mesh's axis rules)."""

  def problem(self, value: Any) -> str | None:
    return None if isinstance(value, tuple) else "a tuple"


def integer(low=-math.inf, high=math.inf) -> Number:
  return Number(True, low, high)


def number(low=-math.inf, high=math.inf, low_open=False, high_open=False) -> Number:
  return Number(False, low, high, low_open, high_open)


POSITIVE = integer(1)
COUNT = integer(0)
PROBABILITY = number(0, 1)
MESH_AXIS = integer(-1)  # -1: the devices left over

RULES: dict[str, Any] = {
  "seed": integer(),
  # data
  "data.name": OneOf(DATASETS),
  "data.num_frames": POSITIVE,
  "data.height": POSITIVE,
  "data.width": POSITIVE,
  "data.channels": OneOf((3,)),  # the sources yield RGB; latents are described by config.latent
  "data.batch_size": POSITIVE,
  "data.shuffle_seed": integer(),
  "data.worker_count": COUNT,
  "data.bouncing_shapes.num_videos": POSITIVE,
  "data.bouncing_shapes.min_shapes": POSITIVE,
  "data.bouncing_shapes.max_shapes": POSITIVE,
  "data.bouncing_shapes.min_size": POSITIVE,
  "data.bouncing_shapes.max_size": POSITIVE,
  "data.bouncing_shapes.min_speed": COUNT,
  "data.bouncing_shapes.max_speed": COUNT,
  "data.bouncing_shapes.seed": integer(),
  "data.video_folder.root": Text(),
  "data.video_folder.frame_stride": POSITIVE,
  "data.tfds.name": Text(),
  "data.tfds.data_dir": Text(),
  "data.tfds.split": Text(),
  "data.tfds.eval_split": Text(),
  "data.tfds.feature": OneOf(("video", "latents")),
  # latent diffusion
  "latent.vae_workdir": Text(),
  "latent.channels": POSITIVE,
  "latent.decode_chunk_frames": COUNT,
  "latent.decode_tile": COUNT,
  "latent.decode_tile_overlap": COUNT,
  "latent.decode_row_slices": POSITIVE,
  "latent.sample_posterior": Flag(),
  # diffusion
  "diffusion.process": OneOf(PROCESSES),
  "diffusion.schedule": OneOf(SCHEDULES),
  "diffusion.prediction": OneOf(PREDICTIONS),
  "diffusion.loss_weighting": OneOf(LOSS_WEIGHTINGS),
  "diffusion.time_sampling": OneOf(TIME_SAMPLINGS),
  "diffusion.logsnr_min": number(),
  "diffusion.logsnr_max": number(),
  "diffusion.logsnr_shift": number(),
  "diffusion.min_snr_gamma": number(0, low_open=True),
  "diffusion.logit_mean": number(),
  "diffusion.logit_std": number(0, low_open=True),
  "diffusion.per_frame_noise": PROBABILITY,
  "diffusion.staggered_noise": PROBABILITY,
  "diffusion.context_frames": COUNT,
  "diffusion.discrete.beta_schedule": OneOf(BETA_SCHEDULES),
  "diffusion.discrete.beta_start": number(0, 1, low_open=True, high_open=True),
  "diffusion.discrete.beta_end": number(0, 1, low_open=True, high_open=True),
  "diffusion.discrete.num_train_timesteps": POSITIVE,
  "diffusion.discrete.rescale_zero_snr": Flag(),
  "diffusion.edm.sigma_min": number(0, low_open=True),
  "diffusion.edm.sigma_max": number(0, low_open=True),
  "diffusion.edm.rho": number(0, low_open=True),
  "diffusion.flow.shift": number(0, low_open=True),
  # optimizer
  "optim.learning_rate": number(0, low_open=True),
  "optim.end_learning_rate_factor": number(0, 1),
  "optim.warmup_steps": COUNT,
  "optim.b1": number(0, 1, high_open=True),
  "optim.b2": number(0, 1, high_open=True),
  "optim.weight_decay": number(0),
  "optim.grad_clip_norm": number(0, low_open=True),
  "optim.ema_decay": number(0, 1, high_open=True),
  # training
  "train.num_steps": POSITIVE,
  "train.log_every": POSITIVE,
  "train.checkpoint_every": POSITIVE,
  "train.keep_checkpoints": POSITIVE,
  "train.keep_checkpoint_every": COUNT,
  "train.sample_every": COUNT,
  "train.num_sample_videos": POSITIVE,
  "train.microbatches": POSITIVE,
  "train.max_consecutive_skipped": POSITIVE,
  "train.condition_dropout": number(0, 1, high_open=True),
  # sampling
  "sample.sampler": OneOf(SAMPLERS),
  "sample.steps": POSITIVE,
  "sample.eta": PROBABILITY,  # DDIM's eta: 0 deterministic, 1 DDPM's variance
  "sample.clip_x0": Flag(),
  "sample.frame_stagger": number(0, 1, high_open=True),
  "sample.spacing": OneOf(ALL_SPACINGS),  # which rule takes which: jvdm.samplers.grids
  "sample.time_power": number(0, low_open=True),
  "sample.steps_offset": COUNT,
  "sample.set_alpha_to_one": Flag(),
  "sample.guidance_scale": number(0),
  "sample.chunk_frames": POSITIVE,
  "sample.cache_frames": POSITIVE,
  "sample.sink_frames": COUNT,
  "sample.fps": POSITIVE,
  "sample.video_scale": POSITIVE,
  # the VAE's objective
  "vae_loss.reconstruction": OneOf(RECONSTRUCTION_LOSSES),
  "vae_loss.kl_weight": number(0),
  # mesh
  **{f"mesh.shape.{axis}": MESH_AXIS for axis in ("data", "fsdp", "context", "tensor")},
  **{f"mesh.dcn_shape.{axis}": POSITIVE for axis in ("data", "fsdp", "context", "tensor")},
  "mesh.logical_axis_rules": Structure(),
  # every model
  "model.name": OneOf(("unet3d", "dit", "vae")),
  "model.dtype": OneOf(DTYPES),
  "model.param_dtype": OneOf(DTYPES),
}

MODEL_RULES: dict[str, dict[str, Any]] = {
  "unet3d": {
    "patch_size": POSITIVE,
    "pixel_head_channels": COUNT,
    "base_channels": POSITIVE,
    "channel_mults": TupleOf(POSITIVE),
    "num_res_blocks": POSITIVE,
    "attention_levels": TupleOf(COUNT),
    "middle_attention": OneOf(tuple(ATTENTION_KINDS)),
    "level_attention": OneOf(tuple(ATTENTION_KINDS)),
    "space_time_rope": Flag(),
    "head_dim": POSITIVE,
    "num_groups": POSITIVE,
    "dropout": number(0, 1, high_open=True),
    "identity_init_temporal": Flag(),
    "remat": Flag(),
    "attention_implementation": OneOf(ATTENTION_IMPLEMENTATIONS),
    "causal_temporal_attention": Flag(),
  },
  "dit": {
    "patch_size": TupleOf(POSITIVE, 3),
    "hidden_size": POSITIVE,
    "depth": POSITIVE,
    "num_heads": POSITIVE,
    "mlp_ratio": number(0, low_open=True),
    "layout": OneOf(LAYOUTS),
    "causal": Flag(),
    "temporal_window": POSITIVE,
    "position": OneOf(POSITIONS),
    "scan_layers": Flag(),
    "remat": OneOf(("none", "full", "dots")),
    "attention_implementation": OneOf(ATTENTION_IMPLEMENTATIONS),
    "context_parallel": OneOf((None, False, True, "", "none") + CONTEXT_PARALLEL_METHODS),
    "cond_dim": COUNT,
    "condition": OneOf(("none", "caption")),
    "text_encoder.width": POSITIVE,
    "text_encoder.depth": POSITIVE,
    "text_encoder.num_heads": POSITIVE,
  },
  "vae": {
    "architecture": OneOf(ARCHITECTURES),
    "latent_channels": POSITIVE,
    "base_channels": POSITIVE,
    "channel_mults": TupleOf(POSITIVE),
    "spatial_downsample": TupleOf(Flag()),
    "temporal_downsample": TupleOf(Flag()),
    "num_res_blocks": POSITIVE,
    "norm": OneOf(NORMS),
    "num_groups": POSITIVE,
    "middle_attention": Flag(),
    "head_dim": POSITIVE,
  },
}


def _leaves(node: ml_collections.ConfigDict, prefix: str = ""):
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def rule_for(field: str, model_name: str) -> Any:
  """The rule of a dotted field name; None if it has none."""
  if field in RULES:
    return RULES[field]
  if field.startswith("model."):
    return MODEL_RULES.get(model_name, {}).get(field.removeprefix("model."))
  return None


def check_field(field: str, value: Any, model_name: str) -> None:
  """Raises ConfigError if `value` breaks the rule of `field` (dotted, e.g. "sample.eta")."""
  rule = rule_for(field, model_name)
  if rule is None:
    raise ConfigError(
      f"config.{field} is not a field jvdm knows (model {model_name!r}); "
      "check its spelling, or add its rule to jvdm/config_rules.py."
    )
  problem = rule.problem(value)
  if problem:
    raise ConfigError(f"config.{field}={value!r} is not valid; expected {problem}.")


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value its rule does not allow."""
  model_name = config.model.name
  problem = RULES["model.name"].problem(model_name)
  if problem:
    raise ConfigError(f"config.model.name={model_name!r} is not valid; expected {problem}.")
  for field, value in _leaves(config):
    check_field(field, value, model_name)
