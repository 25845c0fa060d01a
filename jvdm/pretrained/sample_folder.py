"""`sample.py --pretrained DIR`: videos from a published model's folder (text-to-video, or
image-to-video from `--image`), written as the workdir samples are (a grid mp4 and gif, and
`samples.npz` with every frame)."""

import logging
import time
from typing import Any

import numpy as np
from etils import epath

from jvdm.data.transforms import to_uint8
from jvdm.io.video_batch import write_samples
from PIL import Image

from jvdm.errors import ConfigError
from jvdm.pretrained.diffusers_folder import pipeline_options
from jvdm.pretrained.pipelines import load
from jvdm.pretrained.wan_i2v_pipeline import PIPELINE_CLASS as I2V_PIPELINE_CLASS
from jvdm.pretrained.wan_pipeline import check_video_size

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
  image: str | None = None,
) -> dict[str, Any]:
  """Samples `num_samples` videos of `prompt` from the diffusers-format folder and writes them
  to `out`; `image` is the first frame's file for an image-to-video folder. Returns a summary
  (the settings and the files written)."""
  check_video_size(num_frames, height, width)  # these checks come before minutes of loading
  image_to_video = pipeline_options(folder).get("_class_name") == I2V_PIPELINE_CLASS
  if image_to_video and (image is None or long is not None):
    raise ConfigError(
      f"{folder} is an image-to-video model: give --image (the first frame); it takes no "
      "--long method."
    )
  if not image_to_video and image is not None:
    raise ConfigError(f"{folder} is a text-to-video model; it takes no --image.")
  first_frame = None if image is None else _read_image(image)
  started = time.perf_counter()
  pipeline = load(folder)
  logger.info("Loaded %s in %.1f s", folder, time.perf_counter() - started)
  prompts = [prompt] * num_samples
  settings = dict(
    num_frames=num_frames,
    height=height,
    width=width,
    num_steps=steps,
    guidance_scale=guidance_scale,
    seed=seed,
    batch_size=batch_size,
    progress=progress,
  )
  if image_to_video:
    videos = pipeline(prompts, first_frame, negative_prompt, **settings)
  else:
    videos = pipeline(prompts, negative_prompt, long=long, long_settings=long_settings, **settings)
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
  if image is not None:
    summary["image"] = str(image)
  logger.info("Sampled %d videos into %s", num_samples, out)
  return summary


def _read_image(path: str) -> Image.Image:
  """The RGB image in `path`, or ConfigError naming it."""
  try:
    with Image.open(path) as image:
      return image.convert("RGB")
  except (OSError, ValueError) as error:
    raise ConfigError(f"--image {path} is not an image file jvdm can read: {error}") from error
