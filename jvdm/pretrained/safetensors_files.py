"""The tensors of a model folder in safetensors files: one `model.safetensors` (or
`diffusion_pytorch_model.safetensors`), or shards listed by a `*.safetensors.index.json`, as
transformers and diffusers write them. Tensors are read one at a time (`safe_open`), so a
caller can convert and place each before reading the next."""

import json
import pathlib
from typing import Iterator

import numpy as np
from safetensors import safe_open

from jvdm.errors import CheckpointError

SINGLE_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors")


def shard_files(folder: str | pathlib.Path) -> list[pathlib.Path]:
  """The safetensors files of `folder`, checked to exist; CheckpointError naming what is
  missing."""
  folder = pathlib.Path(folder)
  indexes = sorted(folder.glob("*.safetensors.index.json"))
  if indexes:
    weight_map = json.loads(indexes[0].read_text())["weight_map"]
    files = [folder / name for name in sorted(set(weight_map.values()))]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
      raise CheckpointError(f"{indexes[0]} lists shards that are missing: {missing}.")
    return files
  for name in SINGLE_FILES:
    if (folder / name).exists():
      return [folder / name]
  raise CheckpointError(
    f"{folder} holds no weights: expected one of {list(SINGLE_FILES)} or a "
    "'*.safetensors.index.json' with its shards."
  )


def iter_tensors(folder: str | pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
  """(key, numpy array) for every tensor of the folder, one at a time, in their stored dtype
  (bfloat16 as ml_dtypes' bfloat16)."""
  for path in shard_files(folder):
    yield from iter_file_tensors(path)


def iter_file_tensors(path: str | pathlib.Path) -> Iterator[tuple[str, np.ndarray]]:
  """(key, numpy array) for every tensor of one safetensors file, one at a time."""
  if not pathlib.Path(path).is_file():
    raise CheckpointError(f"{path} is not a safetensors file.")
  with safe_open(str(path), framework="numpy") as f:
    keys = list(f.keys())
  for key in keys:
    yield key, _read_tensor(path, key)


def _read_tensor(path: str | pathlib.Path, key: str) -> np.ndarray:
  """One tensor of a safetensors file, the file mapped only while it is read: the pages of a
  mapped file count in the process's resident memory until it is unmapped, so reading a whole
  shard through one `safe_open` held up to the shard (~1 GB) on top of the converted params
  (benchmarks/wan_loading.py)."""
  with safe_open(str(path), framework="numpy") as f:
    return f.get_tensor(key)
