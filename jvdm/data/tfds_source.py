"""A grain random-access source over any prepared TFDS dataset in a random-access format.

Datasets written by `jvdm.data.prepare` (ArrayRecord) qualify, and so does any TFDS dataset
prepared with `file_format='array_record'` whose clips are a `tfds.features.Tensor`. Reading
goes through `tfds.data_source` and needs no TensorFlow.
"""

import operator
import os
from typing import Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from jvdm.errors import ConfigError, DataError


class TfdsSource:
  """Items `{"video": array}`: feature `feature` of split `split` of a prepared TFDS dataset.

  The array is uint8 pixels [T, H, W, C] or float latents [t, h, w, c]; the train step maps
  uint8 to [-1, 1] and takes floats as given. Item `index` is example `index` of the split, in
  the dataset's stored order. Sources pickle (for grain worker processes): each copy reopens
  the files.
  """

  def __init__(
    self,
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    feature: str = "video",
    expected_shape: Sequence[int | None] | None = None,
  ):
    """Opens the dataset and checks its feature.

    Args:
      name: the dataset, optionally with its version: "my_videos" or "my_videos:1.0.0".
      data_dir: the TFDS data_dir it was prepared in; None: TFDS's default
        (~/tensorflow_datasets, or $TFDS_DATA_DIR).
      split: a split or TFDS split expression, e.g. "train" or "train[:90%]".
      feature: the name of the feature holding the clips ("video"; "latents" for
        `jvdm.data.prepare`'s encoded datasets).
      expected_shape: the clip shape the model takes, e.g. (T, H, W, C); None entries, or None,
        accept any size.

    Raises:
      ConfigError: `name` is empty or `expected_shape` is not 4 sizes.
      DataError: the dataset or split is not there, is not in a random-access format, or its
        feature is missing, not an array of uint8 or floats, or of another shape.
    """
    if not name:
      raise ConfigError("TfdsSource needs a dataset name, e.g. 'my_videos'; got ''.")
    if expected_shape is not None and len(expected_shape) != 4:
      raise ConfigError(
        f"TfdsSource expected_shape must be 4 sizes [T, H, W, C], got {tuple(expected_shape)}."
      )
    self._name = name
    self._split = split
    self._feature = feature
    where = f"TFDS dataset {name!r} (data_dir={data_dir or 'the TFDS default'}, split={split!r})"
    try:
      self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.DatasetNotFoundError:
      found = (
        f" Datasets prepared in {data_dir}: {_prepared_datasets(data_dir) or 'none'}."
        if data_dir
        else ""
      )
      raise DataError(
        f"{where} is not prepared.{found} Prepare one with `python -m jvdm.data.prepare`."
      ) from None
    except (ValueError, NotImplementedError) as error:  # a bad split; not ArrayRecord
      raise DataError(f"{where} cannot be read: {error}") from error

    features = self._source.dataset_info.features
    if feature not in features.keys():
      raise DataError(
        f"{where} has no feature {feature!r}; its features are {sorted(features.keys())}."
      )
    spec = features[feature]
    if not isinstance(spec, tfds.features.Tensor):
      raise DataError(
        f"{where}: feature {feature!r} is a {type(spec).__name__}; expected a "
        "tfds.features.Tensor (Image and Video features need TensorFlow to decode)."
      )
    self._shape = tuple(spec.shape)
    self._dtype = np.dtype(spec.np_dtype)
    if not (self._dtype == np.uint8 or np.issubdtype(self._dtype, np.floating)):
      raise DataError(
        f"{where}: feature {feature!r} has dtype {self._dtype}; expected uint8 "
        "pixels or float latents."
      )
    if len(self._shape) != 4:
      raise DataError(
        f"{where}: feature {feature!r} has shape {self._shape}; expected clips [T, H, W, C]."
      )
    if expected_shape is not None and not _fits(self._shape, expected_shape):
      raise DataError(
        f"{where}: feature {feature!r} has shape {self._shape}; expected "
        f"{tuple(expected_shape)} (the clip shape the model takes)."
      )
    # Sizes the dataset leaves open (None) are checked per item.
    self._expected_shape = None if expected_shape is None else tuple(expected_shape)
    self._check_items = expected_shape is not None and None in self._shape
    self._where = where

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = operator.index(index)
    video = self._source[index][self._feature]
    if self._check_items and not _fits(video.shape, self._expected_shape):
      raise DataError(
        f"{self._where}: item {index} has shape {video.shape}; expected {self._expected_shape}."
      )
    return {"video": video}

  @property
  def shape(self) -> tuple[int | None, ...]:
    """The feature's shape as the dataset declares it (None: a size that varies)."""
    return self._shape

  @property
  def dtype(self) -> np.dtype:
    return self._dtype

  def __repr__(self) -> str:
    return (
      f"TfdsSource(name={self._name!r}, split={self._split!r}, feature={self._feature!r}, "
      f"examples={len(self)}, shape={self._shape}, dtype={self._dtype})"
    )


def _fits(shape: Sequence[int | None], expected: Sequence[int | None]) -> bool:
  """Whether `shape` is `expected` wherever both give a size (None: any size)."""
  return len(shape) == len(expected) and all(
    size is None or want is None or size == want for size, want in zip(shape, expected)
  )


def _prepared_datasets(data_dir: str | os.PathLike) -> list[str]:
  """Names of the datasets prepared under `data_dir` (in NAME/VERSION/)."""
  return sorted(
    {info.parent.parent.name for info in epath.Path(data_dir).glob("*/*/dataset_info.json")}
  )
