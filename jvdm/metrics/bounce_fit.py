"""The motion law of the bouncing shapes, fitted to a segmented shape: integer start p0 and
velocity v per axis, p[t] = triangle wave of p0 + v t between 0 and L = frame side - side
(elastic bounces), for a side within `SIZE_SEARCH` of the shape's measured size. Used by the
validity metric (`jvdm.metrics.synthetic_video`, criterion motion_ok).
"""

import dataclasses

import numpy as np

from jvdm.metrics.shape_segmentation import ShapeTrack

SIZE_SEARCH = 2  # the motion fit tries sides s - 2 ... s + 2


@dataclasses.dataclass(frozen=True)
class BounceFit:
  """A shape's fitted motion."""

  side: int
  positions: np.ndarray  # int [T, 2], predicted top-left (y, x)
  error: float  # px, worst box error


def _reflect(unfolded: np.ndarray, span: np.ndarray) -> np.ndarray:
  """Triangle wave of period 2 * span: elastic bounces between 0 and span (broadcasts)."""
  period = np.maximum(2 * span, 1)  # span 0: the square fills the axis and cannot move
  folded = unfolded % period
  return np.where(folded <= span, folded, period - folded) * (span > 0)


def _axis_fits(low, high, full, partial, side, sides, max_speed):
  """Worst box error of every candidate (side, v, p0) on one axis.

  Args:
    low, high: int [T], observed inclusive box bounds on this axis.
    full, partial: bool [T], frames that constrain both ends / containment only.
    side: frame side on this axis.
    sides: int [S], candidate square sides (each <= side).
    max_speed: bound on |v|.

  Returns:
    errors: float [S, V, P], inf where p0 or |v| exceeds the room to move (side - square side).
    predicted: int [S, V, P, T], predicted low bounds.
    velocities: int [V].
  """
  spans = (side - sides)[:, None, None, None]  # [S, 1, 1, 1]
  velocities = np.arange(-max_speed, max_speed + 1)
  starts = np.arange(side - sides.min() + 1)
  times = np.arange(low.shape[0])
  predicted = _reflect(starts[:, None] + velocities[:, None, None] * times, spans)  # [S, V, P, T]
  low_error = low - predicted
  high_error = high - (predicted + sides[:, None, None, None] - 1)
  full_error = np.maximum(np.abs(low_error), np.abs(high_error))
  outside = np.maximum(np.maximum(-low_error, high_error), 0)
  errors = np.where(full, full_error, np.where(partial, outside, 0)).max(-1).astype(np.float64)
  errors[(starts > spans[..., 0]) | (np.abs(velocities)[:, None] > spans[..., 0])] = np.inf
  return errors, predicted, velocities


def _summed_area(mask: np.ndarray) -> np.ndarray:
  """[A, H + 1, W + 1] table whose [a, y, x] counts mask [A, H, W] pixels above-left of (y, x)."""
  return np.pad(mask.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))


def _box_sums(table: np.ndarray, ys: np.ndarray, xs: np.ndarray, side: int) -> np.ndarray:
  """Mask pixels in the squares with top-left ys [..., A], xs [..., A]: [..., A]."""
  frames = np.arange(table.shape[0])
  return (
    table[frames, ys + side, xs + side]
    - table[frames, ys, xs + side]
    - table[frames, ys + side, xs]
    + table[frames, ys, xs]
  )


def fit_bounce_motion(
  track: ShapeTrack, classes: np.ndarray, limits
) -> tuple[BounceFit | None, str, float]:
  """The best constant-velocity bounce fit of one shape, or None and why not, and the distance
  (px) to the nearest bounce path of any speed in [0, max_speed], hiding aside. `limits` has
  the validity metric's size_tolerance, position_tolerance, min_speed and max_speed."""
  num_frames, height, width = classes.shape
  size = track.size
  full = track.full(limits.size_tolerance)
  partial = track.visible & ~full
  sides = np.arange(max(size - SIZE_SEARCH, 1), min(size + SIZE_SEARCH, height, width) + 1)
  if sides.size == 0:
    return None, f"{track.name} of size {size} does not fit the {height}x{width} frame", np.inf
  boxes = track.boxes
  errors_y, predicted_y, velocities = _axis_fits(
    boxes[:, 0], boxes[:, 1], full, partial, height, sides, limits.max_speed
  )
  errors_x, predicted_x, _ = _axis_fits(
    boxes[:, 2], boxes[:, 3], full, partial, width, sides, limits.max_speed
  )
  absent = np.flatnonzero(~track.visible)
  hiders = _summed_area((classes[absent] >= 0) & (classes[absent] != track.colour))
  tolerance = limits.position_tolerance
  closest = float(np.maximum(errors_y.min((1, 2)), errors_x.min((1, 2))).min())

  best = None
  for index, side in enumerate(sides):
    candidates_y = np.argwhere(errors_y[index] <= tolerance)  # [Ny, 2] as (v, p0)
    candidates_x = np.argwhere(errors_x[index] <= tolerance)  # [Nx, 2]
    if not (len(candidates_y) and len(candidates_x)):
      continue
    error = np.maximum(
      errors_y[index][tuple(candidates_y.T)][:, None],
      errors_x[index][tuple(candidates_x.T)][None, :],
    )  # [Ny, Nx]
    speed = np.maximum(
      np.abs(velocities[candidates_y[:, 0]])[:, None],
      np.abs(velocities[candidates_x[:, 0]])[None, :],
    )
    error[speed < limits.min_speed] = np.inf
    ys = predicted_y[index][tuple(candidates_y.T)]  # [Ny, T]
    xs = predicted_x[index][tuple(candidates_x.T)]  # [Nx, T]
    if absent.size:  # the shape must be hidden wherever it is missing
      covered = _box_sums(hiders, ys[:, None, absent], xs[None, :, absent], side)  # [Ny, Nx, A]
      error[(covered < 0.5 * side**2).any(-1)] = np.inf
    i, j = np.unravel_index(error.argmin(), error.shape)
    if np.isfinite(error[i, j]) and (best is None or error[i, j] < best.error):
      best = BounceFit(int(side), np.stack([ys[i], xs[j]], -1), float(error[i, j]))
  if best is not None:
    return best, "", closest
  if closest > tolerance:
    return (
      None,
      (
        f"{track.name} is {closest:.0f} px off the nearest constant-velocity bounce "
        f"path (tolerance {tolerance})"
      ),
      closest,
    )
  return (
    None,
    (
      f"no bounce path of {track.name} with speed in [{limits.min_speed}, "
      f"{limits.max_speed}] that is hidden where it is missing (frames "
      f"{absent.tolist()})"
    ),
    closest,
  )
