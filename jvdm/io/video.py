"""Video files: read and write mp4/gif (batches of videos, grids and npz: `video_batch`).

Arrays at this edge are uint8: one video is `[T, H, W, 3]`, a batch of videos
`[N, T, H, W, C]` (see `jvdm.data.transforms` for the [-1, 1] model range).

mp4, webm, avi, mov, mkv and other containers go through imageio's FFMPEG
plugin, which drives the ffmpeg binary bundled with imageio-ffmpeg; GIF goes
through pillow. Reading streams frames one at a time, so `read_video_frames`
and `read_random_clip` hold only about one clip's frames in memory, although
they still decode a file from its first frame (ffmpeg seeking is
keyframe-inexact).
"""

import collections
import contextlib
import itertools
import os
import pathlib
from typing import Iterator

import imageio.v3 as iio
import numpy as np
from PIL import Image

from jvdm.errors import ConfigError, DataError, JvdmError, ShapeError

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp, which runs Python in the forked child;
# in a process with XLA's threads that child can deadlock before exec (seen here: a test hung
# writing an mp4; imageio-ffmpeg issue #58). This switch makes it fork without a preexec_fn.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

PathLike = str | os.PathLike

WRITE_SUFFIXES = (".mp4", ".gif")
# Suffixes decoded by pillow; everything else goes to ffmpeg.
_PILLOW_SUFFIXES = (".gif",)
# libx264 constant rate factor via imageio's 1..10 scale: 7 -> crf 15, close to
# visually lossless, so compression artifacts do not pass for model artifacts.
_MP4_QUALITY = 7


def write_video(
  path: PathLike, frames: np.ndarray, *, fps: float = 8, scale: int = 1
) -> pathlib.Path:
  """Writes one video as mp4 (libx264, yuv420p) or looping GIF.

  The format follows the suffix of `path`; parent folders are created.

  libx264 with yuv420p needs an even height and width, so mp4 frames with an
  odd size (after `scale`) are padded by one row/column repeating the edge;
  reading such a file back gives the padded size.

  GIF stores frame delays in hundredths of a second (so `fps` is rounded, and
  capped at 50 since browsers slow down shorter delays), and pillow merges
  identical consecutive frames into one longer frame, so a GIF read back can
  have fewer frames than were written.

  Args:
    path: output file, ending in `.mp4` or `.gif`.
    frames: uint8 video `[T, H, W, 3]` (or `[T, H, W, 1]`, written as gray).
    fps: frames per second, > 0.
    scale: integer nearest-neighbour upscale factor, so tiny videos are
      viewable.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix not in WRITE_SUFFIXES:
    raise JvdmError(
      f"Cannot write video {path}: suffix {path.suffix!r} is not one of {WRITE_SUFFIXES}."
    )
  frames = _check_video(frames, "write_video frames")
  if not fps > 0:
    raise ConfigError(f"write_video fps must be > 0, got {fps}.")
  frames = upscale(frames, scale)
  path.parent.mkdir(parents=True, exist_ok=True)
  if suffix == ".mp4":
    _write_mp4(path, frames, fps)
  else:
    _write_gif(path, frames, fps)
  return path


def iter_video(path: PathLike) -> Iterator[np.ndarray]:
  """Yields the frames of a video file one at a time, as uint8 `[H, W, 3]`.

  Grayscale frames are repeated to RGB and alpha is dropped.

  Raises:
    DataError: naming the file, if it is missing or cannot be decoded.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"Video file {path} does not exist or is not a file.")
  if path.suffix.lower() in _PILLOW_SUFFIXES:
    plugin_kwargs = dict(plugin="pillow", mode="RGB")
  else:
    plugin_kwargs = dict(plugin="FFMPEG")
  try:
    for frame in iio.imiter(path, **plugin_kwargs):
      yield _to_rgb(frame, path)
  except DataError:
    raise
  except Exception as e:  # Decoders raise many types; name the file.
    raise DataError(f"Cannot decode video {path}: {_error_summary(e)}") from e


def read_video(path: PathLike) -> np.ndarray:
  """Reads a whole video file (mp4, gif, webm, avi, mov, mkv, ...).

  Returns:
    uint8 `[T, H, W, 3]`.

  Raises:
    DataError: naming the file, if it is missing, cannot be decoded or has no
      frames.
  """
  frames = list(iter_video(path))
  if not frames:
    raise DataError(f"Video file {path} has no frames.")
  return np.stack(frames)


def read_video_frames(path: PathLike, start: int, num_frames: int, stride: int = 1) -> np.ndarray:
  """Reads frames `start, start + stride, ...` (num_frames of them).

  Decoding stops after the last frame needed; frames before `start` are
  decoded and dropped.

  Returns:
    uint8 `[num_frames, H, W, 3]`.

  Raises:
    DataError: naming the file, if it cannot be decoded or is too short.
  """
  _check_positive(num_frames=num_frames, stride=stride)
  if start < 0:
    raise ConfigError(f"read_video_frames start must be >= 0, got {start}.")
  last = start + (num_frames - 1) * stride
  # closing(): stop ffmpeg now rather than when the generator is collected.
  with contextlib.closing(iter_video(path)) as all_frames:
    frames = list(itertools.islice(all_frames, start, last + 1, stride))
  if len(frames) < num_frames:
    raise DataError(
      f"Video file {path} is too short: frames {start}..{last} at stride "
      f"{stride} need {last + 1} frames."
    )
  return np.stack(frames)


def read_random_clip(
  path: PathLike,
  *,
  num_frames: int,
  frame_stride: int = 1,
  rng: np.random.Generator,
) -> np.ndarray:
  """Reads one clip whose start is uniform over all valid starts.

  The frame count of most containers is unknown until decoded, so this picks
  the start in one decoding pass by reservoir sampling (Vitter's Algorithm R
  with a reservoir of one), holding only `(num_frames - 1) * frame_stride + 1`
  frames. The same file and rng state give the same clip.

  Args:
    path: video file.
    num_frames: frames in the clip.
    frame_stride: step between clip frames in the file.
    rng: source of the start; consumed once per valid start.

  Returns:
    uint8 `[num_frames, H, W, 3]`.

  Raises:
    DataError: naming the file, if it cannot be decoded or is shorter than one
      clip.
  """
  _check_positive(num_frames=num_frames, frame_stride=frame_stride)
  span = (num_frames - 1) * frame_stride + 1
  window = collections.deque(maxlen=span)  # The last `span` frames.
  clip = None
  num_read = 0
  num_starts = 0
  for frame in iter_video(path):
    num_read += 1
    window.append(frame)
    if len(window) == span:
      num_starts += 1
      # Keep this start with probability 1 / num_starts: every start seen so
      # far is then kept with the same probability.
      if rng.integers(num_starts) == 0:
        clip = list(itertools.islice(window, 0, None, frame_stride))
  if clip is None:
    raise DataError(
      f"Video file {path} has {num_read} frames; a clip of {num_frames} "
      f"frames at stride {frame_stride} needs at least {span}."
    )
  return np.stack(clip)


def _write_mp4(path: pathlib.Path, frames: np.ndarray, fps: float) -> None:
  _, height, width, _ = frames.shape
  # yuv420p subsamples chroma 2x2, so libx264 refuses odd sizes.
  frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
  iio.imwrite(
    path,
    frames,
    plugin="FFMPEG",
    fps=fps,
    codec="libx264",
    quality=_MP4_QUALITY,
    # imageio would otherwise rescale to multiples of 16; even sizes play.
    macro_block_size=1,
  )


def _write_gif(path: pathlib.Path, frames: np.ndarray, fps: float) -> None:
  # GIF delays are in centiseconds; browsers treat delays below 2 as 10.
  duration_ms = 10 * max(2, round(100 / fps))
  images = [Image.fromarray(frame) for frame in frames]
  images[0].save(
    path,
    format="GIF",
    save_all=True,
    append_images=images[1:],
    duration=duration_ms,
    loop=0,
  )


def _check_video(frames, name: str) -> np.ndarray:
  """Returns frames as uint8 `[T, H, W, 3]`, or raises ShapeError."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise ShapeError(
      f"{name} has dtype {frames.dtype}; expected uint8 (convert [-1, 1] "
      "floats with jvdm.data.transforms.to_uint8)."
    )
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or 0 in frames.shape:
    raise ShapeError(
      f"{name} has shape {frames.shape}; expected non-empty [T, H, W, 3] or [T, H, W, 1]."
    )
  if frames.shape[-1] == 1:
    frames = np.repeat(frames, 3, axis=-1)
  return frames


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
  """Nearest-neighbour upscale of the two axes before channels."""
  if not isinstance(scale, (int, np.integer)) or scale < 1:
    raise ConfigError(f"scale must be an int >= 1, got {scale!r}.")
  if scale == 1:
    return frames
  return np.repeat(np.repeat(frames, scale, axis=-3), scale, axis=-2)


def _to_rgb(frame: np.ndarray, path: pathlib.Path) -> np.ndarray:
  """uint8 `[H, W]` / `[H, W, 1|2|3|4]` -> uint8 `[H, W, 3]`."""
  if frame.dtype != np.uint8:
    raise DataError(f"Video file {path} decoded to dtype {frame.dtype}; expected uint8.")
  if frame.ndim == 2:
    frame = frame[..., None]
  if frame.ndim != 3 or frame.shape[-1] not in (1, 2, 3, 4):
    raise DataError(
      f"Video file {path} decoded to frames of shape {frame.shape}; expected [H, W] or [H, W, 1-4]."
    )
  if frame.shape[-1] in (1, 2):  # Gray, gray + alpha.
    return np.repeat(frame[..., :1], 3, axis=-1)
  return frame[..., :3]


def _error_summary(error: Exception) -> str:
  # ffmpeg errors carry its whole stderr; the first and last lines say why.
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  if len(lines) == 1:
    return lines[0]
  return f"{lines[0]} ({lines[-1]})"


def _check_positive(**values: int) -> None:
  for name, value in values.items():
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ConfigError(f"{name} must be an int >= 1, got {value!r}.")
