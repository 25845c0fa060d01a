"""Converted checkpoint tensors placed onto devices one param at a time.

A param is assembled on the host from its parts (a fused query/key/value kernel from three
tensors, a scanned layer stack from one tensor per layer) and placed as soon as it is
complete, with `jax.make_array_from_callback`: on a mesh, each host then keeps only the
shards of its own devices, and no host ever holds the whole model. Tensors keep their stored
dtype (bfloat16 stays bfloat16) unless a dtype is asked for.
"""

import dataclasses
from typing import Any, Iterable

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh

from jvdm.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class Target:
  """Where a converted tensor goes: the jvdm param `path`, and which `part` of it along `axis`
  (None: the whole param)."""

  path: tuple[str, ...]
  part: int | None = None
  axis: int = 0


def param_shardings(module: nn.Module, mesh: Mesh | None, rules, *args, **kwargs):
  """(abstract params, their shardings) of `module.init(rng, *args, **kwargs)`, from the
  params' logical axes and `rules`; without a mesh the shardings are None (the default
  device)."""
  boxed = jax.eval_shape(lambda rng: module.init(rng, *args, **kwargs)["params"], jax.random.key(0))
  abstract = nn.meta.unbox(boxed)
  if mesh is None:
    return abstract, None
  return abstract, nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)


# XLA's CPU client takes a host buffer aligned to this many bytes as it is (no copy).
_ALIGNMENT = 64


def _aligned_empty(shape, dtype) -> np.ndarray:
  """An uninitialized array whose data starts on an `_ALIGNMENT`-byte boundary: on CPU,
  `jax.device_put` then aliases it, so a param is not held twice while it is placed, and the
  freed copies do not leave the allocator's heap fragmented (benchmarks/wan_loading.py)."""
  dtype = np.dtype(dtype)
  size = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(size + _ALIGNMENT, np.uint8)
  start = -raw.ctypes.data % _ALIGNMENT
  return raw[start : start + size].view(dtype).reshape(shape)


_BAND = 64  # columns per band of a strided copy


def _write(destination: np.ndarray, source: np.ndarray) -> None:
  """`destination[...] = source`. A source that is a transposed view (a Linear weight [out, in]
  read as a Dense kernel [in, out]) is copied in bands of `_BAND` columns, so the source rows
  each band reads stay in cache: 2.6x faster than one strided copy for Wan's MLP kernels."""
  if source.ndim < 2 or source.flags.c_contiguous:
    destination[...] = source
    return
  for start in range(0, source.shape[-1], _BAND):
    destination[..., start : start + _BAND] = source[..., start : start + _BAND]


class _Assembly:
  """One param's host buffer and the parts of it written so far."""

  def __init__(self, shape, dtype, parts: int):
    self.buffer = _aligned_empty(shape, dtype)
    self.parts, self.written = parts, set()


def place_params(
  targets: Iterable[tuple[str, Any, tuple[int | None, Any, Any]]],
  abstract: Any,
  shardings: Any,
  dtype: Any = None,
  source: str = "the checkpoint",
) -> dict[str, Any]:
  """The params of `abstract`, each placed by its sharding as soon as its parts are read.

  Args:
    targets: (key, target, (layer or None, array, conversion(array, shape))) per tensor, as a
      model's converter yields them (e.g. `jvdm.pretrained.wan_dit.wan_dit_targets`); a target
      has the param `path`, and the `part` of it along `axis` the tensor fills (None: all).
    abstract: the model's abstract params (shapes).
    shardings: a sharding per leaf of `abstract`, or None: the default device.
    dtype: the params' dtype; None keeps each tensor's stored dtype.
    source: names the checkpoint in errors.
  """
  shapes = traverse_util.flatten_dict(abstract)
  flat_shardings = {} if shardings is None else traverse_util.flatten_dict(shardings)
  pending: dict[tuple[str, ...], _Assembly] = {}
  placed: dict[tuple[str, ...], Any] = {}
  for key, target, (layer, array, conversion) in targets:
    if target.path not in shapes:
      raise CheckpointError(
        f"{source}: {key!r} goes to param {'/'.join(target.path)}, which this model does not "
        "have (its config.json and weights disagree)."
      )
    shape = tuple(shapes[target.path].shape)
    layer_shape = shape[1:] if layer is not None else shape
    part_shape = layer_shape
    if target.part is not None:
      part_shape = layer_shape[: target.axis] + layer_shape[target.axis + 1 :]
    value = conversion(array, part_shape)
    if tuple(value.shape) != part_shape:
      raise CheckpointError(
        f"{source}: {key!r} has shape {tuple(np.shape(array))}, which does not fit param "
        f"{'/'.join(target.path)} {shape} (its config.json and weights disagree)."
      )
    if target.path in placed:
      raise CheckpointError(f"{source}: {key!r} fills param {'/'.join(target.path)} twice.")
    if target.path not in pending:
      parts = (shape[0] if layer is not None else 1) * (
        layer_shape[target.axis] if target.part is not None else 1
      )
      pending[target.path] = _Assembly(shape, dtype or value.dtype, parts)
    assembly = pending[target.path]
    index = () if layer is None else (layer,)
    if target.part is not None:
      index += (slice(None),) * target.axis + (target.part,)
    if (layer, target.part) in assembly.written:
      raise CheckpointError(f"{source}: {key!r} fills param {'/'.join(target.path)} twice.")
    _write(assembly.buffer[index], np.asarray(value))
    assembly.written.add((layer, target.part))
    if len(assembly.written) == assembly.parts:
      placed[target.path] = _place(pending.pop(target.path).buffer, flat_shardings.get(target.path))
  missing = sorted("/".join(path) for path in set(shapes) - set(placed))
  if missing:
    raise CheckpointError(
      f"{source} lacks {len(missing)} of the model's params (or parts of them): "
      f"{missing[:8]}{' ...' if len(missing) > 8 else ''}."
    )
  return traverse_util.unflatten_dict(placed)


def _place(buffer: np.ndarray, sharding) -> jax.Array:
  if sharding is None:
    return jax.device_put(buffer)
  return jax.make_array_from_callback(buffer.shape, sharding, lambda index: buffer[index])
