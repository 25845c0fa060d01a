"""The one place that turns a config into objects: the network, the diffusion process and its
loss, the video sampler, the null condition, and the shapes a config's network sees.

The modules below this one (models, diffusion, samplers, pipelines, data) take typed arguments
and read no config. The train step is built from these objects by the job's task
(`jvdm.training.tasks`), and a trained run on disk is loaded by `jvdm.workdir`.

Latent diffusion (`config.latent.vae_workdir` set) trains the UNet or DiT on the latents of the
video autoencoder trained in that workdir (LDM, Rombach et al. 2022; Video LDM, Blattmann et
al. 2023); `config.data` still describes the pixel videos.
"""

import functools
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from jvdm.data.captions import VOCAB_SIZE, null_caption
from jvdm.diffusion import PROCESSES, Process
from jvdm.diffusion.edm import EDMProcess
from jvdm.diffusion.flow import FlowProcess
from jvdm.diffusion.loss import diffusion_loss
from jvdm.diffusion.schedules import get_schedule
from jvdm.diffusion.vp import VPProcess
from jvdm.errors import ConfigError
from jvdm.models.dit import VideoDiT
from jvdm.models.text_encoder import TextEncoder
from jvdm.models.unet3d import UNet3D
from jvdm.models.vae.autoencoder import VideoAutoencoder
from jvdm.parallel.context_attention import context_parallel_method
from jvdm.pipelines.video_sampler import VideoSampler

# -- shapes ----------------------------------------------------------------------------------


def is_latent(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` diffuses in a VAE's latent space."""
  return "latent" in config and bool(config.latent.vae_workdir)


def model_channels(config: ml_collections.ConfigDict) -> int:
  """Channels of the network's input and output: the latent's, or the pixels'."""
  return int(config.latent.channels) if is_latent(config) else int(config.data.channels)


def pixel_video_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  data = config.data
  return (int(data.num_frames), int(data.height), int(data.width), int(data.channels))


# -- networks --------------------------------------------------------------------------------


def config_dtype(name: str, field: str) -> jnp.dtype:
  """Parses a config dtype name ('float32', 'bfloat16', ...); ConfigError if not a float."""
  message = f"model.{field} must name a float dtype (e.g. 'float32', 'bfloat16'), got {name!r}"
  try:
    dtype = jnp.dtype(name)
  except TypeError as e:
    raise ConfigError(message) from e
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ConfigError(message)
  return dtype


def unet3d_from_config(config: ml_collections.ConfigDict) -> UNet3D:
  """Builds a UNet3D from `config.model` and `config.data` (see `get_model`)."""
  model_config = config.model
  try:
    return UNet3D(
      out_channels=model_channels(config),
      patch_size=int(model_config.patch_size),
      base_channels=int(model_config.base_channels),
      channel_mults=tuple(int(m) for m in model_config.channel_mults),
      num_res_blocks=int(model_config.num_res_blocks),
      attention_levels=tuple(int(level) for level in model_config.attention_levels),
      middle_attention=str(model_config.middle_attention),
      level_attention=str(model_config.level_attention),
      space_time_rope=bool(model_config.space_time_rope),
      head_dim=int(model_config.head_dim),
      num_groups=int(model_config.num_groups),
      dropout=float(model_config.dropout),
      identity_init_temporal=bool(model_config.identity_init_temporal),
      remat=bool(model_config.remat),
      attention_implementation=model_config.attention_implementation,
      causal_temporal_attention=bool(model_config.causal_temporal_attention),
      pixel_head_channels=int(model_config.pixel_head_channels),
      dtype=config_dtype(model_config.dtype, "dtype"),
      param_dtype=config_dtype(model_config.param_dtype, "param_dtype"),
    )
  except AttributeError as e:
    raise ConfigError(f"config is missing a field the unet3d model needs: {e}") from e


def dit_from_config(config: ml_collections.ConfigDict) -> VideoDiT:
  """Builds a VideoDiT from `config.model` and `config.data` (see `get_model`)."""
  model = config.model
  try:
    text_encoder, cond_dim = None, int(model.cond_dim)
    if model.condition == "caption":
      encoder = model.text_encoder
      text_encoder = TextEncoder(
        VOCAB_SIZE,
        width=int(encoder.width),
        depth=int(encoder.depth),
        num_heads=int(encoder.num_heads),
        dtype=config_dtype(model.dtype, "dtype"),
        param_dtype=config_dtype(model.param_dtype, "param_dtype"),
      )
      cond_dim = text_encoder.width
    return VideoDiT(
      out_channels=model_channels(config),
      patch_size=tuple(int(p) for p in model.patch_size),
      hidden_size=int(model.hidden_size),
      depth=int(model.depth),
      num_heads=int(model.num_heads),
      mlp_ratio=float(model.mlp_ratio),
      layout=str(model.layout),
      causal=bool(model.causal),
      temporal_window=int(model.temporal_window),
      position=str(model.position),
      scan_layers=bool(model.scan_layers),
      remat=str(model.remat),
      attention_implementation=model.attention_implementation,
      context_parallel=context_parallel_method(model.context_parallel),
      cond_dim=cond_dim,
      text_encoder=text_encoder,
      dtype=config_dtype(model.dtype, "dtype"),
      param_dtype=config_dtype(model.param_dtype, "param_dtype"),
    )
  except AttributeError as e:
    raise ConfigError(f"config is missing a field the dit model needs: {e}") from e


def vae_from_config(config: ml_collections.ConfigDict) -> VideoAutoencoder:
  """Builds the VAE from `config.model` (with `model.name == "vae"`) and `config.data`."""
  model = config.model
  try:
    return VideoAutoencoder(
      architecture=str(model.architecture),
      latent_channels=int(model.latent_channels),
      base_channels=int(model.base_channels),
      channel_mults=tuple(int(m) for m in model.channel_mults),
      spatial_downsample=tuple(bool(d) for d in model.spatial_downsample),
      temporal_downsample=tuple(bool(d) for d in model.temporal_downsample),
      num_res_blocks=int(model.num_res_blocks),
      norm=str(model.norm),
      num_groups=int(model.num_groups),
      middle_attention=bool(model.middle_attention),
      head_dim=int(model.head_dim),
      out_channels=int(config.data.channels),
      dtype=config_dtype(model.dtype, "dtype"),
      param_dtype=config_dtype(model.param_dtype, "param_dtype"),
    )
  except AttributeError as error:
    raise ConfigError(f"config is missing a field the vae model needs: {error}") from error


_MODEL_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], nn.Module]] = {
  "unet3d": unet3d_from_config,
  "dit": dit_from_config,
  "vae": vae_from_config,
}


def get_model(config: ml_collections.ConfigDict) -> nn.Module:
  """Returns the flax Module named by `config.model.name`, built from `config.model`/`data`.

  The module is called as `model.apply({"params": p}, x, t, train=False, rngs=...)` with
  `x` `[B, T, H, W, C]` and `t` `[B]` or `[B, T]` in [0, 1], and returns float32
  `[B, T, H, W, C]`. The video autoencoder ("vae", `jvdm.models.vae`) is called as
  `model.apply({"params": p}, x)` and has `encode` and `decode` methods.
  """
  name = config.model.name
  if name not in _MODEL_BUILDERS:
    raise ConfigError(f"unknown model.name {name!r}; valid names: {sorted(_MODEL_BUILDERS)}")
  return _MODEL_BUILDERS[name](config)


# -- diffusion and sampling ------------------------------------------------------------------


def make_process(diffusion_config) -> Process:
  """The process described by `config.diffusion` (`process`, and its own sub-config)."""
  name = diffusion_config.process
  if name not in PROCESSES:
    raise ConfigError(f"Unknown process {name!r}; valid processes: {list(PROCESSES)}.")
  if name == "edm":
    return EDMProcess(**diffusion_config.edm.to_dict())
  if name == "flow":
    return FlowProcess(**diffusion_config.flow.to_dict())
  if diffusion_config.schedule == "discrete":
    kwargs = diffusion_config.discrete.to_dict()
  elif diffusion_config.schedule == "interpolated_cosine":
    kwargs = dict(
      logsnr_min=diffusion_config.logsnr_min,
      logsnr_max=diffusion_config.logsnr_max,
      shift_start=0.0,
      shift_end=diffusion_config.logsnr_shift,
    )
  else:
    kwargs = dict(
      logsnr_min=diffusion_config.logsnr_min,
      logsnr_max=diffusion_config.logsnr_max,
      logsnr_shift=diffusion_config.logsnr_shift,
    )
  return VPProcess(get_schedule(diffusion_config.schedule, **kwargs))


def make_loss(diffusion_config) -> Callable:
  """`loss(network, videos, rng) -> scalar` as `config.diffusion` describes it."""
  return functools.partial(
    diffusion_loss,
    process=make_process(diffusion_config),
    prediction=diffusion_config.prediction,
    per_frame_noise=diffusion_config.per_frame_noise,
    weighting=diffusion_config.loss_weighting,
    min_snr_gamma=diffusion_config.min_snr_gamma,
    time_sampling=diffusion_config.time_sampling,
    logit_mean=diffusion_config.logit_mean,
    logit_std=diffusion_config.logit_std,
    context_frames=diffusion_config.context_frames,
    staggered_noise=diffusion_config.staggered_noise,
  )


CONDITIONS = ("none", "caption")


def null_condition_for(config) -> np.ndarray | None:
  """The null caption of a caption-conditioned config (`config.model.condition == "caption"`),
  or None for an unconditional one. Conditional models read `batch["caption"]`."""
  # Only the DiT takes a condition; the UNet and the VAE are unconditional.
  condition = config.model.condition if "condition" in config.model else "none"
  if condition not in CONDITIONS:
    raise ConfigError(
      f"config.model.condition={condition!r} is not valid; expected one of {list(CONDITIONS)}."
    )
  if condition == "none":
    return None
  if config.data.name != "bouncing_shapes":
    raise ConfigError(
      f"config.model.condition='caption' needs captioned data: the "
      f"'bouncing_shapes' dataset, not {config.data.name!r}."
    )
  return null_caption(config.data.bouncing_shapes.max_shapes)


# The config.sample fields a caller may override.
SAMPLE_FIELDS = (
  "sampler",
  "steps",
  "eta",
  "clip_x0",
  "frame_stagger",
  "spacing",
  "time_power",
  "steps_offset",
  "set_alpha_to_one",
  "guidance_scale",
)


def make_video_sampler(config: ml_collections.ConfigDict, apply_fn, **overrides) -> VideoSampler:
  """The sampler `config.sample` describes; a non-None override (a `SAMPLE_FIELDS` name)
  replaces the config's value. A caption-conditioned config's sampler takes captions."""
  unknown = set(overrides) - set(SAMPLE_FIELDS)
  if unknown:
    raise ConfigError(
      f"Unknown sampler settings {sorted(unknown)}; valid: {sorted(SAMPLE_FIELDS)}."
    )
  settings = {name: config.sample[name] for name in SAMPLE_FIELDS}
  settings.update({name: value for name, value in overrides.items() if value is not None})
  settings["num_steps"] = settings.pop("steps")
  null = null_condition_for(config)
  return VideoSampler(
    apply_fn,
    make_process(config.diffusion),
    config.diffusion.prediction,
    null_condition=None if null is None else tuple(int(v) for v in null),
    **settings,
  )
