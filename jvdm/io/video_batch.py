"""Batches of uint8 videos `[N, T, H, W, C]`: one grid video of a batch (`tile_videos`,
`write_video_grid`) and exact npz archives (`save_npz`, `load_npz`, key `videos`)."""

import math
import pathlib

import numpy as np
from etils import epath

from jvdm.errors import ConfigError, DataError, JvdmError, ShapeError
from jvdm.io.video import PathLike, upscale, write_video

_NPZ_KEY = "videos"


def check_batch(videos, name: str, channels=(1, 3)) -> np.ndarray:
  """Checks uint8 `[N, T, H, W, C]` (C in `channels` unless None)."""
  videos = np.asarray(videos)
  if videos.dtype != np.uint8:
    raise ShapeError(
      f"{name} has dtype {videos.dtype}; expected uint8 (convert [-1, 1] "
      "floats with jvdm.data.transforms.to_uint8)."
    )
  if (
    videos.ndim != 5
    or 0 in videos.shape
    or (channels is not None and videos.shape[-1] not in channels)
  ):
    expected = "C" if channels is None else " or ".join(map(str, channels))
    raise ShapeError(
      f"{name} has shape {videos.shape}; expected non-empty [N, T, H, W, {expected}]."
    )
  return videos


def write_video_grid(
  path: PathLike,
  videos: np.ndarray,
  *,
  fps: float = 8,
  scale: int = 1,
  columns: int | None = None,
) -> pathlib.Path:
  """Tiles N videos into one grid video and writes it as mp4 or GIF.

  Each video is upscaled before tiling, so the separator stays thin.

  Args:
    path: output file, ending in `.mp4` or `.gif`.
    videos: uint8 `[N, T, H, W, 3]` (or `[N, T, H, W, 1]`).
    fps: frames per second, > 0.
    scale: integer nearest-neighbour upscale factor for each video.
    columns: videos per row; defaults to ceil(sqrt(N)).

  Returns:
    The path written.
  """
  videos = check_batch(videos, "write_video_grid videos")
  videos = upscale(videos, scale)
  grid = tile_videos(videos, columns=columns)
  return write_video(path, grid, fps=fps, scale=1)


def tile_videos(
  videos: np.ndarray,
  *,
  columns: int | None = None,
  separator: int = 2,
  separator_value: int = 255,
) -> np.ndarray:
  """Tiles N videos row by row into one video, with separator lines between.

  Cells of the last row left empty are filled with `separator_value`.

  Args:
    videos: uint8 `[N, T, H, W, C]`.
    columns: videos per row; defaults to ceil(sqrt(N)).
    separator: width in pixels of the lines between videos, >= 0.
    separator_value: uint8 value of the separator lines.

  Returns:
    uint8 `[T, rows * (H + separator) - separator,
    columns * (W + separator) - separator, C]`.
  """
  videos = check_batch(videos, "tile_videos videos", channels=None)
  num_videos, num_frames, height, width, channels = videos.shape
  if columns is None:
    columns = math.ceil(math.sqrt(num_videos))
  if not isinstance(columns, (int, np.integer)) or columns < 1:
    raise ConfigError(f"tile_videos columns must be an int >= 1, got {columns!r}.")
  if not isinstance(separator, (int, np.integer)) or separator < 0:
    raise ConfigError(f"tile_videos separator must be an int >= 0, got {separator!r}.")
  columns = min(columns, num_videos)
  rows = math.ceil(num_videos / columns)
  grid = np.full(
    (
      num_frames,
      rows * (height + separator) - separator,
      columns * (width + separator) - separator,
      channels,
    ),
    separator_value,
    np.uint8,
  )
  for n in range(num_videos):
    top = (n // columns) * (height + separator)
    left = (n % columns) * (width + separator)
    grid[:, top : top + height, left : left + width] = videos[n]
  return grid


def save_npz(path: PathLike, videos: np.ndarray) -> pathlib.Path:
  """Saves uint8 videos `[N, T, H, W, C]` under key `videos` (compressed).

  Args:
    path: output file; must end in `.npz` (numpy would silently append it).
    videos: uint8 `[N, T, H, W, C]`.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  if path.suffix.lower() != ".npz":
    raise JvdmError(f"save_npz path must end in '.npz', got {str(path)!r}.")
  videos = check_batch(videos, "save_npz videos", channels=None)
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(path, **{_NPZ_KEY: videos})
  return path


def load_npz(path: PathLike) -> np.ndarray:
  """Loads the uint8 `[N, T, H, W, C]` videos written by `save_npz`."""
  path = pathlib.Path(path)
  try:
    with np.load(path, allow_pickle=False) as archive:
      if _NPZ_KEY not in archive:
        raise DataError(f"{path} has keys {sorted(archive.keys())}; expected key {_NPZ_KEY!r}.")
      videos = archive[_NPZ_KEY]
  except DataError:
    raise
  except Exception as e:
    raise DataError(f"Cannot read npz file {path}: {e}") from e
  if videos.dtype != np.uint8 or videos.ndim != 5:
    raise DataError(
      f"{path}[{_NPZ_KEY!r}] has dtype {videos.dtype} and shape "
      f"{videos.shape}; expected uint8 [N, T, H, W, C]."
    )
  return videos


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
