"""Tests for the long-video measures (jvdm/metrics/long_video.py)."""

import numpy as np
import pytest

from jvdm.data.synthetic import BouncingShapes
from jvdm.errors import ShapeError
from jvdm.metrics.long_video import boundary_steps_ok, long_video_metrics, long_video_report

WINDOW = 16


def test_real_long_videos_score_full_marks():
  source = BouncingShapes(num_frames=4 * WINDOW, seed=5)
  videos = np.stack([source.render(i)[0] for i in range(4)])
  metrics = long_video_metrics(videos, WINDOW)
  assert metrics.pop("colour_overlap") > 0.95  # occlusion moves the shares a little
  assert abs(metrics.pop("bright_mass_kept") - 1.0) < 0.1
  assert metrics == {
    "window_valid_fraction": 1.0,
    "window_motion_fraction": 1.0,
    "boundary_continuity": 1.0,
    "colours_kept": 1.0,
    "identity_kept": 1.0,
    "num_videos": 4,
  }


def test_stitched_independent_clips_fail_continuity_and_identity():
  """Four unrelated 16-frame videos glued together: each window is valid, yet the shapes jump
  (and change) at every boundary."""
  source = BouncingShapes(num_frames=WINDOW, seed=7)
  clips = [source.render(i)[0] for i in range(4)]
  report = long_video_report(np.concatenate(clips), WINDOW)
  assert report["window_valid_fraction"] == report["window_motion_fraction"] == 1.0
  assert report["boundary_continuity"] < 0.5
  assert report["colours_kept"] < 0.5 and report["identity_kept"] < 0.5
  assert report["colour_overlap"] < 0.5


def test_a_frozen_video_is_continuous_but_not_valid():
  source = BouncingShapes(num_frames=1, seed=3)
  frozen = np.repeat(source.render(0)[0], 3 * WINDOW, axis=0)
  report = long_video_report(frozen, WINDOW)
  assert boundary_steps_ok(frozen, WINDOW) == [True, True]
  assert report["identity_kept"] == report["colour_overlap"] == 1.0
  assert report["window_valid_fraction"] == 0.0  # a still square breaks the motion law
  assert report["window_motion_fraction"] == 0.0


def test_a_square_that_grows_keeps_its_colour_but_not_its_identity():
  source = BouncingShapes(num_frames=2 * WINDOW, max_shapes=1, seed=11)
  video, truth = source.render(0)
  grown = video.copy()
  (size,), colour = truth["sizes"], truth["colours"][0]
  for t in range(WINDOW, 2 * WINDOW):  # the second window's square 3 px larger
    y, x = np.minimum(truth["positions"][0, t], 32 - size - 3)
    grown[t] = 0
    grown[t, y : y + size + 3, x : x + size + 3] = colour
  report = long_video_report(grown, WINDOW)
  assert report["colours_kept"] == 1.0
  assert report["identity_kept"] == 0.0
  assert long_video_report(video, WINDOW)["identity_kept"] == 1.0


def test_a_fading_video_loses_bright_mass():
  source = BouncingShapes(num_frames=4 * WINDOW, seed=5)
  video = source.render(0)[0]
  fading = video.copy()
  fading[2 * WINDOW :] //= 3  # windows 3 and 4 fall below the brightness threshold
  assert abs(long_video_report(video, WINDOW)["bright_mass_kept"] - 1.0) < 0.1
  # the later windows keep about 1, 0 and 0 of the first window's bright pixels
  assert abs(long_video_report(fading, WINDOW)["bright_mass_kept"] - 1 / 3) < 0.05


def test_shape_errors():
  with pytest.raises(ShapeError):
    long_video_report(np.zeros((8, 32, 32, 3), np.uint8), WINDOW)  # shorter than a window
  with pytest.raises(ShapeError):
    long_video_report(np.zeros((32, 32, 32, 3), np.float32), WINDOW)
