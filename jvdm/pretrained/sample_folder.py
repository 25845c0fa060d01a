"""`sample.py --pretrained DIR`: videos from a published model's folder, written as the
workdir samples are (a grid mp4 and gif, and `samples.npz` with every frame)."""

import logging
import time
from typing import Any

import numpy as np
from etils import epath

from jvdm.data.transforms import to_uint8
from jvdm.io.video_batch import write_samples
from jvdm.pretrained.wan_pipeline import check_video_size, load

logger = logging.getLogger(__name__)

WAN_FPS = 16  # Wan 2.1's frame rate (diffusers' export_to_video(..., fps=16) in its examples)


def sample_pretrained(
  folder: str,
  *,
  prompt: str,
  out: str,
  negative_prompt: str = "",
  num_samples: int = 1,
  num_frames: int = 81,
  height: int = 480,
  width: int = 832,
  steps: int = 50,
  guidance_scale: float = 5.0,
  seed: int = 0,
  long: str | None = None,
  long_settings: dict[str, Any] | None = None,
  batch_size: int = 1,
  progress: bool = True,
) -> dict[str, Any]:
  """Samples `num_samples` videos of `prompt` from the diffusers-format folder and writes them
  to `out`; returns a summary (the settings and the files written)."""
  check_video_size(num_frames, height, width)  # before minutes of loading
  started = time.perf_counter()
  pipeline = load(folder)
  logger.info("Loaded %s in %.1f s", folder, time.perf_counter() - started)
  videos = pipeline(
    [prompt] * num_samples,
    negative_prompt,
    num_frames=num_frames,
    height=height,
    width=width,
    num_steps=steps,
    guidance_scale=guidance_scale,
    seed=seed,
    long=long,
    long_settings=long_settings,
    batch_size=batch_size,
    progress=progress,
  )
  paths = write_samples(epath.Path(out), "samples", to_uint8(np.asarray(videos)), WAN_FPS, 1)
  summary = {
    "pretrained": str(folder),
    "prompt": prompt,
    "negative_prompt": negative_prompt,
    "num_samples": num_samples,
    "num_frames": num_frames,
    "height": height,
    "width": width,
    "steps": steps,
    "guidance_scale": guidance_scale,
    "seed": seed,
    "files": [str(p) for p in paths],
  }
  if long is not None:
    summary["long"] = {"method": long, **(long_settings or {})}
  logger.info("Sampled %d videos into %s", num_samples, out)
  return summary
