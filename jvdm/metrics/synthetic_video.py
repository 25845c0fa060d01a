"""Validity of (generated) bouncing-shapes videos: does a video obey the dataset's rules?

A video uint8 [T, H, W, 3] is judged against the laws of `jvdm.data.synthetic`. Generated
videos are blurred and noisy, so every measurement is robust and every check has a tolerance.
Defaults are in brackets. The shapes come from `jvdm.metrics.shape_segmentation` (how pixels
become coloured objects, with its tolerances) and their motion fit from
`jvdm.metrics.bounce_fit`.

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

from jvdm.data.captions import caption_colours
from jvdm.data.palette import PALETTE
from jvdm.data.synthetic import BouncingShapes
from jvdm.errors import ConfigError, ShapeError
from jvdm.metrics.bounce_fit import BounceFit, fit_bounce_motion
from jvdm.metrics.shape_segmentation import (
  BRIGHT,
  ShapeTrack,
  check_video,
  classify_pixels,
  estimate_size,
  find_tracks,
  max_channel,
  video_colours,
)

CRITERIA = ("count_ok", "colour_ok", "size_ok", "shape_ok", "motion_ok", "background_ok")


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
      raise ConfigError(
        f"Expected max_shapes >= 1 and 0 <= min_speed <= max_speed, got "
        f"max_shapes={self.max_shapes}, min_speed={self.min_speed}, "
        f"max_speed={self.max_speed}."
      )
    if (
      min(
        self.colour_tolerance, self.size_tolerance, self.position_tolerance, self.max_stray_pixels
      )
      < 0
      or self.min_area < 1
      or not 0 <= self.min_fill <= 1
    ):
      raise ConfigError(
        f"Expected non-negative tolerances, min_area >= 1 and min_fill in [0, 1], got {self}."
      )


# ---------------------------------------------------------------------------- occlusion


def _covering_colours(
  track: ShapeTrack, fit: BounceFit, classes: np.ndarray, limits: _Limits
) -> set:
  """Colours with >= min_area pixels inside the predicted square shrunk by the tolerance."""
  margin = limits.position_tolerance
  found = set()
  for t, (y, x) in enumerate(fit.positions):
    inner = classes[t, y + margin : y + fit.side - margin, x + margin : x + fit.side - margin]
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


def _size_failure(track: ShapeTrack, tolerance: int) -> str:
  size = track.size
  full = track.full(tolerance)
  wrong = full & (
    (np.abs(track.heights - size) > tolerance) | (np.abs(track.widths - size) > tolerance)
  )
  wrong |= track.visible & ~full & (np.maximum(track.heights, track.widths) > size + tolerance)
  if not wrong.any():
    return ""
  t = int(np.flatnonzero(wrong)[0])
  return (
    f"{track.name} is {track.heights[t]}x{track.widths[t]} in frame {t}, expected "
    f"{size}+-{tolerance}"
  )


def _shape_failure(track: ShapeTrack, limits: _Limits) -> str:
  sparse = track.visible & (track.fill < limits.min_fill)
  oblong = (
    track.visible
    & (track.touches == 0)
    & (np.abs(track.heights - track.widths) > limits.size_tolerance)
  )
  if not (sparse | oblong).any():
    return ""
  t = int(np.flatnonzero(sparse | oblong)[0])
  return (
    f"{track.name} in frame {t} is not a solid square ({track.heights[t]}x"
    f"{track.widths[t]} box, {track.fill[t]:.0%} filled)"
  )


def _stray_failure(tracks: list[ShapeTrack], brightness: np.ndarray, limits: _Limits) -> str:
  covered = np.zeros(brightness.shape, bool)  # [T, H, W], boxes grown by 1 px
  for track in tracks:
    for t in np.flatnonzero(track.visible):
      y0, y1, x0, x1 = track.boxes[t]
      covered[t, max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2] = True
  strays = ((brightness >= BRIGHT) & ~covered).sum((1, 2))  # [T]
  if (strays <= limits.max_stray_pixels).all():
    return ""
  t = int(strays.argmax())
  return (
    f"{strays[t]} bright pixels outside the shapes in frame {t} (at most {limits.max_stray_pixels})"
  )


def analyze_video(
  video: np.ndarray,
  *,
  max_shapes: int = 2,
  min_speed: int = 1,
  max_speed: int = 3,
  colour_tolerance: float = 60.0,
  min_area: int = 4,
  min_fill: float = 0.75,
  size_tolerance: int = 1,
  position_tolerance: int = 1,
  max_stray_pixels: int = 4,
) -> VideoReport:
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
  check_video(video)
  limits = _Limits(
    max_shapes,
    min_speed,
    max_speed,
    colour_tolerance,
    min_area,
    min_fill,
    size_tolerance,
    position_tolerance,
    max_stray_pixels,
  )
  brightness = max_channel(video)  # [T, H, W]
  classes = classify_pixels(video, brightness, colour_tolerance)  # [T, H, W]
  tracks = find_tracks(classes, brightness >= BRIGHT, min_area)
  failures = {name: [] for name in CRITERIA}

  visible_counts = sum(
    (track.visible.astype(np.int64) for track in tracks), np.zeros(video.shape[0], np.int64)
  )  # [T]
  num_shapes = int(visible_counts.max())
  if not 1 <= num_shapes <= max_shapes:
    failures["count_ok"].append(f"{num_shapes} shapes, expected 1 to {max_shapes}")
  elif not visible_counts.all():
    failures["count_ok"].append(
      f"no shape in frames {np.flatnonzero(visible_counts == 0).tolist()}"
    )
  if not tracks:
    failures["motion_ok"].append("no shape to track")

  over = {}  # colour -> colours drawn over it
  motion_error = 0.0 if tracks else np.inf
  for track in tracks:
    track.size = size = estimate_size(track)
    # A necessary condition for being hidden: other colours cover half a square somewhere.
    others = ((classes >= 0) & (classes != track.colour)).sum((1, 2))  # [T]
    vanished = ~track.visible & (others < 0.5 * size**2)
    if vanished.any():
      failures["colour_ok"].append(
        f"{track.name} vanishes in frames {np.flatnonzero(vanished).tolist()} with nothing "
        "to hide it"
      )
    for name, message in (
      ("size_ok", _size_failure(track, size_tolerance)),
      ("shape_ok", _shape_failure(track, limits)),
    ):
      if message:
        failures[name].append(message)
    fit, message, path_error = fit_bounce_motion(track, classes, limits)
    motion_error = max(motion_error, path_error)
    if fit is None:
      failures["motion_ok"].append(message)
    else:
      over[track.colour] = _covering_colours(track, fit, classes, limits)
  if _has_cycle(over):
    failures["colour_ok"].append(
      "the occlusion order has a cycle (shapes hide behind each other): a colour changed?"
    )

  message = _stray_failure(tracks, brightness, limits)
  if message:
    failures["background_ok"].append(message)

  verdicts = {name: not failures[name] for name in CRITERIA}
  messages = [f"{name[:-3]}: {text}" for name in CRITERIA for text in failures[name]]
  return VideoReport(
    valid=all(verdicts.values()),
    num_shapes=num_shapes,
    reason="; ".join(messages[:3]) if messages else "ok",
    motion_error_px=float(motion_error),
    **verdicts,
  )


def continuous_motion(video: np.ndarray, *, max_speed: int = 3, min_area: int = 4) -> bool:
  """A looser test than `analyze_video`: do bright things move without jumping?

  True when every frame has at least `min_area` bright pixels, the centroid of the bright
  pixels moves at most `max_speed * sqrt(2) + 1` px between consecutive frames (one square at
  top speed, plus 1 px for blur and occlusion), and the bright mask changes (by more than
  `min_area` pixels) between at least half of the consecutive frames, so a still image fails.
  Shapes that teleport, vanish or freeze fail it; shapes whose size or colour wobbles pass.
  It is reported next to validity because a model learns this long before ±1 px precision.
  """
  check_video(video)
  bright = max_channel(video) >= BRIGHT  # [T, H, W]
  mass = bright.sum((1, 2))
  if mass.min() < min_area:
    return False
  ys, xs = np.mgrid[: bright.shape[1], : bright.shape[2]]
  centroid_y = (bright * ys).sum((1, 2)) / mass
  centroid_x = (bright * xs).sum((1, 2)) / mass
  steps = np.hypot(np.diff(centroid_y), np.diff(centroid_x))
  changed = (bright[1:] != bright[:-1]).sum((1, 2)) > min_area
  return bool(steps.max(initial=0.0) <= max_speed * np.sqrt(2) + 1 and changed.mean() >= 0.5)


def check_video_batch(videos: np.ndarray, name: str = "videos") -> None:
  """Raises ShapeError unless `videos` is a uint8 numpy array [N, T, H, W, 3], N, T, H, W >= 1."""
  if not isinstance(videos, np.ndarray) or videos.dtype != np.uint8:
    raise ShapeError(
      f"{name} must be a uint8 numpy array [N, T, H, W, 3], got "
      f"{type(videos).__name__} of dtype {getattr(videos, 'dtype', None)}."
    )
  if videos.ndim != 5 or videos.shape[-1] != 3 or min(videos.shape) == 0:
    raise ShapeError(
      f"{name} must have shape [N, T, H, W, 3] with N, T, H, W >= 1, got {videos.shape}."
    )


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
  result["continuous_motion_fraction"] = float(
    np.mean([continuous_motion(video, **motion_kwargs) for video in videos])
  )
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
  return synthetic_video_validity(
    videos,
    max_shapes=limits["max_shapes"],
    min_speed=limits["min_speed"],
    max_speed=limits["max_speed"],
  )


def caption_match_fraction(videos: np.ndarray, captions: np.ndarray) -> float:
  """The fraction of videos whose shapes have exactly the colours their caption names.

  Args:
    videos: uint8 [N, T, H, W, 3].
    captions: int [N, L] caption tokens (`jvdm.data.captions`), one per video.
  """
  if len(videos) != len(captions):
    raise ShapeError(
      f"Expected one caption per video, got {len(captions)} captions for {len(videos)} videos."
    )
  return float(
    np.mean(
      [video_colours(video) == caption_colours(caption) for video, caption in zip(videos, captions)]
    )
  )
