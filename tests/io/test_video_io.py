"""Tests for jvdm.io.video: mp4/gif/npz writing and video reading."""

import numpy as np
from PIL import Image
import pytest

from jvdm.errors import ConfigError, DataError, JvdmError, ShapeError
import jvdm.io as video_io


def blocky_video(num_frames=8, height=32, width=32):
  """uint8 [T, H, W, 3] of 8x8 flat blocks whose colors change per frame.

  Flat blocks survive both h264 and GIF palettes well.
  """
  rng = np.random.default_rng(0)
  blocks = rng.integers(0, 8, (num_frames, height // 8, width // 8, 3), dtype=np.uint8) * 32
  return np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)


def brightness_video(num_frames, height=8, width=8, step=8):
  """uint8 [T, H, W, 3] whose frame k is flat with value step * k."""
  values = (np.arange(num_frames) * step).astype(np.uint8)
  return np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).copy()


def mean_abs_diff(a, b):
  return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()


def test_mp4_round_trip(tmp_path):
  frames = blocky_video()
  path = video_io.write_video(tmp_path / "a.mp4", frames, fps=8)
  read = video_io.read_video(path)
  assert read.shape == frames.shape
  assert read.dtype == np.uint8
  # h264 is lossy: loose tolerance, but far below the ~70 of unrelated frames.
  assert mean_abs_diff(read, frames) < 6
  assert mean_abs_diff(read[1:], frames[:-1]) > 30  # Frame order kept.


def test_mp4_odd_size_is_padded_to_even(tmp_path):
  frames = blocky_video(num_frames=3, height=24, width=24)[:, :15, :21]
  read = video_io.read_video(video_io.write_video(tmp_path / "odd.mp4", frames))
  assert read.shape == (3, 16, 22, 3)
  assert mean_abs_diff(read[:, :15, :21], frames) < 6


def test_mp4_scale_is_nearest_neighbour(tmp_path):
  frames = blocky_video(num_frames=4, height=16, width=16)
  read = video_io.read_video(video_io.write_video(tmp_path / "big.mp4", frames, scale=3))
  assert read.shape == (4, 48, 48, 3)
  assert mean_abs_diff(read[:, 1::3, 1::3], frames) < 6


def test_gif_round_trip_and_loops(tmp_path):
  frames = blocky_video(num_frames=6, height=16, width=24)
  path = video_io.write_video(tmp_path / "a.gif", frames, fps=10)
  read = video_io.read_video(path)
  assert read.shape == frames.shape
  # At most 64 colors per frame fit the palette exactly.
  np.testing.assert_array_equal(read, frames)
  with Image.open(path) as image:
    assert image.info["loop"] == 0
    assert image.info["duration"] == 100


def test_gray_frames_are_written_as_rgb(tmp_path):
  frames = brightness_video(4)[..., :1]  # [T, H, W, 1]
  read = video_io.read_video(video_io.write_video(tmp_path / "g.gif", frames))
  assert read.shape == (4, 8, 8, 3)
  np.testing.assert_array_equal(read, np.repeat(frames, 3, axis=-1))


def test_npz_round_trip_is_exact(tmp_path):
  videos = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5, 3), dtype=np.uint8)
  path = video_io.save_npz(tmp_path / "out" / "samples.npz", videos)
  np.testing.assert_array_equal(video_io.load_npz(path), videos)
  with np.load(path) as archive:
    assert list(archive.keys()) == ["videos"]


def test_npz_errors(tmp_path):
  videos = np.zeros((1, 2, 4, 4, 3), np.uint8)
  with pytest.raises(JvdmError, match="'.npz'"):
    video_io.save_npz(tmp_path / "samples.np", videos)
  with pytest.raises(ShapeError, match=r"\[N, T, H, W, C\]"):
    video_io.save_npz(tmp_path / "samples.npz", videos[0])
  np.savez(tmp_path / "other.npz", frames=videos)
  with pytest.raises(DataError, match="'videos'"):
    video_io.load_npz(tmp_path / "other.npz")
  with pytest.raises(DataError, match="missing.npz"):
    video_io.load_npz(tmp_path / "missing.npz")


def test_tile_videos_places_each_video():
  videos = np.stack([np.full((2, 4, 6, 3), 10 * (n + 1), np.uint8) for n in range(5)])
  grid = video_io.tile_videos(videos, columns=3, separator=2)
  assert grid.shape == (2, 2 * 4 + 2, 3 * 6 + 4, 3)
  for n in range(5):
    top, left = (n // 3) * 6, (n % 3) * 8
    assert (grid[:, top : top + 4, left : left + 6] == 10 * (n + 1)).all()
  assert (grid[:, 4:6] == 255).all()  # Separator row.
  assert (grid[:, 6:, 16:] == 255).all()  # Empty last cell.


def test_write_video_grid_shape(tmp_path):
  videos = np.stack([blocky_video(3, 16, 16) for _ in range(4)])
  read = video_io.read_video(
    video_io.write_video_grid(tmp_path / "grid.mp4", videos, fps=4, scale=2)
  )
  # 2x2 grid of 32x32 (after scale 2) with a 2 px separator.
  assert read.shape == (3, 66, 66, 3)
  first = videos[0].repeat(2, axis=1).repeat(2, axis=2)
  assert mean_abs_diff(read[:, :32, :32], first) < 6
  read = video_io.read_video(video_io.write_video_grid(tmp_path / "grid.gif", videos, columns=4))
  assert read.shape == (3, 16, 4 * 16 + 3 * 2, 3)


@pytest.mark.parametrize(
  "frames, error, match",
  [
    (np.zeros((2, 8, 8, 3), np.float32), ShapeError, "float32.*uint8"),
    (np.zeros((8, 8, 3), np.uint8), ShapeError, r"\(8, 8, 3\)"),
    (np.zeros((2, 8, 8, 4), np.uint8), ShapeError, r"\(2, 8, 8, 4\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), ShapeError, "non-empty"),
  ],
)
def test_write_video_rejects_bad_frames(tmp_path, frames, error, match):
  with pytest.raises(error, match=match):
    video_io.write_video(tmp_path / "a.mp4", frames)
  assert not (tmp_path / "a.mp4").exists()


def test_write_video_rejects_bad_options(tmp_path):
  frames = np.zeros((2, 8, 8, 3), np.uint8)
  with pytest.raises(JvdmError, match=r"'\.avi'.*\.mp4"):
    video_io.write_video(tmp_path / "a.avi", frames)
  with pytest.raises(ConfigError, match="fps"):
    video_io.write_video(tmp_path / "a.gif", frames, fps=0)
  with pytest.raises(ConfigError, match="scale"):
    video_io.write_video(tmp_path / "a.gif", frames, scale=1.5)


def test_read_video_errors_name_the_file(tmp_path):
  with pytest.raises(DataError, match="missing.mp4"):
    video_io.read_video(tmp_path / "missing.mp4")
  corrupt = tmp_path / "corrupt.mp4"
  corrupt.write_bytes(np.random.default_rng(0).bytes(3000))
  with pytest.raises(DataError, match="corrupt.mp4"):
    video_io.read_video(corrupt)
  bad_gif = tmp_path / "bad.gif"
  bad_gif.write_bytes(b"GIF89a" + b"\0" * 10)
  with pytest.raises(DataError, match="bad.gif"):
    video_io.read_video(bad_gif)


@pytest.mark.parametrize("suffix, atol", [(".gif", 0), (".mp4", 3)])
def test_read_video_frames_start_and_stride(tmp_path, suffix, atol):
  path = video_io.write_video(tmp_path / f"v{suffix}", brightness_video(12))
  clip = video_io.read_video_frames(path, start=2, num_frames=4, stride=3)
  assert clip.shape == (4, 8, 8, 3)
  np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [16, 40, 64, 88], atol=atol)
  with pytest.raises(DataError, match="too short"):
    video_io.read_video_frames(path, start=2, num_frames=4, stride=4)


def test_read_random_clip_is_uniform_and_deterministic(tmp_path):
  path = video_io.write_video(tmp_path / "v.gif", brightness_video(10))

  def first_frame_index(seed):
    clip = video_io.read_random_clip(
      path, num_frames=2, frame_stride=2, rng=np.random.default_rng(seed)
    )
    values = clip[:, 0, 0, 0].astype(int)
    assert values[1] - values[0] == 2 * 8  # Stride 2, 8 per frame.
    return values[0] // 8

  starts = [first_frame_index(seed) for seed in range(80)]
  assert starts == [first_frame_index(seed) for seed in range(80)]
  # 10 frames, span 3 -> starts 0..7; 80 draws miss one with p < 1e-3.
  assert sorted(set(starts)) == list(range(8))
  with pytest.raises(DataError, match="10 frames.*needs at least 11"):
    video_io.read_random_clip(path, num_frames=6, frame_stride=2, rng=np.random.default_rng(0))
