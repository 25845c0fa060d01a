"""The denoising training loss."""

from typing import Callable

import jax
import jax.numpy as jnp

from jvdm.diffusion.parameterization import target_for_prediction
from jvdm.diffusion.vp import broadcast_to_video
from jvdm.diffusion.weighting import draw_times, output_loss_weight, staggered_levels
from jvdm.errors import ConfigError, ShapeError


def staggered_times(rng: jax.Array, batch: int, frames: int) -> jnp.ndarray:
  """Per-frame times of a staggered sampling grid at a random point: `[B, T]`.

  The pattern a staggered sampling grid visits (`staggered_levels`), with the progress
  u ~ U(0, 1) and the stagger s ~ U(0, 1) drawn per video. Near s = 1 the earlier
  frames are clean, the later ones pure noise and one frame lies between: frame-by-frame
  generation, which uniform per-frame levels (FVDM) almost never show in training.
  """
  progress_rng, stagger_rng = jax.random.split(rng)
  progress = jax.random.uniform(progress_rng, (batch, 1))
  stagger = jax.random.uniform(stagger_rng, (batch, 1))
  return staggered_levels(progress, stagger, frames)  # [B, T]


def sample_timesteps(
  rng: jax.Array,
  batch: int,
  frames: int,
  per_frame_noise: float = 0.0,
  distribution: str = "uniform",
  logit_mean: float = 0.0,
  logit_std: float = 1.0,
  staggered_noise: float = 0.0,
) -> jnp.ndarray:
  """Noise levels t (see `draw_times`): one level per video, or per frame for some videos.

  FVDM's probabilistic timestep sampling (PTSS; Liu et al. 2024, sec. 3.3): each video draws
  an independent t per frame with probability `per_frame_noise`, else one t for all frames.
  Per-frame levels teach the network to denoise a frame from its cleaner neighbours, which makes
  it learn temporal structure far sooner; the synchronized videos keep it good at the equal
  levels a plain sampler uses.

  With probability `staggered_noise` a video instead takes the times of a staggered sampling
  grid (`staggered_times`), so the network also learns the frame-by-frame situations that
  staggered sampling puts it in.

  Returns:
    `[B]` when `per_frame_noise` and `staggered_noise` are 0, else `[B, T]`.
  """
  for name, value in (("per_frame_noise", per_frame_noise), ("staggered_noise", staggered_noise)):
    if not 0.0 <= value <= 1.0:
      raise ConfigError(f"{name} is a probability in [0, 1], got {value}.")
  draw = lambda key, shape: draw_times(key, shape, distribution, logit_mean, logit_std)
  if per_frame_noise == 0.0 and staggered_noise == 0.0:
    return draw(rng, (batch,))
  frame_rng, video_rng, choice_rng = jax.random.split(rng, 3)
  per_frame = draw(frame_rng, (batch, frames))
  if per_frame_noise < 1.0:
    per_video = draw(video_rng, (batch, 1))
    independent = jax.random.bernoulli(choice_rng, per_frame_noise, (batch, 1))
    per_frame = jnp.where(independent, per_frame, per_video)
  if staggered_noise == 0.0:
    return per_frame
  # Keys of their own, so the runs with staggered_noise = 0 keep their random stream.
  stagger_rng, stagger_choice_rng = jax.random.split(jax.random.fold_in(rng, 1))
  staggered = jax.random.bernoulli(stagger_choice_rng, staggered_noise, (batch, 1))
  return jnp.where(staggered, staggered_times(stagger_rng, batch, frames), per_frame)


def diffusion_loss(
  network: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray],
  process,
  prediction: str,
  x: jnp.ndarray,
  rng: jax.Array,
  per_frame_noise: float = 0.0,
  weighting: str = "uniform",
  min_snr_gamma: float = 5.0,
  time_sampling: str = "uniform",
  logit_mean: float = 0.0,
  logit_std: float = 1.0,
  context_frames: int = 0,
  staggered_noise: float = 0.0,
) -> jnp.ndarray:
  """Weighted mean squared error of the network's prediction at a random noise level.

  Args:
    network: `(model input [B, T, H, W, C], t [B] or [B, T]) -> prediction [B, T, H, W, C]`;
      it sees `process.scale_model_input(z_t, t)`.
    process: the forward process (VP, EDM or flow).
    prediction: what the network outputs (`jvdm.diffusion.PREDICTIONS`).
    x: clean videos `[B, T, H, W, C]` in [-1, 1].
    rng: a PRNG key, or `[B]` keys, one per video (a video's noise level and noise depend only
      on its key, so the loss over micro-batches with the matching keys averages to the loss
      over the whole batch).
    per_frame_noise: the probability that a video gets an independent t per frame (see
      `sample_timesteps`).
    weighting, min_snr_gamma: the loss weighting over noise levels (`output_loss_weight`).
    time_sampling, logit_mean, logit_std: the distribution of t (`draw_times`).
    context_frames: frame-as-prompt training for causal models (ViD-GPT, Gao et al. 2024,
      sec. 3.2; Ca2-VDM): each video keeps its first k frames clean (t = 0), k uniform in
      [0, context_frames], and is scored on the other frames only.
    staggered_noise: the probability that a video's times follow a staggered sampling grid
      (see `sample_timesteps`).

  Returns:
    The scalar loss.
  """
  batch, frames = x.shape[:2]
  if context_frames and not 0 < context_frames < frames:
    raise ConfigError(f"context_frames={context_frames} must be below the clip's {frames} frames.")
  key_ndim = 0 if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else 1  # typed or raw keys
  keys = jax.random.split(rng, batch) if rng.ndim == key_ndim else rng
  if keys.shape[:1] != (batch,) or keys.ndim != key_ndim + 1:
    raise ShapeError(f"rng must be one key or one key per video ({batch}), got shape {rng.shape}.")

  def draw(key):  # one video's randomness, so a micro-batch draws what the whole batch would
    time_key, noise_key, context_key = jax.random.split(key, 3)
    t = sample_timesteps(
      time_key, 1, frames, per_frame_noise, time_sampling, logit_mean, logit_std, staggered_noise
    )[0]  # [] or [T]
    noise = jax.random.normal(noise_key, x.shape[1:], x.dtype)
    return t, noise, jax.random.randint(context_key, (), 0, context_frames + 1)

  t, noise, count = jax.vmap(draw)(keys)
  scored = jnp.ones(x.shape[:2], bool)
  if context_frames:
    scored = jnp.arange(frames)[None, :] >= count[:, None]  # [B, T]
    t = jnp.where(scored, jnp.broadcast_to(t.reshape(batch, -1), x.shape[:2]), 0.0)
  alpha, sigma = process.alpha_sigma(t)
  alpha, sigma = broadcast_to_video(alpha, x), broadcast_to_video(sigma, x)
  z = alpha * x + sigma * noise
  target = target_for_prediction(prediction, x, noise, alpha, sigma)
  output = network(process.scale_model_input(z, t), t).astype(jnp.float32)
  weight = output_loss_weight(weighting, prediction, alpha, sigma, min_snr_gamma)
  error = jnp.where(broadcast_to_video(scored, x), weight * jnp.square(output - target), 0.0)
  return jnp.sum(error) / (jnp.sum(scored) * (x.size // scored.size))
