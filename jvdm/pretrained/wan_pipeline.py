"""Wan 2.1 text-to-video from a diffusers-format folder, sampled as diffusers' `WanPipeline`
samples it, on jvdm's samplers (so every long-video method runs on it too).

  pipeline = jvdm.pretrained.load("Wan2.1-T2V-1.3B-Diffusers")
  videos = pipeline("a red fox runs through the snow", num_frames=81)  # [1, 81, 480, 832, 3]

As diffusers does it: prompts through UMT5 (`jvdm.pretrained.wan_prompts`), the folder's
scheduler (UniPC on shifted flow sigmas for Wan 2.1) with the network called at the
scheduler's timesteps (integers for UniPC), classifier-free guidance against the negative
prompt's embeddings (the empty prompt by default) at scale 5, latents of
`(num_frames - 1) / 4 + 1` frames at 1/8 of the size, de-normalized with the VAE's per-channel
mean and std and decoded. Deviations, named: the initial noise is jax's (pass `latents` to start
from given ones), and `num_frames` not of the form 4k + 1 is an error (diffusers rounds it
down with a warning).
"""

import contextlib
import dataclasses
import functools
import pathlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jvdm.errors import ConfigError, ShapeError
from jvdm.parallel.axes import DEFAULT_RULES
from jvdm.pipelines.long.fifo import SINGLE_STEP_SAMPLERS
from jvdm.pipelines.long.long_video import LongVideoSampler
from jvdm.pipelines.video_sampler import VideoSampler
from jvdm.pretrained.diffusers_folder import (
  SchedulerSettings,
  check_component,
  load_prompt_encoder,
  pipeline_options,
  scheduler_settings,
)
from jvdm.pretrained.wan_dit import WanDiT, load_wan_dit
from jvdm.pretrained.wan_prompts import WAN_MAX_LENGTH, PromptEncoder
from jvdm.pretrained.wan_vae import PretrainedWanVAE, load_wan_vae

TEMPORAL_FACTOR = 4  # Wan 2.1's VAE: latent frame 0 is frame 0, then one per 4 frames
SPATIAL_FACTOR = 8
SIZE_MULTIPLE = 16  # 8 (VAE) x 2 (the DiT's patch)


def check_video_size(num_frames: int, height: int, width: int) -> None:
  """ConfigError unless Wan 2.1 can make a `num_frames x height x width` video."""
  if num_frames < 1 or (num_frames - 1) % TEMPORAL_FACTOR:
    below = max(1, (num_frames - 1) // TEMPORAL_FACTOR * TEMPORAL_FACTOR + 1)
    raise ConfigError(
      f"num_frames={num_frames}: Wan's VAE takes 4k + 1 frames (e.g. {below} or {below + 4})."
    )
  if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or height < 1 or width < 1:
    raise ConfigError(
      f"height={height} and width={width} must be positive multiples of {SIZE_MULTIPLE}."
    )


def default_window(long: str) -> int:
  """Latent frames per window of a long-video method: Wan 2.1's 81 frames, 21 latent frames;
  20 for FIFO, whose lookahead denoising needs an even window."""
  window = (81 - 1) // TEMPORAL_FACTOR + 1
  return window - window % 2 if long == "fifo" else window


@dataclasses.dataclass(frozen=True)
class WanPipeline:
  """Wan 2.1 text-to-video (module docstring). Build it with `load(folder)`."""

  dit: WanDiT
  dit_params: Any
  prompts: PromptEncoder
  scheduler: SchedulerSettings
  vae: PretrainedWanVAE | None = None  # None: latents only
  mesh: Mesh | None = None
  rules: Any = DEFAULT_RULES
  # Samplers already built, by their settings: a later call with the same settings reuses the
  # compiled sampling loop (the negative prompt's embeddings are compiled into it).
  samplers: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """`(F, h, w, C)` of the latents of a `num_frames x height x width` video."""
    check_video_size(num_frames, height, width)
    return (
      (num_frames - 1) // TEMPORAL_FACTOR + 1,
      height // SPATIAL_FACTOR,
      width // SPATIAL_FACTOR,
      self.dit.model.out_channels,
    )

  @functools.cached_property
  def network(self):
    """The DiT, called at the scheduler's timesteps as diffusers calls it: the shifted sigma,
    times 1000, rounded down for UniPC."""
    return self.dit.model.clone(
      integer_timesteps=self.scheduler.integer_timesteps, time_shift=self.scheduler.process.shift
    )

  def video_sampler(
    self,
    num_steps: int,
    guidance_scale: float,
    negative_prompt: str,
    apply_fn: Callable[..., jnp.ndarray] | None = None,
    null_condition: Callable[[np.ndarray], Any] | None = None,
  ) -> VideoSampler:
    """jvdm's sampler with the folder's scheduler, calling `apply_fn` (default: the DiT's
    apply, `cond` the text embeddings) with guidance against `null_condition(the negative
    prompt's embeddings [L, D])` (default: those embeddings); built once per settings."""
    key = (num_steps, guidance_scale, negative_prompt, apply_fn, null_condition)
    if key not in self.samplers:
      negative = self.negative_embeddings(negative_prompt, guidance_scale)
      self.samplers[key] = VideoSampler(
        apply_fn or self.network.apply,
        self.scheduler.process,
        self.scheduler.prediction,
        sampler=self.scheduler.sampler,
        spacing=self.scheduler.spacing,
        num_steps=num_steps,
        clip_x0=False,  # latents are not in [-1, 1]
        guidance_scale=guidance_scale,
        null_condition=negative if null_condition is None else null_condition(negative),
      )
    return self.samplers[key]

  def negative_embeddings(self, negative_prompt: str, guidance_scale: float) -> np.ndarray:
    """UMT5 embeddings `[L, D]` of the negative prompt (zeros, unused, without guidance)."""
    if guidance_scale == 1.0:
      return np.zeros((self.prompts.max_length, self.dit.text_dim), np.float32)
    return np.asarray(self.prompts([negative_prompt]))[0]

  def latents(
    self,
    prompt: str | Sequence[str],
    negative_prompt: str = "",
    *,
    num_frames: int = 81,
    height: int = 480,
    width: int = 832,
    num_steps: int = 50,
    guidance_scale: float = 5.0,
    seed: int = 0,
    latents: np.ndarray | None = None,
    long: str | None = None,
    long_settings: dict[str, Any] | None = None,
    batch_size: int = 1,
    progress: bool = True,
  ) -> np.ndarray:
    """Denoised latents `[N, F, h, w, C]`, normalized as the DiT sees them.

    Args:
      prompt: one prompt, or one per video.
      negative_prompt: guidance pushes away from it (diffusers' default: the empty prompt).
      num_frames, height, width: of the decoded video (4k + 1 frames, multiples of 16).
      num_steps, guidance_scale: of the sampler (diffusers' defaults 50 and 5).
      seed: video i starts from noise of (seed, i), whatever the batch size.
      latents: start from these `[N, F, h, w, C]` instead (e.g. diffusers' initial latents).
      long: a long-video method (`jvdm.pipelines.long.long_video.METHODS`) for more frames
        than the model was trained on; its window defaults to 21 latent frames (81 frames),
        20 for FIFO (`default_window`).
      long_settings: other `LongVideoSampler` fields.
      batch_size: videos per jitted call.
      progress: progress bars.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    shape = self.latent_shape(num_frames, height, width)
    embeddings = np.asarray(self.prompts(prompts))
    sampler = self.video_sampler(num_steps, guidance_scale, negative_prompt)
    return self.sample(
      sampler, embeddings, shape, seed, latents, batch_size, progress, long, long_settings
    )

  def sample(
    self,
    sampler: VideoSampler,
    condition: Any,
    shape: tuple[int, int, int, int],
    seed: int = 0,
    latents: np.ndarray | None = None,
    batch_size: int = 1,
    progress: bool = True,
    long: str | None = None,
    long_settings: dict[str, Any] | None = None,
  ) -> np.ndarray:
    """`sampler`'s latents `[N, *shape]` for `condition` (an array or pytree of arrays, one row
    per video), from noise of (seed, i) or from the given `latents`, with a long-video method
    on the DiT if `long` is given, on the pipeline's mesh."""
    num_videos = len(jax.tree.leaves(condition)[0])
    if latents is not None:
      latents = np.asarray(latents, np.float32)
      if latents.shape != (num_videos,) + shape:
        raise ShapeError(
          f"latents must be [{num_videos}, {', '.join(map(str, shape))}] for {num_videos} "
          f"videos of {shape[0]} latent frames of {shape[1]}x{shape[2]}; got {latents.shape}."
        )
      sampler = dataclasses.replace(sampler, initial_noise=lambda keys, _: jnp.asarray(latents))
      batch_size = num_videos  # the given latents are one batch
    if long is not None:
      settings = {"window": default_window(long), **(long_settings or {})}
      key = (id(sampler), long, tuple(sorted(settings.items())))
      if key not in self.samplers:
        base = sampler
        if long == "fifo" and sampler.sampler not in SINGLE_STEP_SAMPLERS:
          # FIFO moves each frame along its own grid point: a single-step solver on the
          # same flow process (diffusers' FlowMatchEuler grid) instead of the folder's UniPC.
          base = dataclasses.replace(sampler, sampler="flow_euler", spacing="flow")
        self.samplers[key] = LongVideoSampler(base, self.network, long, **settings)
      sampler = self.samplers[key]
    with self._placement():
      return sampler.sample(
        self.dit_params,
        seed,
        num_videos,
        shape,
        batch_size=batch_size,
        progress=progress,
        condition=condition,
      )

  def decode(self, latents: np.ndarray, progress: bool = True) -> np.ndarray:
    """Videos `[N, T, H, W, 3]` in [-1, 1] from the DiT's latents (de-normalized with the VAE's
    per-channel mean and std, then decoded chunk by chunk)."""
    if self.vae is None:
      raise ConfigError("This pipeline has no VAE (loaded with vae=False); it gives latents only.")
    with self._placement():
      return self.vae.decode(latents, progress=progress)

  def __call__(self, prompt: str | Sequence[str], negative_prompt: str = "", **settings):
    """Videos `[N, T, H, W, 3]` in [-1, 1]: `latents(...)` (same arguments), decoded."""
    progress = settings.get("progress", True)
    return self.decode(self.latents(prompt, negative_prompt, **settings), progress=progress)

  @contextlib.contextmanager
  def _placement(self):
    """The mesh and logical rules the DiT's activations are sharded by (none without a mesh)."""
    if self.mesh is None:
      yield
      return
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield


def load(
  folder: str | pathlib.Path,
  *,
  dtype: Any = None,
  compute_dtype: Any = jnp.float32,
  mesh: Mesh | None = None,
  rules=DEFAULT_RULES,
  vae: bool = True,
  max_length: int = WAN_MAX_LENGTH,
  transformer_weights: str | pathlib.Path | None = None,
  pipeline_class: str = "WanPipeline",
  **dit_settings,
) -> WanPipeline:
  """A diffusers-format Wan 2.1 text-to-video folder as a `WanPipeline`.

  Args:
    folder: holds `model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`
      and `scheduler/`.
    dtype: the DiT's params' dtype; None keeps the stored one (bfloat16 stays bfloat16).
    compute_dtype: the dtype the DiT computes in.
    mesh, rules: place the DiT's params (and shard its activations) over this mesh.
    vae: load the VAE (False: the pipeline gives latents only).
    max_length: prompt tokens (Wan: 512).
    transformer_weights: other DiT weights for the same config (a safetensors file or
      folder, in diffusers' or the Wan repository's key layout, e.g. CausVid's).
    pipeline_class: the `_class_name` the folder's `model_index.json` must name
      (`jvdm.pretrained.wan_i2v_pipeline` builds image-to-video on these components).
    dit_settings: other `VideoDiT` attributes (`causal`, `scan_layers`, `remat`, ...).
  """
  found = pipeline_options(folder).get("_class_name")
  if found != pipeline_class:
    raise ConfigError(
      f"{folder} holds a {found}; this loader builds a {pipeline_class} (jvdm.pretrained.load "
      "picks the loader by the folder's class)."
    )
  scheduler = scheduler_settings(folder)
  dit, dit_params = load_wan_dit(
    check_component(folder, "transformer"),
    transformer_weights,
    dtype=dtype,
    compute_dtype=compute_dtype,
    mesh=mesh,
    rules=rules,
    **dit_settings,
  )
  vae_weights = load_wan_vae(check_component(folder, "vae")) if vae else None
  return WanPipeline(
    dit,
    dit_params,
    load_prompt_encoder(folder, max_length, mesh=mesh, rules=rules),
    scheduler,
    vae_weights,
    mesh,
    rules,
  )
