"""Autoregressive video generation with a causal model and a KV cache, in one jitted scan.

Chunk after chunk (ViD-GPT, Gao et al. 2024; Ca2-VDM, Gao et al. 2024): the chunk starts as
noise and is denoised by the usual solver scan while its frames attend to the cached keys
and values of every earlier (clean) frame; the cache is read-only during those steps, so the
clean frames' keys and values are computed once and shared by all steps (Ca2-VDM's cache
sharing). The finished chunk is then run once more at t = 0 to write its own keys and values.
An outer `lax.scan` runs the chunks, so the chunk body is traced once for any number of chunks,
and memory does not grow with the video: the cache has a fixed capacity (a ring buffer of
recent frames plus optional sink frames), and only the output grows.
"""

import dataclasses
import functools
from typing import Any

import einops
import jax
import jax.numpy as jnp
import numpy as np

from jvdm.diffusion.parameterization import x0_from_prediction
from jvdm.errors import ConfigError, ShapeError
from jvdm.models.dit import CachedChunk, VideoDiT
from jvdm.models.layers.kv_cache import KVCache
from jvdm.samplers.denoiser import alpha_sigma_like
from jvdm.samplers.driver import normal_per_sample, run_solver, split_per_sample
from jvdm.samplers.grids import sampling_time_grid
from jvdm.samplers.solvers import SOLVERS


@dataclasses.dataclass(frozen=True)
class CausalVideoSampler:
  """Generates videos of any number of chunks from a causal `VideoDiT`.

  Attributes:
    model: a `VideoDiT` with `causal=True` and the "full" or "windowed" layout.
    process, prediction: as the model was trained.
    sampler, num_steps, spacing: the solver and its grid (as `VideoSampler`).
    chunk_frames: frames generated per chunk (a multiple of the temporal patch).
    cache_frames: frames the cache holds, sinks included (a multiple of the temporal patch).
    sink_frames: leading frames of the video kept in the cache for good.
  """

  model: VideoDiT
  process: Any
  prediction: str
  sampler: str = "ddim"
  num_steps: int = 50  # as VideoSampler
  spacing: str = "uniform"
  chunk_frames: int = 4
  cache_frames: int = 16
  sink_frames: int = 0
  clip_x0: bool = True

  def __post_init__(self):
    if not self.model.causal or self.model.layout == "factorized":
      raise ConfigError(
        "Autoregressive generation needs a causal DiT with the 'full' or "
        f"'windowed' layout; got causal={self.model.causal}, "
        f"layout={self.model.layout!r}."
      )
    if self.sampler not in SOLVERS:
      raise ConfigError(f"Unknown sampler {self.sampler!r}; valid samplers: {list(SOLVERS)}.")
    patch = self.model.patch_size[0]
    for name in ("chunk_frames", "cache_frames", "sink_frames"):
      if getattr(self, name) % patch or getattr(self, name) < (0 if name == "sink_frames" else 1):
        raise ConfigError(
          f"{name}={getattr(self, name)} must be a positive multiple of the "
          f"temporal patch size {patch}."
        )
    if self.cache_frames - self.sink_frames < self.chunk_frames:
      raise ConfigError(
        f"The cache holds {self.cache_frames} frames, {self.sink_frames} of them "
        f"sinks, which leaves {self.cache_frames - self.sink_frames} for recent "
        f"frames: fewer than a chunk of {self.chunk_frames}."
      )
    self.time_grid  # pylint: disable=pointless-statement  # validates steps and spacing

  @functools.cached_property
  def time_grid(self):
    return sampling_time_grid(self.process, SOLVERS[self.sampler][1], self.num_steps, self.spacing)

  def _call(self, params, z, t, cache, first_frame, condition) -> CachedChunk:
    return self.model.apply(
      {"params": params},
      self.process.scale_model_input(z, t),
      t,
      cache,
      first_frame,
      cond=condition,
      method=VideoDiT.with_cache,
    )

  def _commit(self, params, clean, cache, first_frame, condition):
    """Writes the keys and values of clean frames (t = 0) starting at latent frame first_frame."""
    t = jnp.zeros(clean.shape[:2])
    chunk = self._call(params, clean, t, cache, first_frame, condition)
    return cache.write(chunk.keys, chunk.values, first_frame)

  def empty_cache(
    self, batch: int, frame_shape, params=None, prompt=None, condition=None
  ) -> tuple[KVCache, Any]:
    """(an empty cache, or one prefilled with the clean prompt; the next latent frame index)."""
    height, width, _ = frame_shape
    pt, ph, pw = self.model.patch_size
    cache = KVCache.create(
      num_layers=self.model.depth,
      batch=batch,
      capacity=self.cache_frames // pt,
      tokens_per_frame=(height // ph) * (width // pw),
      num_heads=self.model.num_heads,
      head_dim=self.model.hidden_size // self.model.num_heads,
      num_sinks=self.sink_frames // pt,
      dtype=self.model.dtype,
    )
    if prompt is None:
      return cache, jnp.int32(0)
    cache = self._commit(params, prompt, cache, jnp.int32(0), condition)
    return cache, jnp.int32(prompt.shape[1] // self.model.patch_size[0])

  def chunk_step(self, params, cache: KVCache, first_frame, keys, frame_shape, condition=None):
    """Generates one chunk `[B, chunk_frames, H, W, C]` after the cached frames, from `[B]`
    keys (and a conditional model's `[B, ...]` condition), and returns (the cache with the
    chunk written, the next frame index, the chunk)."""
    solver_keys, init_keys = split_per_sample(keys)

    def denoise(z, t, cond):
      del cond
      output = self._call(params, z, t, cache, first_frame, condition).video
      alpha, sigma = alpha_sigma_like(self.process, t, z)
      return x0_from_prediction(self.prediction, output, z, alpha, sigma)

    solver = SOLVERS[self.sampler][0](denoise, self.process, 0.0, self.clip_x0)
    x_init = normal_per_sample(init_keys, (self.chunk_frames,) + tuple(frame_shape))
    x = run_solver(solver, x_init, self.time_grid, solver_keys)
    cache = self._commit(params, x, cache, first_frame, condition)
    return cache, first_frame + self.chunk_frames // self.model.patch_size[0], x

  def _generate(self, params, keys, prompt, condition, num_chunks: int, frame_shape):
    cache, first_frame = self.empty_cache(keys.shape[0], frame_shape, params, prompt, condition)
    chunk_keys = jax.vmap(lambda key: jax.random.split(key, num_chunks))(keys)  # [B, K]

    def chunk(carry, step_keys):
      cache, first = carry
      cache, first, x = self.chunk_step(params, cache, first, step_keys, frame_shape, condition)
      return (cache, first), x

    _, chunks = jax.lax.scan(chunk, (cache, first_frame), jnp.swapaxes(chunk_keys, 0, 1))
    return einops.rearrange(chunks, "k b f h w c -> b (k f) h w c")

  @functools.cached_property
  def _jitted(self):
    return jax.jit(self._generate, static_argnums=(4, 5))

  def generate(
    self,
    params,
    seed: int,
    num_videos: int,
    num_chunks: int,
    frame_shape: tuple[int, int, int],
    prompt: np.ndarray | None = None,
    condition: np.ndarray | None = None,
  ) -> np.ndarray:
    """`[num_videos, num_chunks * chunk_frames, H, W, C]` generated frames (float32, [-1, 1]).

    Args:
      params: the model's params.
      seed: the same seed gives the same videos.
      num_videos: batch of videos generated together.
      num_chunks: chunks to generate after the prompt.
      frame_shape: (H, W, C).
      prompt: optional clean frames `[num_videos, Tp, H, W, C]` in [-1, 1] the video continues
        (prefilled into the cache); Tp must fit the cache next to a chunk.
      condition: a conditional model's `[num_videos, ...]` condition (e.g. caption tokens),
        the same for every chunk. (No guidance here: the unconditional branch would need its
        own cache.)
    """
    if num_chunks < 1 or num_videos < 1:
      raise ConfigError(f"num_chunks and num_videos must be >= 1, got {num_chunks}, {num_videos}.")
    if prompt is not None:
      prompt = jnp.asarray(prompt, jnp.float32)
      if prompt.shape[0] != num_videos or prompt.shape[2:] != tuple(frame_shape):
        raise ShapeError(
          f"The prompt must be [{num_videos}, Tp, *{tuple(frame_shape)}], got {prompt.shape}."
        )
      room = self.cache_frames - self.chunk_frames
      if prompt.shape[1] > room or prompt.shape[1] % self.model.patch_size[0]:
        raise ConfigError(
          f"A prompt of {prompt.shape[1]} frames does not fit: the cache of "
          f"{self.cache_frames} frames keeps {room} besides a chunk of "
          f"{self.chunk_frames}, and the prompt must be a multiple of the "
          f"temporal patch {self.model.patch_size[0]}."
        )
    base = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_videos))
    if condition is not None:
      condition = jnp.asarray(condition)
      if condition.shape[0] != num_videos:
        raise ShapeError(
          f"Expected one condition per video, [{num_videos}, ...]; got {condition.shape}."
        )
    return np.asarray(self._jitted(params, keys, prompt, condition, num_chunks, tuple(frame_shape)))
