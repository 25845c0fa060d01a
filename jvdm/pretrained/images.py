"""Images given to published pipelines (a PIL image or a uint8 `[H, W, 3]` array), prepared
with PIL as diffusers and transformers prepare them, so the pixels match theirs exactly."""

import numpy as np
import PIL.Image

from jvdm.errors import ShapeError


def as_pil_image(image) -> PIL.Image.Image:
  """An RGB PIL image from a PIL image (converted to RGB) or a uint8 `[H, W, 3]` array."""
  if isinstance(image, PIL.Image.Image):
    return image.convert("RGB")
  array = np.asarray(image)
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
    raise ShapeError(
      f"An image is a PIL image or a uint8 [H, W, 3] array; got {array.dtype} {array.shape}."
    )
  return PIL.Image.fromarray(array)


def image_to_video_frame(image, height: int, width: int) -> np.ndarray:
  """float32 `[height, width, 3]` in [-1, 1]: the image resized (Lanczos, aspect ratio not
  kept) as diffusers' `VideoProcessor.preprocess` resizes a video's first frame."""
  resized = as_pil_image(image).resize((width, height), resample=PIL.Image.LANCZOS)
  return np.asarray(resized).astype(np.float32) / 255.0 * 2.0 - 1.0
