"""The grain input pipeline: a random-access source -> shuffled, process-sharded, batched stream.

Batches stay uint8 on the host (4x less to transfer); the train step converts to [-1, 1].
The returned iterator's state is saved with every checkpoint so a resumed run sees exactly
the data an uninterrupted one would.
"""

import logging
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from jvdm.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DATASETS = ("bouncing_shapes", "video_folder", "tfds")


def make_source(data_config: ml_collections.ConfigDict) -> Any:
  """The random-access source named by `data_config.name`.

  Items are {'video': uint8 [T, H, W, 3]}, or float latents [t, h, w, c] from a 'tfds' dataset
  of latents.
  """
  if data_config.name == "bouncing_shapes":
    from jvdm.data.synthetic import BouncingShapes  # pylint: disable=g-import-not-at-top

    return BouncingShapes(
      num_frames=data_config.num_frames,
      height=data_config.height,
      width=data_config.width,
      **data_config.bouncing_shapes.to_dict(),
    )
  if data_config.name == "video_folder":
    from jvdm.data.video_folder import VideoFolderSource  # pylint: disable=g-import-not-at-top

    return VideoFolderSource(
      data_config.video_folder.root,
      num_frames=data_config.num_frames,
      frame_stride=data_config.video_folder.frame_stride,
      height=data_config.height,
      width=data_config.width,
      seed=data_config.shuffle_seed,
    )
  if data_config.name == "tfds":
    from jvdm.data.tfds_source import TfdsSource  # pylint: disable=g-import-not-at-top

    tfds_config = data_config.tfds
    if not tfds_config.name:
      raise ConfigError(
        "config.data.name='tfds' needs config.data.tfds.name, a dataset prepared "
        f"with `python -m jvdm.data.prepare`; got {tfds_config.name!r}."
      )
    feature = tfds_config.feature
    # Pixel clips have the config's shape; latents that of the VAE (checked by the loop).
    pixel_shape = (
      data_config.num_frames,
      data_config.height,
      data_config.width,
      data_config.channels,
    )
    return TfdsSource(
      tfds_config.name,
      data_dir=tfds_config.data_dir or None,
      split=tfds_config.split,
      feature=feature,
      expected_shape=pixel_shape if feature == "video" else None,
    )
  raise ConfigError(f"Unknown dataset {data_config.name!r}; valid datasets: {list(DATASETS)}.")


def evaluation_videos(data_config: ml_collections.ConfigDict, num_videos: int) -> np.ndarray:
  """`num_videos` clips for evaluation, uint8 `[N, T, H, W, C]` (or float latents).

  Held out where the dataset allows: the synthetic generator at seed + 1, or a 'tfds'
  dataset's `data.tfds.eval_split`. A video folder, or a tfds dataset without an eval split,
  has no held-out clips: its first readable clips are used, with a warning.
  """
  if data_config.name == "bouncing_shapes":
    held_out = data_config.copy_and_resolve_references()
    with held_out.unlocked():
      held_out.bouncing_shapes.seed += 1
    source = make_source(held_out)
  elif data_config.name == "tfds" and data_config.tfds.eval_split:
    held_out = data_config.copy_and_resolve_references()
    with held_out.unlocked():
      held_out.tfds.split = data_config.tfds.eval_split
    source = make_source(held_out)
  else:
    logger.warning(
      "The %r dataset has no held-out split: evaluating on its first %d clips, "
      "which training also sees.",
      data_config.name,
      num_videos,
    )
    source = make_source(data_config)
  clips = []
  for index in range(len(source)):
    item = source[index]
    if item is not None:
      clips.append(item["video"])
    if len(clips) == num_videos:
      return np.stack(clips)
  raise DataError(
    f"The {data_config.name!r} dataset has {len(clips)} readable clips; "
    f"evaluation needs {num_videos} (train.num_sample_videos)."
  )


def local_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size % process_count:
    raise ConfigError(
      f"data.batch_size={global_batch_size} is not divisible by the {process_count} processes."
    )
  return global_batch_size // process_count


def make_dataset(
  data_config: ml_collections.ConfigDict,
  source: Any = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.IterDataset:
  """An endless stream of host-local batches {'video': uint8 [B_local, T, H, W, C]}.

  Args:
    data_config: the `config.data` section.
    source: a random-access source; built from `data_config` when None.
    process_index: this host's index (default `jax.process_index()`).
    process_count: number of hosts (default `jax.process_count()`).
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  batch = local_batch_size(data_config.batch_size, process_count)
  source = make_source(data_config) if source is None else source
  # Every process sees the same permutation (each epoch reshuffled)...
  shuffled = grain.MapDataset.source(source).seed(data_config.shuffle_seed).shuffle().repeat()
  # ...and reads rows [i * batch, (i + 1) * batch) of each global batch of it: the global batch,
  # row for row, is the same for any number of processes.
  first_row = process_index * batch
  dataset = grain.MapDataset.range(len(shuffled) // process_count).map(
    lambda i: shuffled[i // batch * data_config.batch_size + first_row + i % batch]
  )
  stream = dataset.to_iter_dataset()
  # Sources return None for items they could not read (a corrupt file); drop them here.
  stream = stream.filter(lambda item: item is not None)
  stream = stream.batch(batch, drop_remainder=True)
  if data_config.worker_count > 0:
    stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.worker_count))
  return stream
