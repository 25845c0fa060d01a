"""A grain random-access source of fixed-size clips from a folder of videos."""

import operator
import os
import pathlib
import threading
from typing import Any, Sequence

from absl import logging
import numpy as np

from jvdm.data import transforms
from jvdm.errors import ConfigError, DataError
from jvdm.io import video as video_io

DEFAULT_EXTENSIONS = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv")
# Failures quoted in the error raised when no file is usable.
_MAX_REASONS_SHOWN = 5


class VideoFolderSource:
  """Clips of `num_frames` frames from the video files under a folder.

  Item `index` is one clip of file `index` (files listed recursively, sorted
  by path): frames `start, start + frame_stride, ...`, with `start` uniform
  over the valid starts and drawn from `np.random.default_rng([seed, index])`,
  then resized and center-cropped to `height` x `width`. So an index always
  gives the same clip; use `load(index, rng)` for a fresh clip per epoch.

  A file that cannot be decoded or is shorter than one clip gives `None`
  (filter it out in the pipeline), is logged once and is remembered in
  `skipped`. Each file is decoded from its start on every access (see
  `jvdm.io.video.read_random_clip`). The skip counters are per process: with
  grain worker processes, each worker counts its own.

  Items: `{"video": uint8 [num_frames, height, width, 3]}` or `None`.
  """

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    num_frames: int,
    frame_stride: int = 1,
    height: int,
    width: int,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    seed: int = 0,
  ):
    """Lists the videos under `root` and checks that one gives a clip.

    Raises:
      ConfigError: a size or stride is not a positive int.
      DataError: `root` is missing or not a folder, has no file with one of
        `extensions`, or none of its video files gives a clip.
    """
    for name, value in (
      ("num_frames", num_frames),
      ("frame_stride", frame_stride),
      ("height", height),
      ("width", width),
    ):
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"VideoFolderSource {name} must be an int >= 1, got {value!r}.")
    self._root = pathlib.Path(root)
    self._num_frames = int(num_frames)
    self._frame_stride = int(frame_stride)
    self._height = int(height)
    self._width = int(width)
    self._seed = seed
    self._extensions = tuple(
      ext.lower() if ext.startswith(".") else "." + ext.lower() for ext in extensions
    )
    self._skipped: dict[str, str] = {}  # path -> why it gave no clip
    self._lock = threading.Lock()  # grain may read from several threads.

    if not self._root.exists():
      raise DataError(f"Video folder {self._root} does not exist.")
    if not self._root.is_dir():
      raise DataError(
        f"Video folder {self._root} is not a folder; expected a folder of video files."
      )
    self._paths = tuple(
      sorted(
        (
          path
          for path in self._root.rglob("*")
          if path.suffix.lower() in self._extensions and path.is_file()
        ),
        key=lambda path: path.relative_to(self._root).as_posix(),
      )
    )
    if not self._paths:
      raise DataError(
        f"Video folder {self._root} has no video files: looked recursively"
        f" for extensions {self._extensions}."
      )
    self._probe()

  def _probe(self) -> None:
    """Loads items until one gives a clip, so a useless folder fails early."""
    for index in range(len(self._paths)):
      if self[index] is not None:
        return
    reasons = [self._skipped[str(path)] for path in self._paths]
    shown = "\n  ".join(reasons[:_MAX_REASONS_SHOWN])
    more = len(reasons) - _MAX_REASONS_SHOWN
    if more > 0:
      shown += f"\n  ... and {more} more."
    raise DataError(
      f"None of the {len(self._paths)} video files tried under "
      f"{self._root} gives a clip of {self._num_frames} frames at stride "
      f"{self._frame_stride}:\n  {shown}"
    )

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray] | None:
    index = operator.index(index)
    if not 0 <= index < len(self._paths):
      raise IndexError(
        f"VideoFolderSource index {index} is out of range for {len(self._paths)} videos."
      )
    return self.load(index, np.random.default_rng([self._seed, index]))

  def load(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """One clip of file `index` with its start drawn from `rng`, or None."""
    path = self._paths[index]
    try:
      clip = video_io.read_random_clip(
        path,
        num_frames=self._num_frames,
        frame_stride=self._frame_stride,
        rng=rng,
      )
    except DataError as e:
      self._skip(path, str(e))
      return None
    video = transforms.resize_and_center_crop(clip, self._height, self._width)
    return {"video": video}  # [num_frames, height, width, 3]

  def _skip(self, path: pathlib.Path, reason: str) -> None:
    with self._lock:
      first_time = str(path) not in self._skipped
      self._skipped[str(path)] = reason
    if first_time:
      logging.warning("Skipping video %s: %s", path, reason)

  @property
  def paths(self) -> tuple[pathlib.Path, ...]:
    """The video files, in index order."""
    return self._paths

  @property
  def num_skipped(self) -> int:
    """How many distinct files gave no clip so far (in this process)."""
    with self._lock:
      return len(self._skipped)

  @property
  def skipped(self) -> dict[str, str]:
    """Path -> reason, for each file that gave no clip so far."""
    with self._lock:
      return dict(self._skipped)

  def __repr__(self) -> str:
    return (
      f"VideoFolderSource(root={str(self._root)!r}, videos={len(self)}, "
      f"num_frames={self._num_frames}, frame_stride={self._frame_stride}, "
      f"height={self._height}, width={self._width}, seed={self._seed})"
    )

  # Locks do not pickle; grain pickles sources into worker processes.
  def __getstate__(self) -> dict[str, Any]:
    state = self.__dict__.copy()
    del state["_lock"]
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()
