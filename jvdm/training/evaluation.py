"""What the training loop does every `train.sample_every` steps and at the end.

A denoiser: sample videos from the EMA params (decoded from latents for latent diffusion),
write them to `W/samples/`, and log the synthetic-video metrics. A VAE: reconstruct held-out
clips, log their PSNR/SSIM, write originals beside reconstructions, and store the latent
statistics that latent diffusion normalizes with (`latent_statistics.json`).
"""

import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from jvdm.builders import make_video_sampler, null_condition_for
from jvdm.data.pipeline import evaluation_videos
from jvdm.data.synthetic import BouncingShapes
from jvdm.data.transforms import to_model_range, to_uint8
from jvdm.io.video_batch import tile_videos, write_samples
from jvdm.metrics import (
  caption_match_fraction,
  reference_factor_distance,
  reference_validity,
  synthetic_video_validity,
)
from jvdm.metrics.reconstruction import psnr, ssim
from jvdm.io.latent_statistics import latent_statistics, save_latent_statistics
from jvdm.ops.gaussian import sample_posterior
from jvdm.training.metrics_log import MetricsLog

logger = logging.getLogger(__name__)

# `evaluate(step, ema_params)`, run on every process; only process 0 writes.
Evaluate = Callable[[int, Any], None]


def evaluation_captions(config: ml_collections.ConfigDict, num_videos: int) -> np.ndarray | None:
  """Captions to sample a caption-conditioned model with: those of held-out synthetic videos
  (the generator at seed + 1), int32 [N, L]; None for an unconditional model."""
  if null_condition_for(config) is None:
    return None
  shapes = config.data.bouncing_shapes.to_dict()
  shapes["seed"] += 1
  shapes["num_videos"] = max(num_videos, 1)
  source = BouncingShapes(
    num_frames=1, height=config.data.height, width=config.data.width, **shapes
  )
  return np.stack([source[i]["caption"] for i in range(num_videos)])


def evaluate_samples(
  config: ml_collections.ConfigDict, videos: np.ndarray, captions: np.ndarray | None = None
) -> dict[str, Any] | None:
  """The synthetic-video validity of `videos` (uint8 [N, T, H, W, C]) and of real ones, the
  distance of their factor distribution from real videos' (`reference_factor_distance`), and
  with `captions` (the ones sampled with) the fraction whose colours match; None when the
  model was not trained on the synthetic data."""
  if config.data.name != "bouncing_shapes":
    return None
  shapes = config.data.bouncing_shapes
  generated = synthetic_video_validity(
    videos, max_shapes=shapes.max_shapes, min_speed=shapes.min_speed, max_speed=shapes.max_speed
  )
  reference = reference_validity(
    num_videos=len(videos),
    seed=shapes.seed + 1,
    num_frames=videos.shape[1],
    height=config.data.height,
    width=config.data.width,
    min_shapes=shapes.min_shapes,
    max_shapes=shapes.max_shapes,
    min_size=shapes.min_size,
    max_size=shapes.max_size,
    min_speed=shapes.min_speed,
    max_speed=shapes.max_speed,
  )
  generator_settings = {
    key: shapes[key]
    for key in ("min_shapes", "max_shapes", "min_size", "max_size", "min_speed", "max_speed")
  }
  # The spread of the samples over the generator's factors (1 = one repeated video would do
  # on validity alone); real videos against real ones score about 0.12 at 32 videos.
  result = {
    "generated": generated,
    "reference_real_videos": reference,
    "factor_distance": reference_factor_distance(
      videos, seed=shapes.seed + 1, **generator_settings
    ),
  }
  if captions is not None:
    generated["caption_match_fraction"] = caption_match_fraction(videos, captions)
  return result


def diffusion_evaluation(
  config: ml_collections.ConfigDict,
  model: Any,
  workdir: epath.Path,
  metrics_log: MetricsLog,
  video_shape: tuple[int, ...],
  latent_space: Any = None,  # a jvdm.models.vae.latent_space.LatentSpace for latent diffusion
) -> Evaluate:
  """Samples `train.num_sample_videos` videos and logs how many are valid and move."""
  sampler = make_video_sampler(config, model.apply)
  captions = evaluation_captions(config, config.train.num_sample_videos)

  def evaluate(step: int, ema_params: Any) -> None:
    videos = sampler.sample(
      ema_params,
      config.seed,
      config.train.num_sample_videos,
      video_shape,
      progress=False,
      condition=captions,
    )
    if latent_space is not None:
      videos = latent_space.decode(videos)
    videos = to_uint8(videos)
    if jax.process_index() != 0:
      return
    write_samples(
      workdir / "samples", f"step_{step:07d}", videos, config.sample.fps, config.sample.video_scale
    )
    metrics_log.write_video(step, "samples", tile_videos(videos), config.sample.fps)
    metric = evaluate_samples(config, videos, captions)
    if metric is not None:
      generated = metric["generated"]
      values = {
        "sample_valid_fraction": generated["valid_fraction"],
        "sample_continuous_motion_fraction": generated["continuous_motion_fraction"],
        "sample_motion_error_median_px": generated["motion_error_median_px"],
        "sample_factor_distance": metric["factor_distance"]["factor_distance"],
      }
      if "caption_match_fraction" in generated:
        values["sample_caption_match_fraction"] = generated["caption_match_fraction"]
      metrics_log.write(step, values)

  return evaluate


def reconstruct(
  model: Any, params: Any, pixels: jnp.ndarray, key: jax.Array
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Traceable: `pixels` in [-1, 1] through the posterior mean -> (reconstructions clipped to
  [-1, 1], a posterior sample of the latents, for their statistics)."""
  reconstructions, mean, logvar = model.apply({"params": params}, pixels)
  return jnp.clip(reconstructions, -1, 1), sample_posterior(key, mean, logvar)


def autoencoder_evaluation(
  config: ml_collections.ConfigDict,
  model: Any,  # a VideoAutoencoder
  workdir: epath.Path,
  metrics_log: MetricsLog,
) -> Evaluate:
  """Reconstructs `train.num_sample_videos` held-out clips (`evaluation_videos`)."""

  videos = evaluation_videos(config.data, config.train.num_sample_videos)
  pixels = to_model_range(videos)
  jitted_reconstruct = jax.jit(lambda params, key: reconstruct(model, params, pixels, key))
  key = jax.random.key(config.seed + 1)

  def evaluate(step: int, ema_params: Any) -> None:
    reconstructions, latents = jitted_reconstruct(ema_params, key)
    values = {
      "eval_psnr": float(jnp.mean(psnr(reconstructions, pixels))),
      "eval_ssim": float(jnp.mean(ssim(reconstructions, pixels))),
    }
    if jax.process_index() != 0:
      return
    statistics = latent_statistics(np.asarray(latents))
    save_latent_statistics(workdir, statistics, step)
    side_by_side = np.concatenate([videos, to_uint8(reconstructions)], axis=3)  # original | ours
    write_samples(
      workdir / "samples",
      f"reconstructions_step_{step:07d}",
      side_by_side,
      config.sample.fps,
      config.sample.video_scale,
    )
    metrics_log.write_video(step, "reconstructions", tile_videos(side_by_side), config.sample.fps)
    metrics_log.write(
      step, {**values, "latent_shift": statistics["shift"], "latent_scale": statistics["scale"]}
    )
    logger.info(
      "Step %d: held-out PSNR %.2f dB, SSIM %.3f; latent shift %.3f, scale %.3f",
      step,
      values["eval_psnr"],
      values["eval_ssim"],
      statistics["shift"],
      statistics["scale"],
    )

  return evaluate
