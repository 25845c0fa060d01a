"""Embedded "bouncing shapes" videos: a procedurally generated, exactly checkable dataset.

Each video has a black background and 1 to `max_shapes` solid, axis-aligned squares. Every
square has its own colour from `PALETTE` (no two share one), a fixed integer side and an
integer velocity, and bounces elastically off the frame borders.

Motion law, per square and per axis (y and x independently). The square's top-left corner
`p` lives in [0, L] with L = frame side - square side, so the square is always fully inside
the frame. With velocity `v` leaving frame t:

    q = p[t] + v[t]
    if q < 0:    p[t + 1] = -q,     v[t + 1] = -v[t]   # bounced off the top/left border
    elif q > L:  p[t + 1] = 2L - q, v[t + 1] = -v[t]   # bounced off the bottom/right border
    else:        p[t + 1] = q,      v[t + 1] = v[t]

This is exact elastic reflection because |v| <= L (checked at construction), so a square
bounces at most once per frame per axis. Equivalently p[t] is the triangle wave of the
unfolded position p[0] + v[0] * t with period 2L.

"Speed" is the Chebyshev norm max(|vy|, |vx|) of the integer velocity, in pixels per
frame; it lies in [min_speed, max_speed], and bounces never change it.

Squares are drawn in shape order, so a later shape covers an earlier one where they overlap.
Everything is numpy; item `index` depends only on (seed, index).
"""

import numbers

import numpy as np

from jvdm.data.captions import caption_tokens
from jvdm.data.palette import PALETTE, PALETTE_NAMES
from jvdm.errors import ConfigError


def _check_int(name: str, value, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
  if value < minimum:
    raise ConfigError(f"{name} must be >= {minimum}, got {value}.")


def validate_generator_args(
  *,
  num_frames: int,
  height: int,
  width: int,
  min_shapes: int,
  max_shapes: int,
  min_size: int,
  max_size: int,
  min_speed: int,
  max_speed: int,
) -> None:
  """Raises ConfigError unless the arguments describe videos the generator can draw."""
  for name, value in (
    ("num_frames", num_frames),
    ("height", height),
    ("width", width),
    ("min_shapes", min_shapes),
    ("max_shapes", max_shapes),
    ("min_size", min_size),
    ("max_size", max_size),
    ("min_speed", min_speed),
    ("max_speed", max_speed),
  ):
    _check_int(name, value, 1)
  for low_name, low, high_name, high in (
    ("min_shapes", min_shapes, "max_shapes", max_shapes),
    ("min_size", min_size, "max_size", max_size),
    ("min_speed", min_speed, "max_speed", max_speed),
  ):
    if low > high:
      raise ConfigError(f"{low_name}={low} is greater than {high_name}={high}.")
  if max_shapes > len(PALETTE):
    raise ConfigError(
      f"max_shapes={max_shapes} exceeds the {len(PALETTE)} palette colours "
      f"{PALETTE_NAMES}; each shape needs its own colour."
    )
  # One bounce per frame at most: the largest square must still have max_speed px of room.
  side = min(height, width)
  if max_size + max_speed > side:
    raise ConfigError(
      f"max_size={max_size} + max_speed={max_speed} = {max_size + max_speed} exceeds the "
      f"smaller frame side {side} (height={height}, width={width}); expected "
      f"max_size + max_speed <= {side} so every square fits and bounces at most once a frame."
    )


def _sample_velocity(rng: np.random.Generator, min_speed: int, max_speed: int) -> np.ndarray:
  """An integer (vy, vx) with max(|vy|, |vx|) uniform in [min_speed, max_speed]."""
  speed = int(rng.integers(min_speed, max_speed + 1))
  velocity = np.empty(2, np.int64)
  dominant = int(rng.integers(2))
  velocity[dominant] = speed * (1 if rng.integers(2) else -1)
  velocity[1 - dominant] = rng.integers(-speed, speed + 1)
  return velocity


def _bounce_path(
  start: np.ndarray, velocity: np.ndarray, span: np.ndarray, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
  """Positions and leaving velocities [T, 2] under the motion law in the module docstring."""
  positions = np.empty((num_frames, 2), np.int64)
  velocities = np.empty((num_frames, 2), np.int64)
  position = [int(start[0]), int(start[1])]
  current = [int(velocity[0]), int(velocity[1])]
  for t in range(num_frames):
    positions[t] = position
    velocities[t] = current
    for axis in range(2):
      moved = position[axis] + current[axis]
      if moved < 0:
        moved, current[axis] = -moved, -current[axis]
      elif moved > span[axis]:
        moved, current[axis] = 2 * int(span[axis]) - moved, -current[axis]
      position[axis] = moved
  return positions, velocities


def paint_square(video: np.ndarray, positions: np.ndarray, size: int, colour) -> None:
  """Paints, in place, a square of side `size` with top-left `positions` in each frame.

  Args:
    video: uint8 [T, H, W, 3], written to.
    positions: int [T, 2], top-left (y, x) per frame.
    size: side in pixels.
    colour: RGB, e.g. a row of PALETTE.
  """
  _, height, width, _ = video.shape
  y, x = positions[:, :1], positions[:, 1:]  # [T, 1]
  in_rows = (np.arange(height) >= y) & (np.arange(height) < y + size)  # [T, H]
  in_cols = (np.arange(width) >= x) & (np.arange(width) < x + size)  # [T, W]
  video[in_rows[:, :, None] & in_cols[:, None, :]] = colour


def render_bouncing_shapes(
  rng: np.random.Generator,
  *,
  num_frames: int = 16,
  height: int = 32,
  width: int = 32,
  min_shapes: int = 1,
  max_shapes: int = 2,
  min_size: int = 6,
  max_size: int = 10,
  min_speed: int = 1,
  max_speed: int = 3,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Draws one bouncing-shapes video.

  Args:
    rng: the only source of randomness.
    num_frames, height, width: video size.
    min_shapes, max_shapes: inclusive range of the number of squares.
    min_size, max_size: inclusive range of a square's side, in pixels.
    min_speed, max_speed: inclusive range of max(|vy|, |vx|), in pixels per frame.

  Returns:
    video: uint8 [T, H, W, 3].
    truth: per-shape ground truth, K = number of shapes, in draw order (last on top):
      "colours": uint8 [K, 3]; "colour_indices": int [K] into PALETTE; "sizes": int [K];
      "positions": int [K, T, 2], top-left (y, x) in each frame; "velocities": int [K, T, 2],
      the (vy, vx) with which the square leaves each frame (flipped after a bounce).
  """
  validate_generator_args(
    num_frames=num_frames,
    height=height,
    width=width,
    min_shapes=min_shapes,
    max_shapes=max_shapes,
    min_size=min_size,
    max_size=max_size,
    min_speed=min_speed,
    max_speed=max_speed,
  )
  num_shapes = int(rng.integers(min_shapes, max_shapes + 1))
  colour_indices = rng.choice(len(PALETTE), size=num_shapes, replace=False)
  sizes = rng.integers(min_size, max_size + 1, size=num_shapes)

  video = np.zeros((num_frames, height, width, 3), np.uint8)  # [T, H, W, 3]
  all_positions, all_velocities = [], []
  for colour_index, size in zip(colour_indices, sizes):
    span = np.array([height - size, width - size])
    start = np.array([rng.integers(span[0] + 1), rng.integers(span[1] + 1)])
    positions, velocities = _bounce_path(
      start, _sample_velocity(rng, min_speed, max_speed), span, num_frames
    )
    paint_square(video, positions, size, PALETTE[colour_index])
    all_positions.append(positions)
    all_velocities.append(velocities)

  truth = {
    "colours": PALETTE[colour_indices],
    "colour_indices": colour_indices.astype(np.int64),
    "sizes": sizes.astype(np.int64),
    "positions": np.stack(all_positions),
    "velocities": np.stack(all_velocities),
  }
  return video, truth


class BouncingShapes:
  """A grain random-access source of bouncing-shapes videos: {"video": uint8 [T, H, W, 3],
  "caption": int32 [max_shapes + 1]} (the colours it holds; `jvdm.data.captions`).

  Item `index` is drawn from `np.random.default_rng([seed, index])`, so it is the same in any
  access order, in any worker process and on any host.
  """

  def __init__(
    self,
    num_videos: int = 100_000,
    num_frames: int = 16,
    height: int = 32,
    width: int = 32,
    min_shapes: int = 1,
    max_shapes: int = 2,
    min_size: int = 6,
    max_size: int = 10,
    min_speed: int = 1,
    max_speed: int = 3,
    seed: int = 0,
  ):
    _check_int("num_videos", num_videos, 1)
    _check_int("seed", seed, 0)  # numpy seed sequences take non-negative integers only
    self.generator_kwargs = dict(
      num_frames=num_frames,
      height=height,
      width=width,
      min_shapes=min_shapes,
      max_shapes=max_shapes,
      min_size=min_size,
      max_size=max_size,
      min_speed=min_speed,
      max_speed=max_speed,
    )
    validate_generator_args(**self.generator_kwargs)
    self.num_videos = int(num_videos)
    self.seed = int(seed)

  def __len__(self) -> int:
    return self.num_videos

  def render(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Item `index` with its ground truth (see `render_bouncing_shapes`)."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
      raise TypeError(f"index must be an integer, got {index!r} ({type(index).__name__}).")
    if not 0 <= index < self.num_videos:
      raise IndexError(f"index {index} is out of range for {self.num_videos} videos.")
    rng = np.random.default_rng([self.seed, int(index)])
    return render_bouncing_shapes(rng, **self.generator_kwargs)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    video, truth = self.render(index)
    caption = caption_tokens(truth["colour_indices"], self.generator_kwargs["max_shapes"])
    return {"video": video, "caption": caption}

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v}" for k, v in self.generator_kwargs.items())
    return f"BouncingShapes(num_videos={self.num_videos}, {args}, seed={self.seed})"
