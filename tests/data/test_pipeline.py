"""The grain pipeline: determinism, exact resumption, process sharding, skipping bad files."""

import numpy as np
import pytest

from configs import bouncing_shapes_unet
from jvdm.data.pipeline import make_dataset
from jvdm.errors import ConfigError, DataError
import jvdm.io as video_io


def data_config(**overrides):
  config = bouncing_shapes_unet.get_config("tiny").data
  config.unlock()
  config.update(overrides)
  return config


def take(iterator, count):
  return [next(iterator)["video"] for _ in range(count)]


def test_batches_are_deterministic_and_shaped():
  a = take(iter(make_dataset(data_config(), process_index=0, process_count=1)), 3)
  b = take(iter(make_dataset(data_config(), process_index=0, process_count=1)), 3)
  c = take(iter(make_dataset(data_config(shuffle_seed=1), process_index=0, process_count=1)), 3)
  assert a[0].shape == (8, 4, 16, 16, 3) and a[0].dtype == np.uint8
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  assert not np.array_equal(np.stack(a), np.stack(c))


def test_iterator_state_resumes_the_stream_exactly():
  iterator = iter(make_dataset(data_config(), process_index=0, process_count=1))
  take(iterator, 2)
  state = iterator.get_state()
  expected = take(iterator, 3)
  fresh = iter(make_dataset(data_config(), process_index=0, process_count=1))
  fresh.set_state(state)
  np.testing.assert_array_equal(np.stack(take(fresh, 3)), np.stack(expected))


def test_processes_get_disjoint_halves_of_the_global_batch():
  config = data_config(
    batch_size=8,
    bouncing_shapes=dict(
      num_videos=64,
      min_shapes=1,
      max_shapes=2,
      min_size=3,
      max_size=5,
      min_speed=1,
      max_speed=3,
      seed=0,
    ),
  )
  first = take(iter(make_dataset(config, process_index=0, process_count=2)), 4)
  second = take(iter(make_dataset(config, process_index=1, process_count=2)), 4)
  assert first[0].shape[0] == 4  # local batch = global / processes
  seen_first = {v.tobytes() for batch in first for v in batch}
  seen_second = {v.tobytes() for batch in second for v in batch}
  assert len(seen_first) == len(seen_second) == 16 and not seen_first & seen_second
  with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
    make_dataset(config, process_index=0, process_count=3)


def test_video_folder_pipeline_skips_corrupt_files(tmp_path):
  frames = np.zeros((6, 16, 16, 3), np.uint8)
  frames[:, 4:10, 4:10] = 255
  for name in ("a.mp4", "b.gif"):
    video_io.write_video(tmp_path / name, frames)
  (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 100)
  config = data_config(
    name="video_folder", batch_size=4, video_folder=dict(root=str(tmp_path), frame_stride=1)
  )
  batches = take(iter(make_dataset(config, process_index=0, process_count=1)), 3)
  assert all(batch.shape == (4, 4, 16, 16, 3) for batch in batches)
  assert all(batch[:, :, 6, 6].min() > 200 for batch in batches)  # only real clips, no blanks
  with pytest.raises(DataError, match="empty_missing"):
    make_dataset(
      data_config(
        name="video_folder", video_folder=dict(root=str(tmp_path / "empty_missing"), frame_stride=1)
      ),
      process_index=0,
      process_count=1,
    )
