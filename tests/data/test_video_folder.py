"""Tests for jvdm.data.video_folder and jvdm.data.transforms."""

import logging
import pickle

import grain
import numpy as np
import pytest

from jvdm.data import transforms
from jvdm.data.video_folder import VideoFolderSource
from jvdm.errors import ConfigError, DataError, ShapeError
import jvdm.io as video_io

NUM_FRAMES = 4
SIZE = 16


def brightness_video(num_frames, height=24, width=40, step=8):
  """uint8 [T, H, W, 3] whose frame k is flat with value step * k."""
  values = (np.arange(num_frames) * step).astype(np.uint8)
  return np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).copy()


def make_source(root, **kwargs):
  kwargs = dict(num_frames=NUM_FRAMES, height=SIZE, width=SIZE) | kwargs
  return VideoFolderSource(root, **kwargs)


@pytest.fixture(name="mixed_folder")
def fixture_mixed_folder(tmp_path):
  """3 good videos and 3 bad ones; sorted names give the indices 0..5."""
  root = tmp_path / "videos"
  video_io.write_video(root / "a_good.mp4", brightness_video(12))
  video_io.write_video(root / "b_good.gif", brightness_video(10))
  (root / "c_corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
  video_io.write_video(root / "sub" / "d_good.mp4", brightness_video(20))
  data = video_io.write_video(root / "full.mp4", brightness_video(30))
  data = data.read_bytes()
  (root / "sub" / "e_truncated.mp4").write_bytes(data[: int(0.4 * len(data))])
  (root / "full.mp4").unlink()
  video_io.write_video(root / "sub" / "f_short.mp4", brightness_video(3))
  (root / "notes.txt").write_text("not a video")
  return root


GOOD, BAD = (0, 1, 3), (2, 4, 5)


def test_folder_source_items_and_skips(mixed_folder):
  source = make_source(mixed_folder)
  assert len(source) == 6
  assert [path.name for path in source.paths] == [
    "a_good.mp4",
    "b_good.gif",
    "c_corrupt.mp4",
    "d_good.mp4",
    "e_truncated.mp4",
    "f_short.mp4",
  ]
  for index in GOOD:
    item = source[index]
    assert item["video"].shape == (NUM_FRAMES, SIZE, SIZE, 3)
    assert item["video"].dtype == np.uint8
  for index in BAD:
    assert source[index] is None
  assert source.num_skipped == 3
  assert sorted(source.skipped) == sorted(str(source.paths[i]) for i in BAD)
  assert "needs at least 4" in source.skipped[str(source.paths[5])]
  source[2]  # Skipping again does not count twice.
  assert source.num_skipped == 3
  with pytest.raises(IndexError, match="6 videos"):
    source[6]


def test_skipped_file_is_logged_once(mixed_folder, caplog):
  source = make_source(mixed_folder)
  with caplog.at_level(logging.WARNING):
    source[2]
    source[2]
  messages = [
    record.getMessage() for record in caplog.records if "c_corrupt" in record.getMessage()
  ]
  assert len(messages) == 1
  assert "Skipping video" in messages[0]


def test_clip_start_is_deterministic_by_seed_and_index(mixed_folder):
  source = make_source(mixed_folder, seed=3)
  again = make_source(mixed_folder, seed=3)
  for index in GOOD:
    np.testing.assert_array_equal(source[index]["video"], again[index]["video"])
  # d_good.mp4 has 17 valid starts; 8 seeds all agreeing has p ~ 1e-9.
  first_values = {
    int(make_source(mixed_folder, seed=seed)[3]["video"][0].mean()) for seed in range(8)
  }
  assert len(first_values) > 1


@pytest.mark.parametrize("name, atol", [("v.gif", 0), ("v.mp4", 3)])
def test_frame_stride_is_respected(tmp_path, name, atol):
  video_io.write_video(tmp_path / name, brightness_video(20))
  source = make_source(tmp_path, frame_stride=3)
  brightness = source[0]["video"].mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.diff(brightness), [24, 24, 24], atol=atol)
  # Span 10 of 20 frames: valid starts are frames 0..10.
  assert brightness[0] <= 10 * 8 + atol


def test_wraps_in_a_grain_pipeline(mixed_folder):
  source = make_source(mixed_folder)
  dataset = (
    grain.MapDataset.source(source)
    .map(lambda item: item and transforms.to_model_range(item["video"]))
    .filter(lambda item: item is not None)
  )
  # Half the files are bad here; a real run would bound the dropped ratio.
  options = grain.experimental.DatasetOptions(filter_raise_threshold_ratio=0.9)
  stream = grain.experimental.WithOptionsIterDataset(dataset.to_iter_dataset(), options)
  videos = list(stream)
  assert len(videos) == 3
  for video in videos:
    assert video.shape == (NUM_FRAMES, SIZE, SIZE, 3)
    assert video.dtype == np.float32
    assert -1 <= video.min() and video.max() <= 1


def test_pickles_for_grain_workers(mixed_folder):
  source = make_source(mixed_folder)
  source[2]
  copy = pickle.loads(pickle.dumps(source))
  assert copy.num_skipped == 1
  np.testing.assert_array_equal(copy[0]["video"], source[0]["video"])


def test_missing_or_file_root_raises(tmp_path):
  with pytest.raises(DataError, match="nowhere.*does not exist"):
    make_source(tmp_path / "nowhere")
  (tmp_path / "file.mp4").write_bytes(b"")
  with pytest.raises(DataError, match="file.mp4 is not a folder"):
    make_source(tmp_path / "file.mp4")


def test_folder_without_videos_raises(tmp_path):
  (tmp_path / "readme.txt").write_text("no videos here")
  with pytest.raises(DataError, match=r"no video files.*'\.mp4', '\.gif'"):
    make_source(tmp_path)


def test_folder_of_unusable_files_raises(tmp_path):
  (tmp_path / "x.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
  (tmp_path / "y.webm").write_bytes(b"")
  video_io.write_video(tmp_path / "z.gif", brightness_video(2))
  with pytest.raises(DataError, match="None of the 3 video files") as error:
    make_source(tmp_path)
  for name in ("x.mp4", "y.webm", "z.gif has 2 frames"):
    assert name in str(error.value)


@pytest.mark.parametrize(
  "kwargs",
  [{"num_frames": 0}, {"frame_stride": -1}, {"height": 0}, {"width": 2.5}],
)
def test_bad_config_raises(tmp_path, kwargs):
  with pytest.raises(ConfigError, match=next(iter(kwargs))):
    make_source(tmp_path, **kwargs)


def test_resize_and_center_crop_keeps_center_and_aspect():
  frames = np.zeros((2, 48, 80, 3), np.uint8)
  frames[:, 18:30, 34:46] = 255  # 12x12 centered marker.
  frames[:, :, :8] = 255  # Left band, outside the center crop.
  out = transforms.resize_and_center_crop(frames, 32, 32)
  assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
  rows, cols = np.nonzero(out[0, ..., 0] > 128)
  assert abs(rows.mean() - 15.5) < 0.5 and abs(cols.mean() - 15.5) < 0.5
  # Scale 2/3: the marker becomes ~8x8, square as before.
  assert np.ptp(rows) + 1 == pytest.approx(8, abs=1)
  assert np.ptp(cols) + 1 == pytest.approx(8, abs=1)
  assert out[:, :, :4].max() < 16  # The band was cropped away.


def test_resize_and_center_crop_upsamples_and_fast_path():
  frames = np.random.default_rng(0).integers(0, 256, (1, 8, 4, 1), np.uint8)
  assert transforms.resize_and_center_crop(frames, 8, 4) is frames
  out = transforms.resize_and_center_crop(frames, 12, 12)
  assert out.shape == (1, 12, 12, 1)
  with pytest.raises(ShapeError, match="float32"):
    transforms.resize_and_center_crop(frames.astype(np.float32), 4, 4)
  with pytest.raises(ShapeError, match=r"\(8, 4, 1\)"):
    transforms.resize_and_center_crop(frames[0], 4, 4)


def test_range_conversions():
  pixels = np.arange(256, dtype=np.uint8)
  x = transforms.to_model_range(pixels)
  assert x.dtype == np.float32
  assert x[0] == -1 and x[-1] == 1
  np.testing.assert_array_equal(transforms.to_uint8(x), pixels)
  np.testing.assert_array_equal(
    transforms.to_uint8(np.array([-3.0, 2.0, np.nan, 0.0])), [0, 255, 0, 128]
  )
  with pytest.raises(ShapeError, match="uint8"):
    transforms.to_model_range(x)
  with pytest.raises(ShapeError, match="int64"):
    transforms.to_uint8(np.array([1, 2]))
