"""Tests for the bouncing-shapes validity metric (jvdm/metrics/synthetic_video.py)."""

import dataclasses

import numpy as np
import pytest
import scipy.ndimage

from jvdm.data.palette import PALETTE
from jvdm.data.synthetic import BouncingShapes, paint_square
from jvdm.errors import ConfigError, ShapeError
from jvdm.metrics import (
  analyze_video,
  continuous_motion,
  reference_validity,
  synthetic_video_validity,
)
from jvdm.metrics.synthetic_video import CRITERIA


@pytest.fixture(scope="module")
def real():
  """200 generator videos uint8 [200, 16, 32, 32, 3] and their ground truth."""
  source = BouncingShapes(seed=123)
  rendered = [source.render(i) for i in range(200)]
  return np.stack([video for video, _ in rendered]), [truth for _, truth in rendered]


def _one_shape_truth(real):
  """The first real video holding a single square, as (video, truth)."""
  videos, truths = real
  index = next(i for i, truth in enumerate(truths) if len(truth["sizes"]) == 1)
  return videos[index], truths[index]


def _redraw(video_shape, sizes, positions, colours):
  """A video with one square per (size [T], positions [T, 2], colour [T, 3]) triple."""
  video = np.zeros(video_shape, np.uint8)
  for size, position, colour in zip(sizes, positions, colours):
    for t in range(video_shape[0]):
      paint_square(video[t : t + 1], position[t : t + 1], size[t], colour[t])
  return video


def test_real_videos_are_valid(real):
  videos, _ = real
  result = synthetic_video_validity(videos)
  assert result["num_videos"] == 200
  assert result["valid_fraction"] >= 0.99
  for name in CRITERIA:
    assert result[f"{name}_fraction"] >= 0.99
  assert result["motion_error_median_px"] == 0.0


def test_real_videos_with_overlapping_squares_are_valid(real):
  videos, truths = real
  overlapping = []
  for video, truth in zip(videos, truths):
    if len(truth["sizes"]) == 2:
      (a, b), (sa, sb) = truth["positions"], truth["sizes"]
      overlap = (
        (a[:, 0] < b[:, 0] + sb)
        & (b[:, 0] < a[:, 0] + sa)
        & (a[:, 1] < b[:, 1] + sb)
        & (b[:, 1] < a[:, 1] + sa)
      )
      if overlap.any():
        overlapping.append(video)
  assert len(overlapping) >= 10  # occlusion is really exercised
  reports = [analyze_video(video) for video in overlapping]
  assert np.mean([report.valid for report in reports]) >= 0.99


def test_noisy_real_videos_are_mostly_valid(real):
  videos, _ = real
  noise = np.random.default_rng(0).normal(0.0, 10.0, videos.shape)
  noisy = np.clip(videos + noise, 0, 255).astype(np.uint8)
  assert synthetic_video_validity(noisy)["valid_fraction"] >= 0.95


def test_blurred_real_videos_are_mostly_valid(real):
  videos, _ = real
  blurred = scipy.ndimage.gaussian_filter(videos.astype(np.float32), (0, 0, 0.5, 0.5, 0))
  result = synthetic_video_validity(np.clip(blurred, 0, 255).astype(np.uint8)[:100])
  assert result["valid_fraction"] >= 0.95


def test_frame_shuffled_videos_are_mostly_invalid(real):
  videos, _ = real
  rng = np.random.default_rng(0)
  shuffled = np.stack([video[rng.permutation(len(video))] for video in videos[:100]])
  result = synthetic_video_validity(shuffled)
  assert result["valid_fraction"] < 0.1
  assert result["motion_ok_fraction"] < 0.1
  assert result["count_ok_fraction"] > 0.9  # the shapes are still there; only motion broke


def test_continuous_motion_passes_real_videos_and_fails_jumps_freezes_and_gaps(real):
  videos, _ = real
  assert all(continuous_motion(video) for video in videos)
  rng = np.random.default_rng(1)
  shuffled = [video[rng.permutation(len(video))] for video in videos[:100]]
  assert np.mean([continuous_motion(video) for video in shuffled]) < 0.1
  frozen = np.repeat(videos[0][:1], len(videos[0]), axis=0)
  assert not continuous_motion(frozen)
  with_gap = videos[0].copy()
  with_gap[5] = 0  # everything vanishes for a frame
  assert not continuous_motion(with_gap)
  result = synthetic_video_validity(videos[:20])
  assert result["continuous_motion_fraction"] == 1.0


def test_pure_noise_is_invalid():
  videos = np.random.default_rng(0).integers(0, 256, (5, 16, 32, 32, 3), dtype=np.uint8)
  result = synthetic_video_validity(videos)
  assert result["valid_fraction"] == 0.0


def test_all_black_is_invalid():
  report = analyze_video(np.zeros((16, 32, 32, 3), np.uint8))
  assert not report.valid
  assert not report.count_ok
  assert report.num_shapes == 0


def test_valid_video_report(real):
  video, _ = _one_shape_truth(real)
  report = analyze_video(video)
  assert report.valid and report.reason == "ok"
  assert report.num_shapes == 1
  with pytest.raises(dataclasses.FrozenInstanceError):
    report.valid = False  # type: ignore[misc]


def test_shape_changing_colour_is_invalid(real):
  video, truth = _one_shape_truth(real)
  changed = video.copy()
  old = truth["colours"][0]
  new = PALETTE[(truth["colour_indices"][0] + 1) % len(PALETTE)]
  second_half = changed[8:]
  second_half[(second_half == old).all(-1)] = new
  report = analyze_video(changed)
  assert analyze_video(video).valid
  assert not report.valid
  assert not report.colour_ok
  assert report.count_ok  # still one shape per frame


def test_teleporting_shape_is_invalid(real):
  video, truth = _one_shape_truth(real)
  size, positions = truth["sizes"][0], truth["positions"][0].copy()
  num_frames, height, _, _ = video.shape
  # Jump 8 px vertically from frame 8 on, away from the nearer wall (stays inside the frame).
  jump = 8 if positions[8, 0] < (height - size) / 2 else -8
  positions[8:, 0] = np.clip(positions[8:, 0] + jump, 0, height - size)
  teleported = _redraw(
    video.shape,
    [np.full(num_frames, size)],
    [positions],
    [np.tile(truth["colours"][0], (num_frames, 1))],
  )
  report = analyze_video(teleported)
  assert not report.valid
  assert not report.motion_ok
  assert report.size_ok and report.colour_ok


def test_motion_error_grows_with_a_displaced_frame(real):
  video, truth = _one_shape_truth(real)
  size, colour = truth["sizes"][0], truth["colours"][0]
  num_frames, height, _, _ = video.shape
  errors = []
  for shift in (0, 2, 4, 6):
    positions = truth["positions"][0].copy()
    # Frame 8 alone moves `shift` px vertically, away from the nearer wall.
    direction = 1 if positions[8, 0] < (height - size) / 2 else -1
    positions[8, 0] += direction * shift
    moved = _redraw(
      video.shape, [np.full(num_frames, size)], [positions], [np.tile(colour, (num_frames, 1))]
    )
    errors.append(analyze_video(moved).motion_error_px)
  # The best path may split the difference, so the error lies in [shift / 2, shift].
  assert errors[0] == 0.0
  assert all(shift / 2 <= error <= shift for shift, error in zip((2, 4, 6), errors[1:]))
  assert errors[1] < errors[2] < errors[3]
  assert analyze_video(np.zeros_like(video)).motion_error_px == float("inf")


def test_growing_shape_is_invalid(real):
  video, truth = _one_shape_truth(real)
  num_frames, height, width, _ = video.shape
  sizes = np.where(np.arange(num_frames) < 8, 6, 10)
  positions = np.minimum(truth["positions"][0], [height - 10, width - 10])
  grown = _redraw(
    video.shape, [sizes], [positions], [np.tile(truth["colours"][0], (num_frames, 1))]
  )
  report = analyze_video(grown)
  assert not report.valid
  assert not report.size_ok


def _crossing_squares(small_on_top_when_hidden: bool) -> np.ndarray:
  """A 6 px square passing right under a 10 px one; it is fully hidden in frames 7 and 8."""
  times = np.arange(16)
  big = np.stack([np.full(16, 10), 20 - times], -1)  # [T, 2], moving left at 1 px/frame
  small_x = 2 * times
  small_x = np.where(small_x > 26, 52 - small_x, small_x)  # bounces off the right border
  small = np.stack([np.full(16, 12), small_x], -1)  # moving right at 2 px/frame
  video = np.zeros((16, 32, 32, 3), np.uint8)
  paint_square(video, small, 6, PALETTE[0])
  paint_square(video, big, 10, PALETTE[1])
  if small_on_top_when_hidden:
    paint_square(video[7:9], small[7:9], 6, PALETTE[0])
  return video


def test_square_hidden_behind_another_is_valid():
  report = analyze_video(_crossing_squares(small_on_top_when_hidden=False))
  assert report.valid, report.reason
  assert report.num_shapes == 2


def test_inconsistent_draw_order_is_invalid():
  # Under the big square in frame 6, over it in frames 7-8: no fixed draw order does that.
  report = analyze_video(_crossing_squares(small_on_top_when_hidden=True))
  assert not report.valid
  assert not report.colour_ok
  assert report.motion_ok and report.size_ok


def test_vanishing_shape_is_invalid(real):
  video, _ = _one_shape_truth(real)
  vanished = video.copy()
  vanished[5:8] = 0
  report = analyze_video(vanished)
  assert not report.valid
  assert not report.colour_ok


def test_too_many_shapes_is_invalid():
  source = BouncingShapes(num_videos=20, min_shapes=3, max_shapes=3, seed=5)
  videos = np.stack([source[i]["video"] for i in range(20)])
  too_many = synthetic_video_validity(videos, max_shapes=2)
  allowed = synthetic_video_validity(videos, max_shapes=3)
  assert too_many["count_ok_fraction"] <= 0.1  # only if a square hides another all along
  assert too_many["valid_fraction"] <= 0.1
  assert allowed["valid_fraction"] >= 0.9


def test_speed_outside_the_range_is_invalid():
  source = BouncingShapes(num_videos=20, min_speed=3, max_speed=3, seed=2)
  videos = np.stack([source[i]["video"] for i in range(20)])
  assert synthetic_video_validity(videos, max_speed=3)["valid_fraction"] >= 0.95
  assert synthetic_video_validity(videos, max_speed=2)["motion_ok_fraction"] == 0.0


def test_stray_blob_is_invalid(real):
  video, _ = _one_shape_truth(real)
  cluttered = video.copy()
  cluttered[:, :3, :3] = (255, 128, 192)  # a pink blob: bright, but no palette colour
  assert not analyze_video(cluttered).background_ok


def test_reference_validity_is_one():
  result = reference_validity(
    num_videos=30, seed=7, num_frames=8, height=16, width=16, min_size=3, max_size=5
  )
  assert result["valid_fraction"] == 1.0
  assert result["num_videos"] == 30


@pytest.mark.parametrize(
  "bad",
  [
    np.zeros((16, 32, 32, 3), np.uint8),  # a single video, not a batch
    np.zeros((2, 16, 32, 32, 4), np.uint8),  # RGBA
    np.zeros((2, 16, 32, 32, 3), np.float32),  # floats
    np.zeros((0, 16, 32, 32, 3), np.uint8),  # empty
  ],
)
def test_bad_batches_raise_shape_error(bad):
  with pytest.raises(ShapeError, match=r"\[N, T, H, W, 3\]"):
    synthetic_video_validity(bad)


def test_bad_video_raises_shape_error():
  with pytest.raises(ShapeError, match=r"\(32, 32, 3\)"):
    analyze_video(np.zeros((32, 32, 3), np.uint8))


def test_bad_thresholds_raise_config_error():
  video = np.zeros((4, 16, 16, 3), np.uint8)
  with pytest.raises(ConfigError, match="max_shapes=0"):
    analyze_video(video, max_shapes=0)
  with pytest.raises(ConfigError, match="min_speed=3"):
    analyze_video(video, min_speed=3, max_speed=2)
