"""Per-video transforms at the data edge: resize/crop and pixel range changes.

Pixels are uint8 in files and batches, and float in [-1, 1] inside the model.
"""

import numpy as np
from PIL import Image

from jvdm.errors import ConfigError, ShapeError


def resize_and_center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes so the shorter side fits, keeping aspect, then center-crops.

  Resampling is antialiased bicubic (PIL), applied only to the region that
  survives the crop, which equals resizing the whole frame and then cropping.

  Args:
    frames: uint8 `[T, H, W, C]`, C in {1, 2, 3, 4}.
    height: output height, > 0.
    width: output width, > 0.

  Returns:
    uint8 `[T, height, width, C]`; `frames` itself if already that size.
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise ShapeError(f"resize_and_center_crop frames have dtype {frames.dtype}; expected uint8.")
  if frames.ndim != 4 or frames.shape[-1] not in (1, 2, 3, 4):
    raise ShapeError(
      f"resize_and_center_crop frames have shape {frames.shape}; expected "
      "[T, H, W, C] with C in 1-4."
    )
  for name, value in (("height", height), ("width", width)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ConfigError(f"resize_and_center_crop {name} must be an int >= 1, got {value!r}.")
  num_frames, in_height, in_width, channels = frames.shape
  if (in_height, in_width) == (height, width):
    return frames
  if in_height == 0 or in_width == 0:
    raise ShapeError(f"resize_and_center_crop frames have shape {frames.shape}; expected H, W > 0.")
  scale = max(height / in_height, width / in_width)
  crop_height, crop_width = height / scale, width / scale
  top, left = (in_height - crop_height) / 2, (in_width - crop_width) / 2
  box = (left, top, left + crop_width, top + crop_height)  # In input pixels.
  out = np.empty((num_frames, height, width, channels), np.uint8)
  for t in range(num_frames):
    # PIL has no [H, W, 1] mode; use 2-D gray.
    image = Image.fromarray(frames[t, ..., 0] if channels == 1 else frames[t])
    resized = image.resize((width, height), Image.Resampling.BICUBIC, box=box)
    out[t] = np.asarray(resized).reshape(height, width, channels)
  return out


def to_model_range(frames) -> np.ndarray:
  """uint8 pixels -> float32 in [-1, 1] (0 -> -1, 255 -> 1).

  Works on numpy and jax arrays; the result has the input's array type.
  """
  if frames.dtype != np.uint8:
    raise ShapeError(f"to_model_range expects uint8 pixels, got dtype {frames.dtype}.")
  return frames.astype(np.float32) / 127.5 - 1.0


def to_network_input(videos):
  """A batch as the network takes it: uint8 pixels -> float32 in [-1, 1]; floats (pixels in
  [-1, 1], or latents) are used as given, in float32. Works under jit."""
  if videos.dtype == np.uint8:
    return to_model_range(videos)
  return videos.astype(np.float32)


def to_uint8(x) -> np.ndarray:
  """Floats in [-1, 1] -> uint8 numpy pixels, clipped and rounded.

  NaNs become 0 (black) rather than undefined values from the cast.
  """
  x = np.asarray(x)
  # Not `issubdtype(floating)`: bfloat16 from jax is not a numpy floating type.
  if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
    raise ShapeError(f"to_uint8 expects floats in [-1, 1], got dtype {x.dtype}.")
  pixels = np.round((x.astype(np.float32) + 1.0) * 127.5)
  pixels = np.nan_to_num(np.clip(pixels, 0, 255), nan=0.0)
  return pixels.astype(np.uint8)
