"""The train state and its sharded creation (`jit(init, out_shardings=...)`)."""

import math
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # int32 scalar: train steps run (skipped non-finite ones included)
  params: Any
  ema_params: Any  # exponential moving average of params, used for sampling
  opt_state: optax.OptState
  skipped_steps: jnp.ndarray  # int32 scalar: steps skipped for a non-finite loss or gradient
  consecutive_skipped: jnp.ndarray  # int32 scalar: of those, how many in a row up to now


def _unbox(tree: Any) -> Any:
  """Drops flax's logical-axis boxes, keeping the values (no sharding constraint applied)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree.map(
    lambda x: x.unbox(apply_constraint=False) if is_box(x) else x, tree, is_leaf=is_box
  )


def _divisible_sharding(shape: tuple[int, ...], sharding: NamedSharding) -> NamedSharding:
  """Replicates the dimensions that the mesh axes assigned to them do not divide evenly.

  For example a first conv's 3 input channels stay whole on a 4-way `fsdp` axis, while the
  other params of the model are still split.
  """
  spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
  for dim, mesh_axes in enumerate(spec):
    names = (mesh_axes,) if isinstance(mesh_axes, str) else (mesh_axes or ())
    if shape[dim] % math.prod(sharding.mesh.shape[name] for name in names):
      spec[dim] = None
  return NamedSharding(sharding.mesh, PartitionSpec(*spec))


def abstract_train_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  video_shape: tuple[int, int, int, int],
  mesh: Mesh,
  rules,
  null_condition=None,
  denoiser: bool = True,
) -> tuple[Callable[[jax.Array], TrainState], Any, Any]:
  """The state's shapes and shardings, computed without allocating it.

  Args:
    model: the network: a denoiser `(x, t[, cond])`, or with `denoiser=False` a video
      autoencoder `(x)` (`Task.denoises`).
    tx: the optimizer.
    video_shape: `(T, H, W, C)` of one training video (or latent).
    mesh: the device mesh.
    rules: logical axis rules mapping the model's axis names to mesh axes.
    null_condition: for a conditional model, one example condition (e.g. the null caption).

  Returns:
    (init, shardings, abstract): `init(rng) -> TrainState` (unboxed), the state's
    NamedShardings, and a tree of ShapeDtypeStructs carrying them (the restore target).
  """
  dummy_video = jnp.zeros((1,) + tuple(video_shape), jnp.float32)
  if not denoiser:
    args, kwargs = (dummy_video,), {}
  else:  # (x, t, cond)
    args = (dummy_video, jnp.zeros((1,), jnp.float32))
    kwargs = {} if null_condition is None else {"cond": jnp.asarray(null_condition)[None]}

  def boxed_init(rng):
    params = model.init({"params": rng}, *args, **kwargs)["params"]
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
      step=zero,
      params=params,
      ema_params=params,
      opt_state=tx.init(params),
      skipped_steps=zero,
      consecutive_skipped=zero,
    )

  boxed = jax.eval_shape(boxed_init, jax.random.key(0))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  shardings = jax.tree.map(
    lambda s, sharding: _divisible_sharding(s.shape, sharding), _unbox(boxed), shardings
  )
  abstract = jax.tree.map(
    lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
    _unbox(boxed),
    shardings,
  )
  return (lambda rng: _unbox(boxed_init(rng))), shardings, abstract


def create_sharded_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  rng: jax.Array,
  video_shape: tuple[int, int, int, int],
  mesh: Mesh,
  rules,
  null_condition=None,
) -> tuple[TrainState, Any, Any]:
  """Initializes the state directly into its shardings: `jit(init, out_shardings=...)`.

  Returns:
    (state, shardings, abstract state); see `abstract_train_state`.
  """
  init, shardings, abstract = abstract_train_state(
    model, tx, video_shape, mesh, rules, null_condition
  )
  return jax.jit(init, out_shardings=shardings)(rng), shardings, abstract
