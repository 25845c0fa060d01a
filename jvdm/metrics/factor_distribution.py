"""Distribution of (generated) bouncing-shapes videos over the generator's own factors.

Validity (`synthetic_video.py`) asks whether each video obeys the dataset's rules; a model
that draws one perfect video N times scores 1.0 on it. This metric asks whether a set of
videos covers the factors `jvdm.data.synthetic` draws, in the right proportions. Report it
beside validity.

Factors, read off each video with the validity metric's segmentation (`shape_tracks`: one
track per palette colour that forms an object of >= 4 px in some frame) by `video_factors`:
  num_shapes: the most objects in one frame (per video).
  colour:     the palette index of each shape (per shape, as every factor below).
  size:       the shape's median box side (`shape_tracks`' size).
  speed:      the Chebyshev norm max(my, mx) of the median per-frame displacement of the
              box centre, my = median |dy|, mx = median |dx|, rounded to an integer. Absolute
              values make bounces (which flip a velocity's sign) harmless; the median ignores
              the few frames where a bounce shortens a step. Only steps between two "full"
              boxes (untouched, or within 1 px of the shape's size, so not cut by occlusion)
              count, or all steps between visible boxes where there are none. A step without a
              bounce moves by the generator's velocity, so this is its max(|vy|, |vx|).
  direction:  the sign pattern of the first step that moves (|d| >= 0.5 px on an axis), as
              one of 8 compass sectors of the image ("up" is towards row 0), or "static" when
              no counted step moves. A shape seen in fewer than two consecutive frames has no
              step: speed 0, "static".

Histograms (`factor_histograms`), normalized to sum 1 (all zeros when there is no shape), over
bins fixed by the generator's settings so that a set with out-of-range values is penalized:
  num_shapes: 0, 1, ..., max_shapes, > max_shapes.
  colour:     the 8 palette colours.
  size:       < min_size, min_size, ..., max_size, > max_size.
  speed:      0, 1, ..., max_speed, > max_speed.
  direction:  DIRECTIONS (8 sectors, then "static").

Distance (`factor_distance`): per factor, the total-variation distance 0.5 * sum |p - q|
between the generated and the reference histogram, in [0, 1] (1 when one side has no shape and
the other has some), and their mean, "factor_distance". Lower is better.

Finite-sample floor. Histograms of few videos differ from the population by chance, so even
real videos do not score 0. Measured with the generator's defaults, 32 real videos against 256
others (seed 1), over 100 seeds: factor_distance 0.119 +- 0.023 (0.074 to 0.195); per factor on
average num_shapes 0.07, colour 0.15, size 0.12, speed 0.10, direction 0.16. So with 32
generated videos, a factor_distance near 0.12 is as good as real data (256 vs 256: about 0.05).
One real video repeated 32 times scores 0.67 on average (0.55 to 0.77); a set that misses a
factor scores near 1 on it (32 videos recoloured to one colour: colour 0.87; frame 0 held
still: speed and direction 1.0). Videos without shapes (black, noise) score 1 on every factor.

Accuracy (see the tests): on 500 generator videos the factors read off equal the ground truth
(`render_bouncing_shapes`) exactly for number, colours, sizes and speeds of all of them, and
for the direction of 98.8% (a first step hidden by occlusion is read later, maybe after a
bounce). Gaussian noise of sigma 10 or a blur of sigma 0.5 px changes none of the distances.
"""

import functools

import numpy as np

from jvdm.data.palette import PALETTE
from jvdm.data.synthetic import BouncingShapes, validate_generator_args
from jvdm.errors import ConfigError, ShapeError
from jvdm.metrics.shape_segmentation import ShapeTrack, shape_tracks
from jvdm.metrics.synthetic_video import check_video_batch

FACTORS = ("num_shapes", "colour", "size", "speed", "direction")
# Sign patterns (sign dy, sign dx) of the 8 sectors, y pointing down the image.
_SECTORS = {
  (-1, 0): "up",
  (-1, 1): "up-right",
  (0, 1): "right",
  (1, 1): "down-right",
  (1, 0): "down",
  (1, -1): "down-left",
  (0, -1): "left",
  (-1, -1): "up-left",
}
DIRECTIONS = tuple(_SECTORS.values()) + ("static",)
_MOVED = 0.5  # px: a smaller centre step on an axis counts as none (blur moves centres < 0.5)
_SIZE_TOLERANCE = 1  # px: a box this close to the shape's size is whole (as in analyze_video)


def _round(value: float) -> int:
  """Half up, so that 1.5 and 2.5 px/frame both round away from the slower speed."""
  return int(np.floor(value + 0.5))


def _steps(track: ShapeTrack) -> np.ndarray:
  """Box-centre displacements [S, 2] as (dy, dx) of the steps that count (module docstring)."""
  boxes = track.boxes.astype(np.float64)
  centres = np.stack([boxes[:, 0] + boxes[:, 1], boxes[:, 2] + boxes[:, 3]], -1) / 2  # [T, 2]
  displacements = np.diff(centres, axis=0)  # [T - 1, 2]
  full = track.full(_SIZE_TOLERANCE)
  counted = full[1:] & full[:-1]
  if not counted.any():
    counted = track.visible[1:] & track.visible[:-1]
  return displacements[counted]


def _speed_and_direction(track: ShapeTrack) -> tuple[int, str]:
  steps = _steps(track)  # [S, 2]
  if not len(steps):
    return 0, "static"
  speed = _round(np.median(np.abs(steps), axis=0).max())  # Chebyshev norm of per-axis medians
  signs = np.where(np.abs(steps) >= _MOVED, np.sign(steps), 0).astype(np.int64)  # [S, 2]
  moving = np.flatnonzero(signs.any(-1))
  if not len(moving):
    return speed, "static"
  return speed, _SECTORS[tuple(signs[moving[0]].tolist())]


def video_factors(video: np.ndarray) -> dict:
  """The generator's factors as read off one video (see the module docstring).

  Works on any uint8 video, also one that is black or noise: it reports what it finds.

  Args:
    video: uint8 [T, H, W, 3].

  Returns:
    {"num_shapes": int, and per shape (K of them, in palette order; K may exceed num_shapes
     when shapes never meet in one frame, e.g. a colour change): "colours": list of K palette
     indices, "sizes": K sides in px, "speeds": K speeds in px/frame, "directions": K names
     from DIRECTIONS}.

  Raises:
    ShapeError: `video` is not a uint8 numpy array [T, H, W, 3].
  """
  tracks = shape_tracks(video)
  visible_counts = sum(
    (track.visible.astype(np.int64) for track in tracks), np.zeros(video.shape[0], np.int64)
  )  # [T]
  motions = [_speed_and_direction(track) for track in tracks]
  return {
    "num_shapes": int(visible_counts.max()),
    "colours": [track.colour for track in tracks],
    "sizes": [track.size for track in tracks],
    "speeds": [speed for speed, _ in motions],
    "directions": [direction for _, direction in motions],
  }


def _check_limits(max_shapes: int, min_size: int, max_size: int, max_speed: int) -> None:
  for name, value, minimum in (
    ("max_shapes", max_shapes, 1),
    ("min_size", min_size, 1),
    ("max_size", max_size, 1),
    ("max_speed", max_speed, 0),
  ):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
      raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
  if min_size > max_size:
    raise ConfigError(f"min_size={min_size} is greater than max_size={max_size}.")


def _histogram(bins: np.ndarray, num_bins: int) -> np.ndarray:
  """Normalized counts float [num_bins] of the bin indices `bins`; zeros when there are none."""
  counts = np.bincount(np.asarray(bins, np.int64), minlength=num_bins).astype(np.float64)
  return counts / max(counts.sum(), 1.0)


def factor_histograms(
  videos: np.ndarray,
  *,
  max_shapes: int = 2,
  min_size: int = 6,
  max_size: int = 10,
  max_speed: int = 3,
) -> dict[str, np.ndarray]:
  """Normalized histograms of the factors of `videos` over fixed bins (module docstring).

  Args:
    videos: uint8 [N, T, H, W, 3].
    max_shapes, min_size, max_size, max_speed: the generator's settings, fixing the bins.

  Returns:
    {factor: float [bins], summing to 1, or all zeros when no video has a shape} for each of
    FACTORS: num_shapes [max_shapes + 2], colour [8], size [max_size - min_size + 3], speed
    [max_speed + 2], direction [9].

  Raises:
    ShapeError: `videos` is not a uint8 numpy array [N, T, H, W, 3].
    ConfigError: the settings are not integers in range.
  """
  check_video_batch(videos, "videos")
  _check_limits(max_shapes, min_size, max_size, max_speed)
  factors = [video_factors(video) for video in videos]
  per_shape = {
    name: np.array([value for f in factors for value in f[name]], np.int64)
    for name in ("colours", "sizes", "speeds")
  }
  directions = [DIRECTIONS.index(d) for f in factors for d in f["directions"]]
  num_shapes = np.array([f["num_shapes"] for f in factors])
  # Out-of-range values fall in the edge bins: under/overflow.
  size_bins = np.clip(per_shape["sizes"] - min_size + 1, 0, max_size - min_size + 2)
  return {
    "num_shapes": _histogram(np.minimum(num_shapes, max_shapes + 1), max_shapes + 2),
    "colour": _histogram(per_shape["colours"], len(PALETTE)),
    "size": _histogram(size_bins, max_size - min_size + 3),
    "speed": _histogram(np.minimum(per_shape["speeds"], max_speed + 1), max_speed + 2),
    "direction": _histogram(directions, len(DIRECTIONS)),
  }


def histogram_distance(
  generated: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> dict[str, float]:
  """Per-factor total-variation distances between two `factor_histograms` results.

  Returns:
    {"<factor>_distance" for each of FACTORS: 0.5 * sum |p - q| in [0, 1] (1 when exactly one
     side is empty), "factor_distance": their mean}.

  Raises:
    ShapeError: the two were made with different bins.
  """
  result = {}
  for name in FACTORS:
    p, q = np.asarray(generated[name]), np.asarray(reference[name])
    if p.shape != q.shape:
      raise ShapeError(
        f"The {name} histograms have different bins: {p.shape} generated vs "
        f"{q.shape} reference; expected both made with the same limits."
      )
    empty_p, empty_q = p.sum() == 0, q.sum() == 0
    if empty_p or empty_q:
      result[f"{name}_distance"] = float(empty_p != empty_q)
    else:
      result[f"{name}_distance"] = float(0.5 * np.abs(p - q).sum())
  result["factor_distance"] = float(np.mean([result[f"{name}_distance"] for name in FACTORS]))
  return result


def factor_distance(
  generated: np.ndarray,
  reference: np.ndarray,
  *,
  max_shapes: int = 2,
  min_size: int = 6,
  max_size: int = 10,
  max_speed: int = 3,
) -> dict[str, float]:
  """How far the factor distribution of `generated` is from that of `reference`.

  Args:
    generated: uint8 [N, T, H, W, 3], e.g. `samples.npz["videos"]`.
    reference: uint8 [M, T', H', W', 3], real videos.
    max_shapes, min_size, max_size, max_speed: the generator's settings, fixing the bins.

  Returns:
    See `histogram_distance`. Real vs real, 32 vs 256 videos, gives about 0.11 (module
    docstring).
  """
  check_video_batch(reference, "reference")
  limits = dict(max_shapes=max_shapes, min_size=min_size, max_size=max_size, max_speed=max_speed)
  return histogram_distance(
    factor_histograms(generated, **limits), factor_histograms(reference, **limits)
  )


@functools.lru_cache(maxsize=16)
def _reference_histograms(
  num_videos: int, seed: int, generator_items: tuple
) -> dict[str, np.ndarray]:
  """factor_histograms of the first `num_videos` generator videos; read-only (cached)."""
  generator_kwargs = dict(generator_items)
  source = BouncingShapes(num_videos=num_videos, seed=seed, **generator_kwargs)
  videos = np.stack([source[i]["video"] for i in range(num_videos)])  # [M, T, H, W, 3]
  histograms = factor_histograms(
    videos, **{k: generator_kwargs[k] for k in ("max_shapes", "min_size", "max_size", "max_speed")}
  )
  for histogram in histograms.values():
    histogram.setflags(write=False)
  return histograms


def reference_factor_distance(
  videos: np.ndarray, *, num_reference_videos: int = 256, seed: int = 1, **generator_kwargs
) -> dict[str, float]:
  """`factor_distance` of `videos` against real generator videos drawn with the same settings.

  The reference histograms are cached per (num_reference_videos, seed, settings), so repeated
  calls draw and segment the reference videos once.

  Args:
    videos: uint8 [N, T, H, W, 3], generated.
    num_reference_videos: how many real videos to draw (items 0, 1, ... of BouncingShapes).
    seed: the BouncingShapes seed of the reference videos.
    **generator_kwargs: the other BouncingShapes arguments the model was trained with
      (min_shapes, max_shapes, min_size, max_size, min_speed, max_speed; defaults as there).
      num_frames, height and width default to the videos' own; given, they must match them.

  Returns:
    See `histogram_distance`.

  Raises:
    ShapeError: `videos` is not uint8 [N, T, H, W, 3], or its frames disagree with the given
      num_frames, height or width.
    ConfigError: the settings are not ones the generator accepts.
  """
  check_video_batch(videos, "videos")
  if "num_videos" in generator_kwargs:
    raise ConfigError(
      "reference_factor_distance takes num_reference_videos, not num_videos; "
      f"got num_videos={generator_kwargs['num_videos']!r}."
    )
  defaults = dict(
    num_frames=16,
    height=32,
    width=32,
    min_shapes=1,
    max_shapes=2,
    min_size=6,
    max_size=10,
    min_speed=1,
    max_speed=3,
  )
  unknown = sorted(set(generator_kwargs) - set(defaults))
  if unknown:
    raise ConfigError(f"Unknown generator settings {unknown}; expected some of {sorted(defaults)}.")
  _, num_frames, height, width, _ = videos.shape
  observed = dict(num_frames=num_frames, height=height, width=width)
  for name, value in observed.items():
    if name in generator_kwargs and generator_kwargs[name] != value:
      raise ShapeError(
        f"videos have {name}={value} (shape {videos.shape}), but the reference "
        f"settings give {name}={generator_kwargs[name]}; expected them to agree."
      )
  settings = {**defaults, **observed, **generator_kwargs}
  validate_generator_args(**settings)
  for name, value, minimum in (
    ("num_reference_videos", num_reference_videos, 1),
    ("seed", seed, 0),
  ):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
      raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
  reference = _reference_histograms(
    int(num_reference_videos), int(seed), tuple(sorted((k, int(v)) for k, v in settings.items()))
  )
  generated = factor_histograms(
    videos, **{k: settings[k] for k in ("max_shapes", "min_size", "max_size", "max_speed")}
  )
  return histogram_distance(generated, reference)
