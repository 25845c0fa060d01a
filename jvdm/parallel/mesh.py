"""Device mesh construction and the shardings derived from it."""

import math
from typing import Mapping, Sequence

import jax
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
          "a whole number.")
    sizes[free[0]] = num_devices // known
  if math.prod(sizes.values()) != num_devices:
    raise ConfigError(
        f"Mesh axes {sizes} multiply to {math.prod(sizes.values())}, but there are {num_devices} "
        "devices.")
  return sizes


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (default: all) with Auto axes named `axes.MESH_AXES`."""
  devices = jax.devices() if devices is None else list(devices)
  sizes = resolve_mesh_shape(shape, len(devices))
  # jax.make_mesh orders devices by the physical topology (ICI rings on TPU, hosts on GPU).
  return jax.make_mesh(tuple(sizes.values()), axes.MESH_AXES,
                       axis_types=(AxisType.Auto,) * len(sizes), devices=devices)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Shards the leading (batch) axis over the data-parallel axes; the rest is replicated."""
  return NamedSharding(mesh, PartitionSpec((axes.DATA, axes.FSDP), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
