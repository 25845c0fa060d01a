"""Long-video metrics on the synthetic data: does a video many windows long stay a valid
bouncing-shapes video, move without jumps where windows meet, and keep its shapes?

A video uint8 [T, H, W, 3] is cut into consecutive windows of `window` frames (the training
length); the last partial window is dropped.

  window_valid_fraction:  the fraction of windows that `analyze_video` judges valid.
  window_motion_fraction: the fraction of windows that pass `continuous_motion` (the looser
                          test a model meets long before validity).
  boundary_continuity:    the fraction of window boundaries (frame kw - 1 -> kw) across which
                          the bright pixels' centroid moves at most max_speed * sqrt(2) + 1 px
                          and the bright mass changes by at most half (`continuous_motion`'s
                          rule for one step, plus no shape appearing or vanishing).
  colours_kept:           the fraction of later windows that hold the first window's colours,
                          no more, no fewer.
  identity_kept:          the fraction of later windows that hold the first window's colours,
                          each shape's side within `size_tolerance` px of its side there.
  colour_overlap:         a measure that colour specks barely move, for models whose samples
                          hold stray colours (which fail the two above): the mean over later
                          windows of the histogram intersection sum_k min(p_k, q_k) of the
                          shares p, q of bright pixels of each palette colour in the first
                          window and in that window (1 = the same colour mix).
  bright_mass_kept:       the mean over later windows of their bright pixels (max channel >=
                          128) over the first window's: < 1 when shapes fade or shrink along the
                          video, > 1 when they grow or multiply (real videos: occlusion alone
                          moves it by a few hundredths).
"""

import numpy as np

from jvdm.errors import ShapeError
from jvdm.data.palette import PALETTE
from jvdm.metrics.shape_segmentation import bright_pixels, classify_pixels, max_channel, shape_sizes
from jvdm.metrics.synthetic_video import analyze_video, continuous_motion


def _windows(video: np.ndarray, window: int) -> list[np.ndarray]:
  if video.ndim != 4 or video.dtype != np.uint8 or window < 1 or video.shape[0] < window:
    raise ShapeError(
      f"Expected a uint8 video [T, H, W, 3] of at least window={window} frames, "
      f"got {video.dtype} {video.shape}."
    )
  return [video[start : start + window] for start in range(0, video.shape[0] - window + 1, window)]


def boundary_steps_ok(video: np.ndarray, window: int, max_speed: int = 3) -> list[bool]:
  """For each window boundary, whether the video moves on across it without a jump."""
  bright = bright_pixels(video)
  ys, xs = np.mgrid[: bright.shape[1], : bright.shape[2]]
  result = []
  for frame in range(window, video.shape[0] - video.shape[0] % window, window):
    pair = bright[frame - 1 : frame + 1]
    mass = pair.sum((1, 2))
    if mass.min() == 0:
      result.append(False)
      continue
    centroid = np.stack([(pair * ys).sum((1, 2)), (pair * xs).sum((1, 2))], 1) / mass[:, None]
    step = np.hypot(*(centroid[1] - centroid[0]))
    result.append(
      bool(step <= max_speed * np.sqrt(2) + 1 and abs(mass[1] - mass[0]) <= 0.5 * mass.max())
    )
  return result


def colour_shares(video: np.ndarray, colour_tolerance: float = 60.0) -> np.ndarray:
  """The share of the bright pixels of `video` that take each palette colour: float [P]."""
  classes = classify_pixels(video, max_channel(video), colour_tolerance)
  counts = np.bincount(classes[classes >= 0], minlength=len(PALETTE)).astype(np.float64)
  return counts / max(counts.sum(), 1.0)


def long_video_report(
  video: np.ndarray,
  window: int,
  *,
  max_shapes: int = 2,
  min_speed: int = 1,
  max_speed: int = 3,
  size_tolerance: int = 1,
) -> dict[str, float | bool]:
  """The module's measures for one video (module docstring)."""
  windows = _windows(video, window)
  valid = [
    analyze_video(w, max_shapes=max_shapes, min_speed=min_speed, max_speed=max_speed).valid
    for w in windows
  ]
  moving = [continuous_motion(w, max_speed=max_speed) for w in windows]
  steps = boundary_steps_ok(video, window, max_speed)
  sizes = [shape_sizes(w) for w in windows]
  first, later = sizes[0], sizes[1:] or [sizes[0]]
  same_colours = [bool(first) and set(s) == set(first) for s in later]
  same_shapes = [
    colours and all(abs(s[c] - first[c]) <= size_tolerance for c in first)
    for colours, s in zip(same_colours, later)
  ]
  shares = [colour_shares(w) for w in windows]
  overlaps = [np.minimum(shares[0], q).sum() for q in shares[1:] or shares[:1]]
  masses = [bright_pixels(w).sum() for w in windows]
  mass_ratios = [m / max(masses[0], 1) for m in masses[1:] or masses[:1]]
  return {
    "window_valid_fraction": float(np.mean(valid)),
    "window_motion_fraction": float(np.mean(moving)),
    "boundary_continuity": float(np.mean(steps)) if steps else 1.0,
    "colours_kept": float(np.mean(same_colours)),
    "identity_kept": float(np.mean(same_shapes)),
    "colour_overlap": float(np.mean(overlaps)),
    "bright_mass_kept": float(np.mean(mass_ratios)),
  }


def long_video_metrics(videos: np.ndarray, window: int, **kwargs) -> dict[str, float]:
  """Means over videos uint8 [N, T, H, W, 3] of `long_video_report`'s measures."""
  reports = [long_video_report(video, window, **kwargs) for video in videos]
  mean = lambda name: float(np.mean([r[name] for r in reports]))
  return {
    "window_valid_fraction": mean("window_valid_fraction"),
    "window_motion_fraction": mean("window_motion_fraction"),
    "boundary_continuity": mean("boundary_continuity"),
    "colours_kept": mean("colours_kept"),
    "identity_kept": mean("identity_kept"),
    "colour_overlap": mean("colour_overlap"),
    "bright_mass_kept": mean("bright_mass_kept"),
    "num_videos": len(reports),
  }
