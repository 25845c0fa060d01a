"""Device mesh construction and the shardings derived from it."""

import math
from typing import Mapping, Sequence

import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jvdm.errors import ConfigError
from jvdm.parallel import axes


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """Fills in the one `-1` axis with the remaining devices and checks the product.

  Args:
    shape: sizes for the axes in `axes.MESH_AXES`; one of them may be -1.
    num_devices: the number of devices the mesh must cover.

  Returns:
    The sizes, in `axes.MESH_AXES` order.
  """
  unknown = set(shape) - set(axes.MESH_AXES)
  if unknown:
    raise ConfigError(f"Unknown mesh axes {sorted(unknown)}; valid axes: {list(axes.MESH_AXES)}.")
  sizes = {name: int(shape.get(name, 1)) for name in axes.MESH_AXES}
  free = [name for name, size in sizes.items() if size == -1]
  if len(free) > 1 or any(size == 0 or size < -1 for size in sizes.values()):
    raise ConfigError(f"Mesh sizes must be positive, with at most one -1; got {sizes}.")
  known = math.prod(size for size in sizes.values() if size != -1)
  if free:
    if num_devices % known:
      raise ConfigError(
        f"Mesh axes {sizes} leave {num_devices} / {known} devices for '{free[0]}', which is not "
        "a whole number."
      )
    sizes[free[0]] = num_devices // known
  if math.prod(sizes.values()) != num_devices:
    raise ConfigError(
      f"Mesh axes {sizes} multiply to {math.prod(sizes.values())}, but there are {num_devices} "
      "devices."
    )
  return sizes


def split_mesh_shape(
  shape: Mapping[str, int], dcn_shape: Mapping[str, int] | None, num_devices: int
) -> tuple[dict[str, int], dict[str, int]]:
  """(within-slice sizes, across-slice sizes) of every axis for `num_devices` devices; the
  across-slice sizes are given in full (no -1), the within-slice ones may use one -1."""
  dcn = {name: int((dcn_shape or {}).get(name, 1)) for name in axes.MESH_AXES}
  unknown = set(dcn_shape or {}) - set(axes.MESH_AXES)
  if unknown or min(dcn.values()) < 1:
    raise ConfigError(
      f"dcn_shape must give positive sizes for the axes {list(axes.MESH_AXES)}; "
      f"got {dict(dcn_shape)}."
    )
  slices = math.prod(dcn.values())
  if num_devices % slices:
    raise ConfigError(
      f"dcn_shape {dcn} asks for {slices} slices/processes, which do not split "
      f"{num_devices} devices evenly."
    )
  return resolve_mesh_shape(shape, num_devices // slices), dcn


def make_mesh(
  shape: Mapping[str, int],
  devices: Sequence[jax.Device] | None = None,
  dcn_shape: Mapping[str, int] | None = None,
) -> Mesh:
  """A mesh over `devices` (default: all) with Auto axes named `axes.MESH_AXES`.

  Args:
    shape: per-axis sizes within a slice (ICI; one may be -1 for the rest of the devices).
    devices: the devices; default all of them.
    dcn_shape: per-axis sizes across slices (DCN) for multi-slice TPU jobs, or across
      processes (hosts) elsewhere; an axis's total size is its `shape` size times its
      `dcn_shape` size. Default: one slice. Put the data-parallel axes here: what crosses
      the slower network should be the gradient all-reduce, not per-layer traffic.
  """
  devices = jax.devices() if devices is None else list(devices)
  ici, dcn = split_mesh_shape(shape, dcn_shape, len(devices))
  if math.prod(dcn.values()) == 1:
    # jax.make_mesh orders devices by the physical topology (ICI rings on TPU, hosts on GPU).
    return jax.make_mesh(
      tuple(ici.values()), axes.MESH_AXES, axis_types=(AxisType.Auto,) * len(ici), devices=devices
    )
  on_tpu = devices[0].platform == "tpu"
  try:
    grid = mesh_utils.create_hybrid_device_mesh(
      tuple(ici.values()), tuple(dcn.values()), devices, process_is_granule=not on_tpu
    )
  except ValueError as error:
    raise ConfigError(
      f"Cannot lay out mesh {ici} within and {dcn} across "
      f"{'slices' if on_tpu else 'processes'}: {error}"
    ) from error
  return Mesh(grid, axes.MESH_AXES, axis_types=(AxisType.Auto,) * len(axes.MESH_AXES))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Shards the leading (batch) axis over the data-parallel axes; the rest is replicated."""
  return NamedSharding(mesh, PartitionSpec((axes.DATA, axes.FSDP), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
