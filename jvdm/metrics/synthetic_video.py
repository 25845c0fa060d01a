"""Validity of (generated) bouncing-shapes videos: does a video obey the dataset's rules?

A video uint8 [T, H, W, 3] is judged against the laws of `jvdm.data.synthetic`. Generated
videos are blurred and noisy, so every measurement is robust and every check has a tolerance.
Defaults are in brackets.

Segmentation, per frame:
  * A pixel is "bright" when its largest channel is >= 128 (black plus noise never is). A bright
    pixel, scaled so its largest channel is 255, takes palette colour k when k is the nearest
    palette colour and their RGB distance is <= `colour_tolerance` [60] (the closest palette
    pair, orange/yellow, is 127 apart). Scaling makes a half-intensity edge take its square's
    colour, so segmenting at the 50% contour keeps a blurred square's size and position.
  * Blur mixes two meeting colours into a thin line of a third (red + green reads as orange or
    yellow). A colour whose pixels nowhere survive a 2x2 opening is such a line and is dropped;
    any real square of side >= 2 survives it.
  * Each colour's pixels split into 4-connected components; components under `min_area` [4 px]
    are specks and dropped. The bounding box of the rest is that colour's "object" in the frame;
    with nothing left the colour is "absent" from the frame. A shape is a colour with an object
    in at least one frame.
  * Objects "touch" when their boxes are at most 3 px apart (blur leaves a 1-2 px band of no
    colour between meeting squares): they may occlude each other. A shape's size s is the rounded
    median side of its untouched boxes (of its touched boxes' longer sides if it never is alone).
    An object is "full" (its box is the whole square) when nothing touches it or both its sides
    are within s +- `size_tolerance` [1 px]; otherwise it is "partial" (perhaps occluded).

Criteria (VideoReport fields; `valid` is their conjunction):
  count_ok:      1 <= num_shapes <= max_shapes, num_shapes being the most objects in one frame,
                 and no frame is empty.
  colour_ok:     no shape changes colour: (a) in a frame where a shape is absent, other colours
                 have at least s^2 / 2 pixels, so something could hide it; (b) the occlusion order
                 is consistent: with the fitted motion, "j over k" whenever >= `min_area` pixels
                 of j lie inside k's predicted square shrunk by `position_tolerance`, and these
                 relations have no cycle. A colour swap reads as two shapes that each hide behind
                 the other, which a fixed draw order cannot produce.
  size_ok:       a full box has both sides within s +- `size_tolerance`, a partial box its longer
                 side <= s + `size_tolerance`; partial boxes may shrink (occlusion).
  shape_ok:      every object is a solid square: >= `min_fill` [0.75] of its box is bright (its
                 colour, an occluder's or the blur between them), and an object touching nothing
                 is square within `size_tolerance`.
  motion_ok:     the shape follows the motion law with integers p0 (top-left) and v per axis:
                 p[t] = triangle wave of p0 + v t between 0 and L = frame side - side, for a side
                 in s +- 2, with min_speed <= max(|vy|, |vx|) <= max_speed [1, 3]. Both ends of a
                 full box lie within `position_tolerance` [1 px] of the predicted square's; a
                 partial box lies inside the predicted square grown by that; where the shape is
                 absent, other colours cover >= half of the predicted square.
  background_ok: per frame at most `max_stray_pixels` [4] bright pixels lie outside the objects'
                 boxes grown by 1 px.

Measured (see the tests): generator videos are all valid (every error is 0 px), also with
Gaussian noise of sigma <= 20 or a Gaussian blur of sigma <= 0.5 px; frame-shuffled videos are
not. A 1 px glitch (two adjacent frames swapped while a square moves at 1 px/frame) is within
tolerance by design.
"""

import dataclasses

import numpy as np
import scipy.ndimage

from jvdm.data.captions import caption_colours
from jvdm.data.synthetic import PALETTE, PALETTE_NAMES, BouncingShapes
from jvdm.errors import ConfigError, ShapeError

CRITERIA = ("count_ok", "colour_ok", "size_ok", "shape_ok", "motion_ok", "background_ok")
_BRIGHT = 128  # max channel at or above this is foreground, far above black + noise
_SIZE_SEARCH = 2  # the motion fit tries sides s - 2 ... s + 2
# 4-connectivity within a frame and none across frames: one label call covers all frames.
_FRAME_CROSS = np.zeros((3, 3, 3), bool)
_FRAME_CROSS[1] = scipy.ndimage.generate_binary_structure(2, 1)
_OPENING = np.ones((1, 2, 2), bool)  # 2x2 within a frame
# Boxes at most this far apart may occlude each other: blur mixes the colours where two squares
# meet into a 1 or 2 px band that takes neither colour.
_TOUCH_MARGIN = 3


@dataclasses.dataclass(frozen=True)
class VideoReport:
  """The verdict on one video; `reason` names the first failures, or is "ok"."""
  valid: bool
  count_ok: bool
  colour_ok: bool
  size_ok: bool
  shape_ok: bool
  motion_ok: bool
  background_ok: bool
  num_shapes: int
  reason: str
  # The worst shape's distance (px) to its nearest constant-velocity bounce path, hiding and
  # min_speed aside; inf without shapes. A graded view of motion_ok (which needs <= 1 px).
  motion_error_px: float = float("inf")


@dataclasses.dataclass(frozen=True)
class _Limits:
  """analyze_video's thresholds, documented there."""
  max_shapes: int
  min_speed: int
  max_speed: int
  colour_tolerance: float
  min_area: int
  min_fill: float
  size_tolerance: int
  position_tolerance: int
  max_stray_pixels: int

  def __post_init__(self):
    if self.max_shapes < 1 or not 0 <= self.min_speed <= self.max_speed:
      raise ConfigError(f"Expected max_shapes >= 1 and 0 <= min_speed <= max_speed, got "
                        f"max_shapes={self.max_shapes}, min_speed={self.min_speed}, "
                        f"max_speed={self.max_speed}.")
    if min(self.colour_tolerance, self.size_tolerance, self.position_tolerance,
           self.max_stray_pixels) < 0 or self.min_area < 1 or not 0 <= self.min_fill <= 1:
      raise ConfigError(f"Expected non-negative tolerances, min_area >= 1 and min_fill in "
                        f"[0, 1], got {self}.")


@dataclasses.dataclass
class ShapeTrack:
  """One colour's objects over time (a shape), as `shape_tracks` returns. Box bounds are
  inclusive."""
  colour: int  # index into PALETTE
  visible: np.ndarray  # bool [T]
  boxes: np.ndarray  # int [T, 4] as (y0, y1, x0, x1); zeros where not visible
  fill: np.ndarray  # float [T], fraction of the box that is bright
  touches: np.ndarray  # int [T], how many other objects touch this one
  size: int = 0  # estimated side, set by _estimate_size

  @property
  def name(self) -> str:
    return PALETTE_NAMES[self.colour]

  @property
  def heights(self) -> np.ndarray:
    return self.boxes[:, 1] - self.boxes[:, 0] + 1

  @property
  def widths(self) -> np.ndarray:
    return self.boxes[:, 3] - self.boxes[:, 2] + 1

  def full(self, size_tolerance: int) -> np.ndarray:
    """bool [T]: the box is the whole square: nothing touches it, or it has the right size."""
    right_size = ((np.abs(self.heights - self.size) <= size_tolerance)
                  & (np.abs(self.widths - self.size) <= size_tolerance))
    return self.visible & ((self.touches == 0) | right_size)


@dataclasses.dataclass(frozen=True)
class _Fit:
  """A shape's fitted motion."""
  side: int
  positions: np.ndarray  # int [T, 2], predicted top-left (y, x)
  error: float  # px, worst box error


# ---------------------------------------------------------------------------- segmentation


def _brightness(video: np.ndarray) -> np.ndarray:
  """Max over channels [T, H, W]; written out because numpy reduces a size-3 axis slowly."""
  return np.maximum(np.maximum(video[..., 0], video[..., 1]), video[..., 2])


def bright_pixels(video: np.ndarray) -> np.ndarray:
  """The foreground of uint8 `video` [..., H, W, 3]: bool [..., H, W], max channel >= 128 (the
  segmentation's "bright" pixels, module docstring)."""
  return _brightness(video) >= _BRIGHT


def _classify(video: np.ndarray, brightness: np.ndarray, colour_tolerance: float) -> np.ndarray:
  """Palette index of each pixel, or -1 for none: int [T, H, W]."""
  classes = np.full(video.shape[:-1], -1, np.int64)
  candidates = brightness >= _BRIGHT  # [T, H, W]
  # Scaled to full brightness, a blurred edge (half red) is red again, so a blurred square is
  # cut at its 50% contour, which blur does not move.
  scale = 255.0 / brightness[candidates].astype(np.float32)
  pixels = video[candidates].astype(np.float32) * scale[:, None]  # [N, 3]
  difference = pixels[:, None, :] - PALETTE.astype(np.float32)  # [N, P, 3]
  distances = (difference[..., 0] ** 2 + difference[..., 1] ** 2
               + difference[..., 2] ** 2)  # [N, P], squared
  nearest = distances.argmin(-1)
  close = distances[np.arange(len(nearest)), nearest] <= colour_tolerance ** 2
  classes[candidates] = np.where(close, nearest, -1)
  # A colour that never survives a 2x2 opening is a blur line between two others (red + green
  # reads as orange or yellow); a real square survives it, and its own thin slivers are kept.
  for colour in np.unique(classes[classes >= 0]):
    if not scipy.ndimage.binary_opening(classes == colour, structure=_OPENING).any():
      classes[classes == colour] = -1
  return classes


def _find_tracks(classes: np.ndarray, bright: np.ndarray, min_area: int) -> list[ShapeTrack]:
  """One track per colour that forms an object (>= min_area px) in at least one frame."""
  num_frames = classes.shape[0]
  tracks = []
  for colour in np.unique(classes[classes >= 0]):
    components, _ = scipy.ndimage.label(classes == colour, structure=_FRAME_CROSS)
    areas = np.bincount(components.ravel())
    visible = np.zeros(num_frames, bool)
    boxes = np.zeros((num_frames, 4), np.int64)
    for label, slices in enumerate(scipy.ndimage.find_objects(components), start=1):
      if slices is None or areas[label] < min_area:
        continue
      t = slices[0].start
      box = (slices[1].start, slices[1].stop - 1, slices[2].start, slices[2].stop - 1)
      if visible[t]:  # several pieces of one colour: the box around all of them
        box = (min(box[0], boxes[t, 0]), max(box[1], boxes[t, 1]),
               min(box[2], boxes[t, 2]), max(box[3], boxes[t, 3]))
      visible[t] = True
      boxes[t] = box
    if not visible.any():
      continue
    fill = np.zeros(num_frames)
    for t in np.flatnonzero(visible):
      y0, y1, x0, x1 = boxes[t]
      fill[t] = bright[t, y0:y1 + 1, x0:x1 + 1].mean()  # occluders and blur count as filled
    tracks.append(ShapeTrack(int(colour), visible, boxes, fill, np.zeros(num_frames, np.int64)))

  for track in tracks:
    for other in tracks:
      if other is not track:
        a, b = track.boxes, other.boxes
        m = _TOUCH_MARGIN
        near = ((a[:, 0] - m <= b[:, 1]) & (b[:, 0] <= a[:, 1] + m)
                & (a[:, 2] - m <= b[:, 3]) & (b[:, 2] <= a[:, 3] + m))
        track.touches += track.visible & other.visible & near
  return tracks


def _estimate_size(track: ShapeTrack) -> int:
  """The rounded median side of the untouched boxes, else of the touched boxes' longer sides."""
  alone = track.visible & (track.touches == 0)
  if alone.any():
    sides = np.concatenate([track.heights[alone], track.widths[alone]])
  else:
    sides = np.maximum(track.heights, track.widths)[track.visible]
  return int(np.round(np.median(sides)))


# ---------------------------------------------------------------------------- motion


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
  return (table[frames, ys + side, xs + side] - table[frames, ys, xs + side]
          - table[frames, ys + side, xs] + table[frames, ys, xs])


def _fit_motion(track: ShapeTrack, classes: np.ndarray,
                limits: _Limits) -> tuple[_Fit | None, str, float]:
  """The best constant-velocity bounce fit of one shape, or None and why not, and the distance
  (px) to the nearest bounce path of any speed in [0, max_speed], hiding aside."""
  num_frames, height, width = classes.shape
  size = track.size
  full = track.full(limits.size_tolerance)
  partial = track.visible & ~full
  sides = np.arange(max(size - _SIZE_SEARCH, 1), min(size + _SIZE_SEARCH, height, width) + 1)
  if sides.size == 0:
    return None, f"{track.name} of size {size} does not fit the {height}x{width} frame", np.inf
  boxes = track.boxes
  errors_y, predicted_y, velocities = _axis_fits(boxes[:, 0], boxes[:, 1], full, partial,
                                                 height, sides, limits.max_speed)
  errors_x, predicted_x, _ = _axis_fits(boxes[:, 2], boxes[:, 3], full, partial, width, sides,
                                        limits.max_speed)
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
    error = np.maximum(errors_y[index][tuple(candidates_y.T)][:, None],
                       errors_x[index][tuple(candidates_x.T)][None, :])  # [Ny, Nx]
    speed = np.maximum(np.abs(velocities[candidates_y[:, 0]])[:, None],
                       np.abs(velocities[candidates_x[:, 0]])[None, :])
    error[speed < limits.min_speed] = np.inf
    ys = predicted_y[index][tuple(candidates_y.T)]  # [Ny, T]
    xs = predicted_x[index][tuple(candidates_x.T)]  # [Nx, T]
    if absent.size:  # the shape must be hidden wherever it is missing
      covered = _box_sums(hiders, ys[:, None, absent], xs[None, :, absent], side)  # [Ny, Nx, A]
      error[(covered < 0.5 * side ** 2).any(-1)] = np.inf
    i, j = np.unravel_index(error.argmin(), error.shape)
    if np.isfinite(error[i, j]) and (best is None or error[i, j] < best.error):
      best = _Fit(int(side), np.stack([ys[i], xs[j]], -1), float(error[i, j]))
  if best is not None:
    return best, "", closest
  if closest > tolerance:
    return None, (f"{track.name} is {closest:.0f} px off the nearest constant-velocity bounce "
                  f"path (tolerance {tolerance})"), closest
  return None, (f"no bounce path of {track.name} with speed in [{limits.min_speed}, "
                f"{limits.max_speed}] that is hidden where it is missing (frames "
                f"{absent.tolist()})"), closest


# ---------------------------------------------------------------------------- occlusion


def _covering_colours(track: ShapeTrack, fit: _Fit, classes: np.ndarray, limits: _Limits) -> set:
  """Colours with >= min_area pixels inside the predicted square shrunk by the tolerance."""
  margin = limits.position_tolerance
  found = set()
  for t, (y, x) in enumerate(fit.positions):
    inner = classes[t, y + margin:y + fit.side - margin, x + margin:x + fit.side - margin]
    counts = np.bincount(inner[inner >= 0], minlength=len(PALETTE))
    counts[track.colour] = 0
    found.update(np.flatnonzero(counts >= limits.min_area).tolist())
  return found


def _has_cycle(over: dict[int, set]) -> bool:
  """Whether the relation over[k] = {j: j is drawn over k} has a cycle (no draw order fits)."""
  remaining = set(over)
  while remaining:
    # A shape with nothing remaining over it can be drawn last; peel it off.
    top = [k for k in remaining if not over[k] & remaining]
    if not top:
      return True
    remaining -= set(top)
  return False


# ---------------------------------------------------------------------------- verdict


def _check_video(video: np.ndarray) -> None:
  if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
    raise ShapeError(f"video must be a uint8 numpy array [T, H, W, 3], got "
                     f"{type(video).__name__} of dtype {getattr(video, 'dtype', None)}.")
  if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) == 0:
    raise ShapeError(f"video must have shape [T, H, W, 3] with T, H, W >= 1, got {video.shape}.")


def _size_failure(track: ShapeTrack, tolerance: int) -> str:
  size = track.size
  full = track.full(tolerance)
  wrong = full & ((np.abs(track.heights - size) > tolerance)
                  | (np.abs(track.widths - size) > tolerance))
  wrong |= track.visible & ~full & (np.maximum(track.heights, track.widths) > size + tolerance)
  if not wrong.any():
    return ""
  t = int(np.flatnonzero(wrong)[0])
  return (f"{track.name} is {track.heights[t]}x{track.widths[t]} in frame {t}, expected "
          f"{size}+-{tolerance}")


def _shape_failure(track: ShapeTrack, limits: _Limits) -> str:
  sparse = track.visible & (track.fill < limits.min_fill)
  oblong = track.visible & (track.touches == 0) & (
      np.abs(track.heights - track.widths) > limits.size_tolerance)
  if not (sparse | oblong).any():
    return ""
  t = int(np.flatnonzero(sparse | oblong)[0])
  return (f"{track.name} in frame {t} is not a solid square ({track.heights[t]}x"
          f"{track.widths[t]} box, {track.fill[t]:.0%} filled)")


def _stray_failure(tracks: list[ShapeTrack], brightness: np.ndarray, limits: _Limits) -> str:
  covered = np.zeros(brightness.shape, bool)  # [T, H, W], boxes grown by 1 px
  for track in tracks:
    for t in np.flatnonzero(track.visible):
      y0, y1, x0, x1 = track.boxes[t]
      covered[t, max(y0 - 1, 0):y1 + 2, max(x0 - 1, 0):x1 + 2] = True
  strays = ((brightness >= _BRIGHT) & ~covered).sum((1, 2))  # [T]
  if (strays <= limits.max_stray_pixels).all():
    return ""
  t = int(strays.argmax())
  return (f"{strays[t]} bright pixels outside the shapes in frame {t} (at most "
          f"{limits.max_stray_pixels})")


def analyze_video(video: np.ndarray, *, max_shapes: int = 2, min_speed: int = 1,
                  max_speed: int = 3, colour_tolerance: float = 60.0, min_area: int = 4,
                  min_fill: float = 0.75, size_tolerance: int = 1, position_tolerance: int = 1,
                  max_stray_pixels: int = 4) -> VideoReport:
  """Judges one video against the bouncing-shapes rules (see the module docstring).

  Args:
    video: uint8 [T, H, W, 3].
    max_shapes: most shapes a valid video may hold.
    min_speed, max_speed: allowed range of max(|vy|, |vx|), in px/frame.
    colour_tolerance: RGB distance within which a pixel takes a palette colour.
    min_area: components of one colour smaller than this (px) are specks.
    min_fill: least fraction of an object's box that is bright.
    size_tolerance: allowed deviation of a box side from the shape's size (px).
    position_tolerance: allowed deviation of a box from the fitted motion (px).
    max_stray_pixels: bright pixels allowed outside the objects, per frame.

  Returns:
    The VideoReport.
  """
  _check_video(video)
  limits = _Limits(max_shapes, min_speed, max_speed, colour_tolerance, min_area, min_fill,
                   size_tolerance, position_tolerance, max_stray_pixels)
  brightness = _brightness(video)  # [T, H, W]
  classes = _classify(video, brightness, colour_tolerance)  # [T, H, W]
  tracks = _find_tracks(classes, brightness >= _BRIGHT, min_area)
  failures = {name: [] for name in CRITERIA}

  visible_counts = sum((track.visible.astype(np.int64) for track in tracks),
                       np.zeros(video.shape[0], np.int64))  # [T]
  num_shapes = int(visible_counts.max())
  if not 1 <= num_shapes <= max_shapes:
    failures["count_ok"].append(f"{num_shapes} shapes, expected 1 to {max_shapes}")
  elif not visible_counts.all():
    failures["count_ok"].append(
        f"no shape in frames {np.flatnonzero(visible_counts == 0).tolist()}")
  if not tracks:
    failures["motion_ok"].append("no shape to track")

  over = {}  # colour -> colours drawn over it
  motion_error = 0.0 if tracks else np.inf
  for track in tracks:
    track.size = size = _estimate_size(track)
    # A necessary condition for being hidden: other colours cover half a square somewhere.
    others = ((classes >= 0) & (classes != track.colour)).sum((1, 2))  # [T]
    vanished = ~track.visible & (others < 0.5 * size ** 2)
    if vanished.any():
      failures["colour_ok"].append(
          f"{track.name} vanishes in frames {np.flatnonzero(vanished).tolist()} with nothing "
          "to hide it")
    for name, message in (("size_ok", _size_failure(track, size_tolerance)),
                          ("shape_ok", _shape_failure(track, limits))):
      if message:
        failures[name].append(message)
    fit, message, path_error = _fit_motion(track, classes, limits)
    motion_error = max(motion_error, path_error)
    if fit is None:
      failures["motion_ok"].append(message)
    else:
      over[track.colour] = _covering_colours(track, fit, classes, limits)
  if _has_cycle(over):
    failures["colour_ok"].append(
        "the occlusion order has a cycle (shapes hide behind each other): a colour changed?")

  message = _stray_failure(tracks, brightness, limits)
  if message:
    failures["background_ok"].append(message)

  verdicts = {name: not failures[name] for name in CRITERIA}
  messages = [f"{name[:-3]}: {text}" for name in CRITERIA for text in failures[name]]
  return VideoReport(valid=all(verdicts.values()), num_shapes=num_shapes,
                     reason="; ".join(messages[:3]) if messages else "ok",
                     motion_error_px=float(motion_error), **verdicts)


def continuous_motion(video: np.ndarray, *, max_speed: int = 3, min_area: int = 4) -> bool:
  """A looser test than `analyze_video`: do bright things move without jumping?

  True when every frame has at least `min_area` bright pixels, the centroid of the bright
  pixels moves at most `max_speed * sqrt(2) + 1` px between consecutive frames (one square at
  top speed, plus 1 px for blur and occlusion), and the bright mask changes (by more than
  `min_area` pixels) between at least half of the consecutive frames, so a still image fails.
  Shapes that teleport, vanish or freeze fail it; shapes whose size or colour wobbles pass.
  It is reported next to validity because a model learns this long before ±1 px precision.
  """
  _check_video(video)
  bright = _brightness(video) >= _BRIGHT  # [T, H, W]
  mass = bright.sum((1, 2))
  if mass.min() < min_area:
    return False
  ys, xs = np.mgrid[:bright.shape[1], :bright.shape[2]]
  centroid_y = (bright * ys).sum((1, 2)) / mass
  centroid_x = (bright * xs).sum((1, 2)) / mass
  steps = np.hypot(np.diff(centroid_y), np.diff(centroid_x))
  changed = (bright[1:] != bright[:-1]).sum((1, 2)) > min_area
  return bool(steps.max(initial=0.0) <= max_speed * np.sqrt(2) + 1 and changed.mean() >= 0.5)


def check_video_batch(videos: np.ndarray, name: str = "videos") -> None:
  """Raises ShapeError unless `videos` is a uint8 numpy array [N, T, H, W, 3], N, T, H, W >= 1."""
  if not isinstance(videos, np.ndarray) or videos.dtype != np.uint8:
    raise ShapeError(f"{name} must be a uint8 numpy array [N, T, H, W, 3], got "
                     f"{type(videos).__name__} of dtype {getattr(videos, 'dtype', None)}.")
  if videos.ndim != 5 or videos.shape[-1] != 3 or min(videos.shape) == 0:
    raise ShapeError(
        f"{name} must have shape [N, T, H, W, 3] with N, T, H, W >= 1, got {videos.shape}.")


def synthetic_video_validity(videos: np.ndarray, **kwargs) -> dict[str, float]:
  """Fractions of `videos` that are valid and that pass each criterion.

  Args:
    videos: uint8 [N, T, H, W, 3], e.g. `samples.npz["videos"]`.
    **kwargs: forwarded to `analyze_video` (max_shapes, min_speed, max_speed, tolerances).

  Returns:
    {"valid_fraction", "<criterion>_fraction" for each of CRITERIA,
     "continuous_motion_fraction" (see `continuous_motion`; not part of validity),
     "motion_error_median_px" (median of `VideoReport.motion_error_px`; inf when over half
     the videos have no shape), "num_videos"}.
  """
  check_video_batch(videos)
  reports = [analyze_video(video, **kwargs) for video in videos]
  result = {"valid_fraction": float(np.mean([report.valid for report in reports]))}
  for name in CRITERIA:
    result[f"{name}_fraction"] = float(np.mean([getattr(report, name) for report in reports]))
  motion_kwargs = {k: kwargs[k] for k in ("max_speed", "min_area") if k in kwargs}
  result["continuous_motion_fraction"] = float(np.mean(
      [continuous_motion(video, **motion_kwargs) for video in videos]))
  result["motion_error_median_px"] = float(np.median([r.motion_error_px for r in reports]))
  result["num_videos"] = len(reports)
  return result


def reference_validity(num_videos: int = 200, seed: int = 0, **generator_kwargs) -> dict:
  """`synthetic_video_validity` of real generator videos: the metric's ceiling (expected 1.0).

  Args:
    num_videos: how many videos to draw.
    seed: generator seed.
    **generator_kwargs: other BouncingShapes arguments (num_frames, max_shapes, max_speed...);
      the metric is given the same max_shapes and speed range.
  """
  source = BouncingShapes(num_videos=num_videos, seed=seed, **generator_kwargs)
  videos = np.stack([source[i]["video"] for i in range(num_videos)])
  limits = source.generator_kwargs
  return synthetic_video_validity(videos, max_shapes=limits["max_shapes"],
                                  min_speed=limits["min_speed"], max_speed=limits["max_speed"])


def shape_tracks(video: np.ndarray, *, colour_tolerance: float = 60.0,
                 min_area: int = 4) -> list[ShapeTrack]:
  """The shapes in `video` (uint8 [T, H, W, 3]), segmented and sized as `analyze_video` does:
  one ShapeTrack per colour that forms an object of >= `min_area` px in some frame, in palette
  order, with `size` set to its median side."""
  _check_video(video)
  brightness = _brightness(video)
  classes = _classify(video, brightness, colour_tolerance)
  tracks = _find_tracks(classes, brightness >= _BRIGHT, min_area)
  for track in tracks:
    track.size = _estimate_size(track)
  return tracks


def shape_sizes(video: np.ndarray, *, colour_tolerance: float = 60.0,
                min_area: int = 4) -> dict[int, int]:
  """{palette index: side in px} of the shapes in `video` (uint8 [T, H, W, 3]); see
  `shape_tracks`."""
  tracks = shape_tracks(video, colour_tolerance=colour_tolerance, min_area=min_area)
  return {track.colour: track.size for track in tracks}


def video_colours(video: np.ndarray, *, colour_tolerance: float = 60.0,
                  min_area: int = 4) -> frozenset[int]:
  """Palette indices of the shapes in `video` (uint8 [T, H, W, 3]), segmented as
  `analyze_video` does: the colours that form an object of >= `min_area` px in some frame."""
  return frozenset(shape_sizes(video, colour_tolerance=colour_tolerance, min_area=min_area))


def caption_match_fraction(videos: np.ndarray, captions: np.ndarray) -> float:
  """The fraction of videos whose shapes have exactly the colours their caption names.

  Args:
    videos: uint8 [N, T, H, W, 3].
    captions: int [N, L] caption tokens (`jvdm.data.captions`), one per video.
  """
  if len(videos) != len(captions):
    raise ShapeError(f"Expected one caption per video, got {len(captions)} captions for "
                     f"{len(videos)} videos.")
  return float(np.mean([video_colours(video) == caption_colours(caption)
                        for video, caption in zip(videos, captions)]))
