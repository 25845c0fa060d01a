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
  assert metrics == {"window_valid_fraction": 1.0, "boundary_continuity": 1.0,
                     "identity_constant_fraction": 1.0, "num_videos": 4}


def test_stitched_independent_clips_fail_continuity_and_identity():
  """Four unrelated 16-frame videos glued together: each window is valid, yet the shapes jump
  (and change) at every boundary."""
  source = BouncingShapes(num_frames=WINDOW, seed=7)
  clips = [source.render(i)[0] for i in range(4)]
  report = long_video_report(np.concatenate(clips), WINDOW)
  assert report["window_valid_fraction"] == 1.0
  assert report["boundary_continuity"] < 0.5
  assert report["identity_constant"] is False


def test_a_frozen_video_is_continuous_but_not_valid():
  source = BouncingShapes(num_frames=1, seed=3)
  frozen = np.repeat(source.render(0)[0], 3 * WINDOW, axis=0)
  report = long_video_report(frozen, WINDOW)
  assert boundary_steps_ok(frozen, WINDOW) == [True, True]
  assert report["identity_constant"] is True
  assert report["window_valid_fraction"] == 0.0  # a still square breaks the motion law


def test_shape_errors():
  with pytest.raises(ShapeError):
    long_video_report(np.zeros((8, 32, 32, 3), np.uint8), WINDOW)  # shorter than a window
  with pytest.raises(ShapeError):
    long_video_report(np.zeros((32, 32, 32, 3), np.float32), WINDOW)
