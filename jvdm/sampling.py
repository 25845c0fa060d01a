"""Sampling from a trained workdir: restore EMA params -> jitted sampler -> mp4, gif, npz.

This is what `sample.py` runs; the training loop uses `write_samples` for its periodic samples.
"""

import json
import logging
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from etils import epath

from jvdm.data.captions import decode_caption, encode_caption, null_condition_for
from jvdm.data.synthetic import BouncingShapes
from jvdm.data.transforms import to_uint8
from jvdm.errors import CheckpointError, ConfigError
from jvdm.io.video_batch import save_npz, write_video_grid
from jvdm.metrics import (
  caption_match_fraction,
  reference_factor_distance,
  reference_validity,
  synthetic_video_validity,
)
from jvdm.models import get_model
from jvdm.models.shapes import is_latent, pixel_video_shape
from jvdm.pipelines.kv_cache_generation import CausalVideoSampler
from jvdm.pipelines.long.long_video import LongVideoSampler
from jvdm.pipelines.video_sampler import make_video_sampler
from jvdm.training.run_config import load_run_config
from jvdm.workdir import (
  config_mesh,
  diffusion_video_shape,
  load_latent_space,
  restore_ema_params,
  vae_from_workdir,
)

logger = logging.getLogger(__name__)


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


def write_samples(
  out_dir: str | epath.Path, name: str, videos: np.ndarray, fps: int, scale: int
) -> list[epath.Path]:
  """Writes `videos` (uint8 [N, T, H, W, C]) as one grid mp4 and gif, and as `{name}.npz`
  (key `videos`, exact, for rescoring); returns the paths."""
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = [out_dir / f"{name}.mp4", out_dir / f"{name}.gif"]
  for path in paths:
    write_video_grid(path, videos, fps=fps, scale=scale)
  save_npz(out_dir / f"{name}.npz", videos)
  return paths + [out_dir / f"{name}.npz"]


def sample_from_workdir(
  workdir: str,
  *,
  out: str | None = None,
  num_samples: int = 8,
  num_frames: int | None = None,
  steps: int | None = None,
  seed: int = 0,
  eta: float | None = None,
  frame_stagger: float | None = None,
  sampler: str | None = None,
  spacing: str | None = None,
  time_power: float | None = None,
  guidance_scale: float | None = None,
  chunks: int | None = None,
  prompt: str | None = None,
  batch_size: int = 8,
  progress: bool = True,
  long: str | None = None,
  long_settings: dict[str, Any] | None = None,
  decode_settings: dict[str, int] | None = None,
) -> dict[str, Any]:
  """Samples videos from the latest checkpoint of `workdir` and writes them.

  Args:
    workdir: the training workdir (holds config.json and checkpoints/).
    out: output folder; default `workdir/samples/sample_seed{seed}`.
    num_samples: number of videos.
    num_frames: frames per video; default the training length.
    steps: sampler steps; default the config's.
    seed: the same seed gives the same videos.
    eta: DDIM eta; default the config's.
    frame_stagger: lag of later frames' time grids (see `staggered_time_grid`); default the
      config's.
    sampler, spacing, time_power, guidance_scale: as `config.sample`; default the config's.
    chunks: generate autoregressively, this many chunks of `config.sample.chunk_frames`
      frames, with the KV cache (a causal DiT only; `CausalVideoSampler`).
    prompt: for a caption-conditioned model, the caption of every video, as colour names
      ("red blue"; "" = unconditional); default the captions of held-out synthetic videos.
      With long="gen_l_video", prompts separated by "|" give one per window; with
      long="freenoise", any number spread over the video (FreeNoise's motion injection).
    batch_size: videos per jitted call.
    progress: show progress bars.
    long: a long-video method (`jvdm.pipelines.long.long_video.METHODS`) for num_frames beyond
      the training length; "autoregressive" on a causal DiT runs the KV-cache sampler.
    long_settings: `LongVideoSampler` fields (window defaults to the training length).
    decode_settings: for latent diffusion, `LatentSpace` fields that override the config's
      `latent` section: decode_chunk_frames, decode_tile, decode_tile_overlap,
      decode_row_slices.

  Returns:
    A summary: paths written, the step sampled, and the metric when available.
  """
  if not epath.Path(workdir).exists():
    raise CheckpointError(f"The workdir {workdir} does not exist; pass the --workdir of train.py.")
  config = load_run_config(workdir)
  if config.model.name == "vae":
    raise ConfigError(
      f"{workdir} holds a VAE, which reconstructs rather than samples; sample "
      "from a latent diffusion workdir trained on it (configs/bouncing_shapes_latent.py)."
    )
  num_frames = config.data.num_frames if num_frames is None else num_frames
  if num_frames < 1 or num_samples < 1:
    raise ConfigError(f"num_frames and num_samples must be >= 1, got {num_frames}, {num_samples}.")
  if decode_settings and not is_latent(config):
    raise ConfigError(
      f"Decode settings {decode_settings} apply to latent diffusion only; {workdir} "
      "diffuses pixels."
    )
  null_condition = null_condition_for(config)
  if prompt is not None and null_condition is None:
    raise ConfigError(
      "--prompt needs a caption-conditioned model (model.condition='caption'); "
      "this one is unconditional."
    )
  if prompt is None:
    captions = evaluation_captions(config, num_samples)
  else:
    max_shapes = config.data.bouncing_shapes.max_shapes
    if long in ("gen_l_video", "freenoise") and "|" in prompt:  # one caption per window
      per_window = np.stack([encode_caption(p.strip(), max_shapes) for p in prompt.split("|")])
      captions = np.repeat(per_window[None], num_samples, axis=0)
      long_settings = {**(long_settings or {}), "per_window_condition": True}
    else:
      captions = np.repeat(encode_caption(prompt, max_shapes)[None], num_samples, axis=0)
  if long is not None and chunks is not None:
    raise ConfigError(
      "Pass either --long or --chunks: --long autoregressive on a causal DiT "
      "already generates chunk by chunk with the KV cache."
    )
  mesh = config_mesh(config)
  model = get_model(config)
  pixel_frames = num_frames
  if is_latent(config):  # the sampler runs on latent frames
    vae, _ = vae_from_workdir(config.latent.vae_workdir)
    num_frames = vae.latent_shape((num_frames,) + pixel_video_shape(config)[1:])[0]  # 1 + 4k
  if long == "autoregressive" and getattr(model, "causal", False):  # the KV-cache sampler
    chunks = -(-num_frames // config.sample.chunk_frames)
  video_shape = diffusion_video_shape(config)  # the training clip, as the network sees it
  with jax.set_mesh(mesh), nn.logical_axis_rules(config.mesh.logical_axis_rules):
    latent_space = None
    if is_latent(config):
      latent_space = load_latent_space(config.latent, mesh).replace(**(decode_settings or {}))
    params, step = restore_ema_params(workdir, config, model, mesh)
    video_sampler = make_video_sampler(
      config,
      model.apply,
      steps=steps,
      eta=eta,
      frame_stagger=frame_stagger if chunks is None else 0.0,
      sampler=sampler,
      spacing=spacing,
      time_power=time_power,
      guidance_scale=guidance_scale,
    )
    if long is not None and chunks is None:
      settings = {"window": video_shape[0], **(long_settings or {})}
      long_sampler = LongVideoSampler(video_sampler, model, long, **settings)
      videos = long_sampler.sample(
        params,
        seed,
        num_samples,
        (num_frames,) + video_shape[1:],
        batch_size=batch_size,
        progress=progress,
        condition=captions,
      )
    elif chunks is None:
      videos = video_sampler.sample(
        params,
        seed,
        num_samples,
        (num_frames,) + video_shape[1:],
        batch_size=batch_size,
        progress=progress,
        condition=captions,
      )
    else:
      causal = CausalVideoSampler(
        model,
        video_sampler.process,
        video_sampler.prediction,
        sampler=video_sampler.sampler,
        num_steps=video_sampler.num_steps,
        spacing=video_sampler.spacing,
        chunk_frames=config.sample.chunk_frames,
        cache_frames=config.sample.cache_frames,
        sink_frames=config.sample.sink_frames,
        clip_x0=video_sampler.clip_x0,
      )
      if video_sampler.guidance_scale != 1.0:
        raise ConfigError(
          "Autoregressive generation (--chunks) does not support guidance yet "
          f"(guidance_scale={video_sampler.guidance_scale}); use 1."
        )
      videos = causal.generate(
        params, seed, num_samples, chunks, video_shape[1:], condition=captions
      )
      num_frames = videos.shape[1] if long is None else num_frames
      videos = videos[:, :num_frames]
    if latent_space is not None:
      videos = latent_space.decode(videos, progress=progress)
  videos = to_uint8(videos)
  num_frames = videos.shape[1] if chunks is not None else pixel_frames

  out_dir = epath.Path(out) if out else epath.Path(workdir) / "samples" / f"sample_seed{seed}"
  paths = write_samples(out_dir, "samples", videos, config.sample.fps, config.sample.video_scale)
  summary = {
    "workdir": str(workdir),
    "checkpoint_step": int(step),
    "seed": seed,
    "num_samples": num_samples,
    "num_frames": num_frames,
    "sampler": video_sampler.sampler,
    "spacing": video_sampler.spacing,
    "steps": video_sampler.num_steps,
    "frame_stagger": video_sampler.frame_stagger,
    "time_power": video_sampler.time_power,
    "guidance_scale": video_sampler.guidance_scale,
    "files": [str(p) for p in paths],
  }
  if long is not None:
    summary["long"] = {"method": long, **(long_settings or {})}
  if captions is not None:
    summary["captions"] = [decode_caption(c) for c in captions]
  metric = evaluate_samples(config, videos, captions)
  if metric is not None:
    summary["synthetic_video_validity"] = metric
    (out_dir / "metrics.json").write_text(json.dumps(metric, indent=2))
    summary["files"].append(str(out_dir / "metrics.json"))
  logger.info("Sampled %d videos from step %d into %s", num_samples, step, out_dir)
  return summary
