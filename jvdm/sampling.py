"""Sampling from a trained workdir: restore EMA params -> jitted sampler -> mp4, gif, npz.

This is what `sample.py` runs. Writing and scoring samples (`jvdm.io.video_batch.write_samples`,
`jvdm.training.evaluation.evaluate_samples`) are shared with the training loop's evaluations.
"""

import json
import logging
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from etils import epath

from jvdm.config_rules import check_field
from jvdm.data.captions import decode_caption, encode_caption
from jvdm.data.transforms import to_uint8
from jvdm.errors import CheckpointError, ConfigError
from jvdm.io.video_batch import write_samples
from jvdm.builders import is_latent, make_video_sampler, null_condition_for, pixel_video_shape
from jvdm.pipelines.kv_cache_generation import CausalVideoSampler
from jvdm.pipelines.long.long_video import LongVideoSampler
from jvdm.training.evaluation import evaluate_samples, evaluation_captions
from jvdm.training.run_config import load_run_config
from jvdm.training.tasks import AUTOENCODER, task_for
from jvdm.workdir import (
  diffusion_video_shape,
  load_latent_space,
  load_trained_run,
  vae_from_workdir,
)

logger = logging.getLogger(__name__)


# The sampler's settings that the summary records.
SUMMARY_SETTINGS = ("sampler", "spacing", "frame_stagger", "time_power", "guidance_scale")


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
  sample_overrides = dict(
    steps=steps,
    eta=eta,
    frame_stagger=frame_stagger,
    sampler=sampler,
    spacing=spacing,
    time_power=time_power,
    guidance_scale=guidance_scale,
  )
  config = _checked_request(
    workdir, num_frames, num_samples, decode_settings, prompt, long, chunks, sample_overrides
  )
  num_frames = config.data.num_frames if num_frames is None else num_frames
  captions = _captions(config, prompt, num_samples, long)
  if captions is not None and captions.ndim == 3:
    long_settings = {**(long_settings or {}), "per_window_condition": True}
  run = load_trained_run(workdir)
  model, params, step, mesh = run.model, run.params, run.step, run.mesh
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
    if chunks is not None:  # the KV-cache sampler has no stagger (refused above if given)
      sample_overrides["frame_stagger"] = 0.0
    video_sampler = make_video_sampler(config, model.apply, **sample_overrides)
    if chunks is None:  # one jitted sampler over the whole length, or a long-video method
      length_sampler = video_sampler
      if long is not None:
        settings = {"window": video_shape[0], **(long_settings or {})}
        length_sampler = LongVideoSampler(video_sampler, model, long, **settings)
      videos = length_sampler.sample(
        params,
        seed,
        num_samples,
        (num_frames,) + video_shape[1:],
        batch_size=batch_size,
        progress=progress,
        condition=captions,
      )
    else:
      videos = _causal_sampler(config, model, video_sampler).generate(
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
    "steps": video_sampler.num_steps,
    **{name: getattr(video_sampler, name) for name in SUMMARY_SETTINGS},
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


def _captions(config, prompt: str | None, num_samples: int, long: str | None) -> np.ndarray | None:
  """Caption tokens `[N, L]` (`[N, W, L]`, one per window, for "a | b" with a long-video method
  that takes them), or None for an unconditional model."""
  if prompt is None:
    return evaluation_captions(config, num_samples)
  max_shapes = config.data.bouncing_shapes.max_shapes
  if long in ("gen_l_video", "freenoise") and "|" in prompt:  # one caption per window
    per_window = np.stack([encode_caption(p.strip(), max_shapes) for p in prompt.split("|")])
    return np.repeat(per_window[None], num_samples, axis=0)
  return np.repeat(encode_caption(prompt, max_shapes)[None], num_samples, axis=0)


def _causal_sampler(config, model, video_sampler) -> CausalVideoSampler:
  """The KV-cache sampler with the video sampler's solver settings and the config's cache."""
  if video_sampler.guidance_scale != 1.0:
    raise ConfigError(
      "Autoregressive generation (--chunks) does not support guidance yet "
      f"(guidance_scale={video_sampler.guidance_scale}); use 1."
    )
  return CausalVideoSampler(
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


def _checked_request(
  workdir, num_frames, num_samples, decode_settings, prompt, long, chunks, sample_overrides
) -> ml_collections.ConfigDict:
  """The workdir's config, once the request fits it (ConfigError or CheckpointError if not):
  each sampler setting given must pass its config field's rule (`jvdm.config_rules`)."""
  if not epath.Path(workdir).exists():
    raise CheckpointError(f"The workdir {workdir} does not exist; pass the --workdir of train.py.")
  config = load_run_config(workdir)
  if task_for(config) is AUTOENCODER:
    raise ConfigError(
      f"{workdir} holds a VAE, which reconstructs rather than samples; sample "
      "from a latent diffusion workdir trained on it (configs/bouncing_shapes_latent.py)."
    )
  if (num_frames is not None and num_frames < 1) or num_samples < 1:
    raise ConfigError(f"num_frames and num_samples must be >= 1, got {num_frames}, {num_samples}.")
  if decode_settings and not is_latent(config):
    raise ConfigError(
      f"Decode settings {decode_settings} apply to latent diffusion only; {workdir} "
      "diffuses pixels."
    )
  if prompt is not None and null_condition_for(config) is None:
    raise ConfigError(
      "--prompt needs a caption-conditioned model (model.condition='caption'); "
      "this one is unconditional."
    )
  if long is not None and chunks is not None:
    raise ConfigError(
      "Pass either --long or --chunks: --long autoregressive on a causal DiT "
      "already generates chunk by chunk with the KV cache."
    )
  given = {name: value for name, value in sample_overrides.items() if value is not None}
  for name, value in given.items():
    check_field(f"sample.{name}", value, config.model.name)
  if chunks is not None:
    if chunks < 1:
      raise ConfigError(f"--chunks must be >= 1, got {chunks}.")
    if config.model.name != "dit" or not config.model.causal:
      raise ConfigError(
        f"--chunks {chunks} generates chunk by chunk with the KV cache of a causal DiT; "
        f"{workdir} holds a {config.model.name!r} model"
        + ("" if config.model.name != "dit" else " with causal=False")
        + ". Leave out --chunks, or use --long for videos beyond the training length."
      )
    ignored = sorted(set(given) & {"eta", "frame_stagger", "time_power"})
    if ignored:
      raise ConfigError(
        f"--chunks generates with the KV-cache sampler, which has no {ignored} setting; "
        "leave them out."
      )
  return config
