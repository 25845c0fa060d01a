"""Segmentation of bouncing-shapes videos into shapes, as the validity metric
(`jvdm.metrics.synthetic_video`) and the factor distribution see them.

A video uint8 [T, H, W, 3]; defaults in brackets.

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
"""

import dataclasses

import numpy as np
import scipy.ndimage

from jvdm.data.palette import PALETTE, PALETTE_NAMES
from jvdm.errors import ShapeError

BRIGHT = 128  # max channel at or above this is foreground, far above black + noise
# 4-connectivity within a frame and none across frames: one label call covers all frames.
_FRAME_CROSS = np.zeros((3, 3, 3), bool)
_FRAME_CROSS[1] = scipy.ndimage.generate_binary_structure(2, 1)
_OPENING = np.ones((1, 2, 2), bool)  # 2x2 within a frame
# Boxes at most this far apart may occlude each other: blur mixes the colours where two squares
# meet into a 1 or 2 px band that takes neither colour.
TOUCH_MARGIN = 3


@dataclasses.dataclass
class ShapeTrack:
  """One colour's objects over time (a shape), as `shape_tracks` returns. Box bounds are
  inclusive."""

  colour: int  # index into PALETTE
  visible: np.ndarray  # bool [T]
  boxes: np.ndarray  # int [T, 4] as (y0, y1, x0, x1); zeros where not visible
  fill: np.ndarray  # float [T], fraction of the box that is bright
  touches: np.ndarray  # int [T], how many other objects touch this one
  size: int = 0  # estimated side, set by estimate_size

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
    right_size = (np.abs(self.heights - self.size) <= size_tolerance) & (
      np.abs(self.widths - self.size) <= size_tolerance
    )
    return self.visible & ((self.touches == 0) | right_size)


def max_channel(video: np.ndarray) -> np.ndarray:
  """Max over channels [T, H, W]; written out because numpy reduces a size-3 axis slowly."""
  return np.maximum(np.maximum(video[..., 0], video[..., 1]), video[..., 2])


def bright_pixels(video: np.ndarray) -> np.ndarray:
  """The foreground of uint8 `video` [..., H, W, 3]: bool [..., H, W], max channel >= 128 (the
  segmentation's "bright" pixels, module docstring)."""
  return max_channel(video) >= BRIGHT


def classify_pixels(
  video: np.ndarray, brightness: np.ndarray, colour_tolerance: float
) -> np.ndarray:
  """Palette index of each pixel, or -1 for none: int [T, H, W]."""
  classes = np.full(video.shape[:-1], -1, np.int64)
  candidates = brightness >= BRIGHT  # [T, H, W]
  # Scaled to full brightness, a blurred edge (half red) is red again, so a blurred square is
  # cut at its 50% contour, which blur does not move.
  scale = 255.0 / brightness[candidates].astype(np.float32)
  pixels = video[candidates].astype(np.float32) * scale[:, None]  # [N, 3]
  difference = pixels[:, None, :] - PALETTE.astype(np.float32)  # [N, P, 3]
  distances = (
    difference[..., 0] ** 2 + difference[..., 1] ** 2 + difference[..., 2] ** 2
  )  # [N, P], squared
  nearest = distances.argmin(-1)
  close = distances[np.arange(len(nearest)), nearest] <= colour_tolerance**2
  classes[candidates] = np.where(close, nearest, -1)
  # A colour that never survives a 2x2 opening is a blur line between two others (red + green
  # reads as orange or yellow); a real square survives it, and its own thin slivers are kept.
  for colour in np.unique(classes[classes >= 0]):
    if not scipy.ndimage.binary_opening(classes == colour, structure=_OPENING).any():
      classes[classes == colour] = -1
  return classes


def find_tracks(classes: np.ndarray, bright: np.ndarray, min_area: int) -> list[ShapeTrack]:
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
        box = (
          min(box[0], boxes[t, 0]),
          max(box[1], boxes[t, 1]),
          min(box[2], boxes[t, 2]),
          max(box[3], boxes[t, 3]),
        )
      visible[t] = True
      boxes[t] = box
    if not visible.any():
      continue
    fill = np.zeros(num_frames)
    for t in np.flatnonzero(visible):
      y0, y1, x0, x1 = boxes[t]
      fill[t] = bright[t, y0 : y1 + 1, x0 : x1 + 1].mean()  # occluders and blur count as filled
    tracks.append(ShapeTrack(int(colour), visible, boxes, fill, np.zeros(num_frames, np.int64)))

  for track in tracks:
    for other in tracks:
      if other is not track:
        a, b = track.boxes, other.boxes
        m = TOUCH_MARGIN
        near = (
          (a[:, 0] - m <= b[:, 1])
          & (b[:, 0] <= a[:, 1] + m)
          & (a[:, 2] - m <= b[:, 3])
          & (b[:, 2] <= a[:, 3] + m)
        )
        track.touches += track.visible & other.visible & near
  return tracks


def estimate_size(track: ShapeTrack) -> int:
  """The rounded median side of the untouched boxes, else of the touched boxes' longer sides."""
  alone = track.visible & (track.touches == 0)
  if alone.any():
    sides = np.concatenate([track.heights[alone], track.widths[alone]])
  else:
    sides = np.maximum(track.heights, track.widths)[track.visible]
  return int(np.round(np.median(sides)))


def check_video(video: np.ndarray) -> None:
  if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
    raise ShapeError(
      f"video must be a uint8 numpy array [T, H, W, 3], got "
      f"{type(video).__name__} of dtype {getattr(video, 'dtype', None)}."
    )
  if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) == 0:
    raise ShapeError(f"video must have shape [T, H, W, 3] with T, H, W >= 1, got {video.shape}.")


def shape_tracks(
  video: np.ndarray, *, colour_tolerance: float = 60.0, min_area: int = 4
) -> list[ShapeTrack]:
  """The shapes in `video` (uint8 [T, H, W, 3]), segmented and sized as `analyze_video` does:
  one ShapeTrack per colour that forms an object of >= `min_area` px in some frame, in palette
  order, with `size` set to its median side."""
  check_video(video)
  brightness = max_channel(video)
  classes = classify_pixels(video, brightness, colour_tolerance)
  tracks = find_tracks(classes, brightness >= BRIGHT, min_area)
  for track in tracks:
    track.size = estimate_size(track)
  return tracks


def shape_sizes(
  video: np.ndarray, *, colour_tolerance: float = 60.0, min_area: int = 4
) -> dict[int, int]:
  """{palette index: side in px} of the shapes in `video` (uint8 [T, H, W, 3]); see
  `shape_tracks`."""
  tracks = shape_tracks(video, colour_tolerance=colour_tolerance, min_area=min_area)
  return {track.colour: track.size for track in tracks}


def video_colours(
  video: np.ndarray, *, colour_tolerance: float = 60.0, min_area: int = 4
) -> frozenset[int]:
  """Palette indices of the shapes in `video` (uint8 [T, H, W, 3]), segmented as
  `analyze_video` does: the colours that form an object of >= `min_area` px in some frame."""
  return frozenset(shape_sizes(video, colour_tolerance=colour_tolerance, min_area=min_area))
