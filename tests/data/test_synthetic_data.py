"""Tests for the embedded bouncing-shapes dataset (jvdm/data/synthetic.py)."""

import pickle
import time

import grain
import numpy as np
import pytest

from jvdm.data.palette import PALETTE
from jvdm.data.synthetic import BouncingShapes, paint_square, render_bouncing_shapes
from jvdm.errors import ConfigError

_NUM_CHECKED = 300  # videos whose ground truth is checked


@pytest.fixture(scope="module")
def rendered():
  source = BouncingShapes()
  return [source.render(i) for i in range(_NUM_CHECKED)]


def test_items_are_uint8_videos():
  item = BouncingShapes()[0]
  assert set(item) == {"video", "caption"}
  assert item["video"].shape == (16, 32, 32, 3)
  assert item["video"].dtype == np.uint8
  assert item["video"].any()  # at least one square drawn


def test_same_seed_and_index_give_the_same_video():
  first, second = BouncingShapes(seed=3), BouncingShapes(seed=3)
  for index in (0, 7, 99_999):
    np.testing.assert_array_equal(first[index]["video"], second[index]["video"])
    np.testing.assert_array_equal(first[index]["video"], first[index]["video"])


def test_different_seeds_or_indices_differ():
  seed_0, seed_1 = BouncingShapes(seed=0), BouncingShapes(seed=1)
  for index in range(10):
    assert not np.array_equal(seed_0[index]["video"], seed_1[index]["video"])
    assert not np.array_equal(seed_0[index]["video"], seed_0[index + 1]["video"])


def test_items_do_not_depend_on_access_order():
  forward = [BouncingShapes()[i]["video"] for i in range(20)]
  source = BouncingShapes()
  backward = {i: source[i]["video"] for i in reversed(range(20))}
  for i in range(20):
    np.testing.assert_array_equal(forward[i], backward[i])


def test_video_is_exactly_the_ground_truth_squares(rendered):
  for video, truth in rendered:
    expected = np.zeros_like(video)
    for colour, size, positions in zip(truth["colours"], truth["sizes"], truth["positions"]):
      paint_square(expected, positions, size, colour)
    np.testing.assert_array_equal(video, expected)
    # Independently of paint_square: the last-drawn square is on top, whole, in every frame.
    size, colour = truth["sizes"][-1], truth["colours"][-1]
    for frame, (y, x) in zip(video, truth["positions"][-1]):
      assert (frame[y : y + size, x : x + size] == colour).all()
    assert video.any(-1).sum(axis=(1, 2)).max() <= (truth["sizes"] ** 2).sum()


def test_squares_stay_inside_the_frame(rendered):
  for video, truth in rendered:
    _, height, width, _ = video.shape
    for size, positions in zip(truth["sizes"], truth["positions"]):
      assert positions.min() >= 0
      assert positions[:, 0].max() + size <= height
      assert positions[:, 1].max() + size <= width


def test_motion_is_constant_velocity_with_elastic_bounces(rendered):
  num_bounces = 0
  for video, truth in rendered:
    _, height, width, _ = video.shape
    for size, positions, velocities in zip(truth["sizes"], truth["positions"], truth["velocities"]):
      span = np.array([height - size, width - size])
      # Bounces flip a component's sign but never change its magnitude.
      assert (np.abs(velocities) == np.abs(velocities[0])).all()
      moved = positions[:-1] + velocities[:-1]  # [T - 1, 2]
      below, above = moved < 0, moved > span
      expected = np.where(below, -moved, np.where(above, 2 * span - moved, moved))
      np.testing.assert_array_equal(positions[1:], expected)
      bounced = below | above
      np.testing.assert_array_equal(
        velocities[1:], np.where(bounced, -velocities[:-1], velocities[:-1])
      )
      num_bounces += int(bounced.sum())
  assert num_bounces > 50  # the law above was exercised on real bounces


def test_counts_sizes_speeds_and_colours_cover_their_ranges(rendered):
  counts, sizes, speeds = set(), set(), set()
  for _, truth in rendered:
    counts.add(len(truth["sizes"]))
    sizes.update(truth["sizes"].tolist())
    speeds.update(np.abs(truth["velocities"][:, 0]).max(-1).tolist())  # Chebyshev norm
    indices = truth["colour_indices"]
    assert len(set(indices.tolist())) == len(indices)  # colours distinct
    np.testing.assert_array_equal(truth["colours"], PALETTE[indices])
  assert counts == {1, 2}
  assert sizes == set(range(6, 11))
  assert speeds == {1, 2, 3}


def test_custom_configuration_is_respected():
  source = BouncingShapes(
    num_videos=50,
    num_frames=8,
    height=24,
    width=40,
    min_shapes=2,
    max_shapes=3,
    min_size=3,
    max_size=5,
    min_speed=2,
    max_speed=4,
    seed=9,
  )
  assert len(source) == 50
  counts = set()
  for index in range(50):
    video, truth = source.render(index)
    assert video.shape == (8, 24, 40, 3)
    counts.add(len(truth["sizes"]))
    assert ((truth["sizes"] >= 3) & (truth["sizes"] <= 5)).all()
    speed = np.abs(truth["velocities"][:, 0]).max(-1)
    assert ((speed >= 2) & (speed <= 4)).all()
  assert counts == {2, 3}


def test_render_takes_any_generator():
  rng = np.random.default_rng(0)
  video, truth = render_bouncing_shapes(
    rng, num_frames=4, height=16, width=16, min_size=3, max_size=5
  )
  assert video.shape == (4, 16, 16, 3)
  assert truth["positions"].shape == (len(truth["sizes"]), 4, 2)


@pytest.mark.parametrize(
  "kwargs, words",
  [
    (dict(min_size=8, max_size=6), ["min_size=8", "max_size=6"]),
    (dict(min_shapes=3, max_shapes=2), ["min_shapes=3", "max_shapes=2"]),
    (dict(min_speed=0), ["min_speed", "0"]),
    (dict(num_frames=0), ["num_frames", "0"]),
    (dict(height=12, max_size=10), ["max_size=10", "max_speed=3", "12"]),
    (dict(max_shapes=9), ["max_shapes=9", "8"]),
    (dict(max_size=6.5), ["max_size", "6.5"]),
    (dict(num_videos=0), ["num_videos", "0"]),
    (dict(seed=-1), ["seed", "-1"]),
  ],
)
def test_bad_arguments_raise_config_error(kwargs, words):
  with pytest.raises(ConfigError) as error:
    BouncingShapes(**kwargs)
  for word in words:
    assert word in str(error.value)


def test_out_of_range_index_raises():
  source = BouncingShapes(num_videos=5)
  with pytest.raises(IndexError, match="5"):
    source[5]  # pylint: disable=pointless-statement


def test_grain_pipeline_batches_items():
  source = BouncingShapes(num_videos=20)
  dataset = grain.MapDataset.source(source).seed(0).shuffle().batch(4)
  batch = dataset[0]
  assert batch["video"].shape == (4, 16, 32, 32, 3)
  assert batch["video"].dtype == np.uint8
  items = [source[i]["video"] for i in range(20)]
  for video in batch["video"]:  # every row is one of the source's videos
    assert any(np.array_equal(video, item) for item in items)
  # Shuffled, but the 5 batches together hold all 20 videos once.
  all_videos = np.concatenate([dataset[i]["video"] for i in range(len(dataset))])
  assert len({video.tobytes() for video in all_videos}) == 20


def test_generation_is_fast():
  source = BouncingShapes()
  start = time.perf_counter()
  for index in range(200):
    source[index]  # pylint: disable=pointless-statement
  per_video = (time.perf_counter() - start) / 200
  assert per_video < 5e-3  # typically ~0.4 ms; loose for busy CI machines


def test_source_pickles_for_grain_workers():
  source = BouncingShapes(num_videos=10, seed=4)
  restored = pickle.loads(pickle.dumps(source))
  assert len(restored) == 10
  np.testing.assert_array_equal(restored[3]["video"], source[3]["video"])
