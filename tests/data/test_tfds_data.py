"""Writing TFDS datasets (jvdm.data.prepare) and reading them in the pipeline (tfds_source)."""

import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import bouncing_shapes_unet
from jvdm.data import prepare as prepare_lib
from jvdm.data.pipeline import make_dataset, make_source
from jvdm.data.prepare import prepare
from jvdm.data.synthetic import BouncingShapes
from jvdm.data.tfds_source import TfdsSource
from jvdm.data.video_folder import VideoFolderSource
from jvdm.errors import ConfigError, DataError
import jvdm.io as video_io

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_FRAMES, SIZE = 4, 16


def shapes(num_videos):
  return BouncingShapes(
    num_videos=num_videos, num_frames=NUM_FRAMES, height=SIZE, width=SIZE, min_size=3, max_size=5
  )


def rows(videos):
  """The videos as a sorted list of bytes: equal lists hold bitwise-equal videos."""
  return sorted(np.ascontiguousarray(video).tobytes() for video in videos)


def read_all(source):
  return [source[i]["video"] for i in range(len(source))]


def data_config(**overrides):
  config = bouncing_shapes_unet.get_config("tiny").data  # 4 frames of 16 x 16
  config.unlock()
  config.update(overrides)
  return config


def take(dataset, count):
  iterator = iter(dataset)
  return [next(iterator)["video"] for _ in range(count)]


@pytest.fixture(name="folder")
def fixture_folder(tmp_path):
  """Items 0, 1, 3, 4 are good videos; item 2 is not a video."""
  root = tmp_path / "videos"
  for k, name in enumerate(("a.mp4", "b.gif", "d.mp4", "e.mp4")):
    frames = np.zeros((8, 24, 24, 3), np.uint8)
    frames[:, 4 + k : 12 + k, 6:14] = 60 * (k + 1)
    frames[np.arange(8), :, np.arange(8)] = 255  # a bar moving right, so clips differ
    video_io.write_video(root / name, frames)
  (root / "c.mp4").write_bytes(b"not a video" * 100)
  return root


@pytest.fixture(name="shapes_dir", scope="module")
def fixture_shapes_dir(tmp_path_factory):
  """A data_dir with 'shapes': 16 train videos of `shapes(16)`, uint8 [4, 16, 16, 3]."""
  data_dir = tmp_path_factory.mktemp("tfds")
  prepare(shapes(16), output_dir=str(data_dir), name="shapes")
  return str(data_dir)


def test_video_folder_clips_are_written_and_read_back_bitwise(folder, tmp_path):
  source = VideoFolderSource(folder, num_frames=NUM_FRAMES, height=SIZE, width=SIZE)
  # With seed 1 the validation item (one of 5) is item 4.
  prepared = prepare(
    source,
    output_dir=str(tmp_path / "tfds"),
    name="clips",
    clips_per_item=2,
    validation_fraction=0.2,
    seed=1,
  )
  assert prepared.skipped == (2,)
  assert prepared.num_examples == {"train": 6, "validation": 2}
  assert prepared.feature == "video" and prepared.shape == (NUM_FRAMES, SIZE, SIZE, 3)
  assert prepared.path == tmp_path / "tfds" / "clips" / "1.0.0"

  def clips(index):  # what prepare documents: source[i], then load() with (seed, i, j)
    return [
      source[index]["video"],
      source.load(index, np.random.default_rng([1, index, 1]))["video"],
    ]

  for split, items in (("train", (0, 1, 3)), ("validation", (4,))):
    read = TfdsSource(
      "clips", data_dir=tmp_path / "tfds", split=split, expected_shape=(NUM_FRAMES, SIZE, SIZE, 3)
    )
    assert read.dtype == np.uint8
    assert rows(read_all(read)) == rows(clip for i in items for clip in clips(i))


def test_bouncing_shapes_round_trip_and_process_sharding(shapes_dir):
  read = TfdsSource("shapes", data_dir=shapes_dir)
  assert len(read) == 16 and read.shape == (NUM_FRAMES, SIZE, SIZE, 3)
  assert rows(read_all(read)) == rows(item["video"] for item in shapes(16))
  # It pickles, for grain worker processes.
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(read))[5]["video"], read[5]["video"])

  config = data_config(
    name="tfds",
    batch_size=8,
    tfds=dict(name="shapes", data_dir=shapes_dir, split="train", feature="video"),
  )
  single = take(make_dataset(config, process_index=0, process_count=1), 3)
  first = take(make_dataset(config, process_index=0, process_count=2), 3)
  second = take(make_dataset(config, process_index=1, process_count=2), 3)
  assert single[0].shape == (8, NUM_FRAMES, SIZE, SIZE, 3) and single[0].dtype == np.uint8
  assert first[0].shape == second[0].shape == (4, NUM_FRAMES, SIZE, SIZE, 3)
  for whole, a, b in zip(single, first, second):
    np.testing.assert_array_equal(np.concatenate([a, b]), whole)
    assert not set(rows(a)) & set(rows(b))


def test_latents_are_encoded_in_fixed_batches_and_read_as_float32(tmp_path):
  calls = []

  def encode(clips):  # 2 x 2 sum pool plus a constant channel: exact in float32
    calls.append(clips.shape)
    n, t, h, w, c = clips.shape
    pooled = clips.astype(np.float32).reshape(n, t, h // 2, 2, w // 2, 2, c).sum(axis=(3, 5))
    return np.concatenate([pooled, np.ones_like(pooled[..., :1])], axis=-1)

  source = shapes(7)
  prepared = prepare(
    source, output_dir=str(tmp_path), name="latents", encode=encode, encode_batch_size=3
  )
  assert calls == [(3, NUM_FRAMES, SIZE, SIZE, 3)] * 3  # 7 clips: the last batch padded
  assert prepared.feature == "latents" and prepared.shape == (NUM_FRAMES, 8, 8, 4)
  read = TfdsSource(
    "latents", data_dir=tmp_path, feature="latents", expected_shape=(NUM_FRAMES, 8, 8, 4)
  )
  assert read.dtype == np.float32
  expected = encode(np.stack([item["video"] for item in source]))
  assert rows(read_all(read)) == rows(expected)

  config = data_config(
    name="tfds",
    height=8,
    width=8,
    channels=4,
    batch_size=4,
    tfds=dict(name="latents", data_dir=str(tmp_path), split="train", feature="latents"),
  )
  batch = take(make_dataset(config, process_index=0, process_count=1), 1)[0]
  assert batch.shape == (4, NUM_FRAMES, 8, 8, 4) and batch.dtype == np.float32


def test_prepare_refuses_an_existing_dataset_unless_overwrite(tmp_path):
  prepare(shapes(4), output_dir=str(tmp_path), name="again")
  with pytest.raises(DataError, match=r"'again' version 1.0.0 already exists .*overwrite"):
    prepare(shapes(6), output_dir=str(tmp_path), name="again")
  longer = BouncingShapes(num_videos=6, num_frames=6, height=SIZE, width=SIZE)
  prepared = prepare(longer, output_dir=str(tmp_path), name="again", overwrite=True)
  assert prepared.num_examples == {"train": 6}
  read = TfdsSource("again", data_dir=tmp_path)
  assert len(read) == 6 and read[0]["video"].shape == (6, SIZE, SIZE, 3)


def test_prepare_rejects_bad_arguments(folder, tmp_path):
  out = str(tmp_path / "tfds")
  for kwargs, message in (
    (dict(name="my-videos"), "'my-videos' is not valid"),
    (dict(name="x", validation_fraction=1.0), r"must be in \[0, 1\), got 1.0"),
    (dict(name="x", validation_fraction=0.01), "gives 0 validation items"),
    (dict(name="x", clips_per_item=2), "needs a source with a `load"),
    (dict(name="x", encode_batch_size=0), "encode_batch_size must be an integer >= 1, got 0"),
  ):
    with pytest.raises(ConfigError, match=message):
      prepare(shapes(4), output_dir=out, **kwargs)

  with pytest.raises(DataError, match=r"encode returned an array of shape \(1, 2\)"):
    prepare(shapes(4), output_dir=out, name="x", encode=lambda clips: np.zeros((1, 2)))
  # Item 2, the only one drawn for validation with seed 0, is not a video: nothing is written.
  source = VideoFolderSource(folder, num_frames=NUM_FRAMES, height=SIZE, width=SIZE)
  with pytest.raises(DataError, match="for the 'validation' split gave a clip"):
    prepare(source, output_dir=out, name="x", validation_fraction=0.2)
  assert not (tmp_path / "tfds" / "x" / "1.0.0").exists()


def test_source_errors_name_the_dataset_and_what_was_expected(shapes_dir):
  with pytest.raises(DataError, match=r"'missing' .* not prepared\. .*: \['shapes'\]"):
    TfdsSource("missing", data_dir=shapes_dir)
  with pytest.raises(DataError, match="Unknown split 'test'"):
    TfdsSource("shapes", data_dir=shapes_dir, split="test")
  with pytest.raises(DataError, match=r"no feature 'latents'; its features are \['video'\]"):
    TfdsSource("shapes", data_dir=shapes_dir, feature="latents")
  # Through the pipeline: config.data.tfds without split and feature takes their defaults.
  config = data_config(name="tfds", num_frames=8, tfds=dict(name="shapes", data_dir=shapes_dir))
  with pytest.raises(DataError, match=r"'shapes' .* \(4, 16, 16, 3\); expected \(8, 16, 16, 3\)"):
    make_source(config)
  with pytest.raises(ConfigError, match="needs config.data.tfds.name"):
    make_source(data_config(name="tfds"))


def test_command_line(folder, tmp_path):
  def run(*args):
    return subprocess.run(
      [
        sys.executable,
        "-m",
        "jvdm.data.prepare",
        *args,
        f"--output_dir={tmp_path / 'tfds'}",
        "--num_frames=4",
        "--height=16",
        "--width=16",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )

  done = run("--source=video_folder", f"--root={folder}", "--name=folder", "--clips_per_video=2")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "{'train': 8} clips of video [4, 16, 16, 3] (1 videos skipped)" in done.stdout
  assert "--config.data.tfds.name=folder" in done.stdout
  assert len(TfdsSource("folder", data_dir=tmp_path / "tfds")) == 8
  (tmp_path / "empty").mkdir()
  failed = run("--source=video_folder", f"--root={tmp_path / 'empty'}", "--name=empty")
  assert failed.returncode != 0 and "has no video files" in failed.stderr


def test_sizes_a_dataset_leaves_open_are_checked_per_item(tmp_path):
  """Another TFDS dataset, of clips with any number of frames, read as 4-frame clips."""
  clips = [np.full((frames, SIZE, SIZE, 3), frames, np.uint8) for frames in (4, 5)]
  features = tfds.features.FeaturesDict(
    {"video": tfds.features.Tensor(shape=(None, SIZE, SIZE, 3), dtype=np.uint8)}
  )
  builder = prepare_lib._Builder(  # pylint: disable=protected-access
    name="open",
    version="1.0.0",
    features=features,
    description="",
    data_dir=str(tmp_path),
    file_format="array_record",
    splits={"train": [(k, {"video": clip}) for k, clip in enumerate(clips)]},
  )
  builder.download_and_prepare(download_dir=str(tmp_path / "downloads"))
  read = TfdsSource("open", data_dir=tmp_path, expected_shape=(NUM_FRAMES, SIZE, SIZE, 3))
  assert read.shape == (None, SIZE, SIZE, 3)
  videos, errors = [], []
  for index in range(2):  # in the dataset's stored order
    try:
      videos.append(read[index]["video"])
    except DataError as error:
      errors.append(str(error))
  np.testing.assert_array_equal(videos, [clips[0]])
  assert len(errors) == 1
  assert re.search(
    r"'open' .* item \d has shape \(5, 16, 16, 3\); expected \(4, 16, 16, 3\)", errors[0]
  )
