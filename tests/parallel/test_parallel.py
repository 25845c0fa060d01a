"""Meshes within and across slices, and context parallelism: DiT attention with the token
sequence split over the `context` axis (all-to-all or ring) equals attention on one device,
forward and in a sharded train step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_dit
from jvdm.errors import ConfigError
from jvdm.builders import get_model
from jvdm.parallel.axes import BATCH, HEADS, LENGTH
from jvdm.parallel.context_attention import context_parallel_attention
from jvdm.parallel.mesh import make_mesh, split_mesh_shape
from step_equivalence import assert_8_devices_equal_1_device


def _config(**model):
  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.update(model)
  return config


@pytest.mark.parametrize(
  "method,collective", [("all_to_all", "all-to-all"), ("ring", "collective-permute")]
)
@pytest.mark.parametrize(
  "model", [{"causal": False}, {"causal": True}, {"layout": "windowed", "temporal_window": 2}]
)
def test_context_parallel_attention_equals_one_device(model, method, collective):
  x = jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 3))  # 4 frames x 16 tokens
  t = jnp.array([[0.1, 0.3, 0.5, 0.9], [0.6, 0.6, 0.2, 0.0]])
  plain = get_model(_config(**model))
  params = jax.jit(plain.init)(jax.random.key(1), x, t)["params"]
  leaves, tree = jax.tree.flatten(params)  # away from the zero-initialized gates
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(
    tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  )
  expected = jax.jit(plain.apply)({"params": params}, x, t)

  config = _config(context_parallel=method, **model)
  sharded = get_model(config)
  with (
    jax.set_mesh(make_mesh({"data": 2, "context": 4})),
    nn.logical_axis_rules(config.mesh.logical_axis_rules),
  ):
    apply = jax.jit(sharded.apply)
    out = apply({"params": params}, x, t)
    hlo = apply.lower({"params": params}, x, t).compile().as_text()
  np.testing.assert_allclose(out, expected, atol=2e-5)
  assert collective in hlo  # the sequence really is exchanged


@pytest.mark.parametrize("method", ["all_to_all", "ring"])
def test_context_parallel_train_step_on_8_devices_equals_1_device(method):
  config = _config(context_parallel=method, causal=True)
  with config.unlocked():
    config.mesh.shape = {"data": 2, "context": 4}
  assert_8_devices_equal_1_device(config, {"data": 2, "context": 4})


def test_ring_attention_gradients_equal_plain_attention():
  """Blockwise online softmax and the ring exchange, differentiated, on 8 context shards
  (heads 3: not divisible by the axis, which only ring attention allows)."""
  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 32, 3, 8))
  mask = jnp.tril(jnp.ones((32, 32), bool))  # every query block sees a different key pattern
  cotangent = jax.random.normal(jax.random.key(1), (2, 32, 3, 8))
  loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v) * cotangent)
  plain = loss(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask[None, None]))
  expected = jax.jit(jax.value_and_grad(plain, argnums=(0, 1, 2)))(q, k, v)
  rules = ((BATCH, None), (LENGTH, "context"), (HEADS, None))
  with jax.set_mesh(make_mesh({"context": 8})), nn.logical_axis_rules(rules):
    ring = loss(lambda q, k, v: context_parallel_attention(q, k, v, mask, method="ring"))
    got = jax.jit(jax.value_and_grad(ring, argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-5)


def test_context_parallel_needs_heads_that_split():
  config = _config(context_parallel="all_to_all")  # 4 heads
  model = get_model(config)
  x, t = jnp.zeros((1, 4, 16, 16, 3)), jnp.zeros((1,))
  with (
    jax.set_mesh(make_mesh({"context": 8})),
    nn.logical_axis_rules(config.mesh.logical_axis_rules),
  ):
    with pytest.raises(ConfigError, match="splits 4 heads into 8"):
      jax.eval_shape(model.init, jax.random.key(0), x, t)
  with pytest.raises(ConfigError, match="'factorized' layout"):
    get_model(_config(context_parallel="ring", layout="factorized")).init(jax.random.key(0), x, t)
  with pytest.raises(ConfigError, match="expected one of none, all_to_all, ring"):
    get_model(_config(context_parallel="rings"))


def test_mesh_shapes_within_and_across_slices():
  assert split_mesh_shape({"data": -1, "tensor": 2}, {"data": 2}, 16) == (
    {"data": 4, "fsdp": 1, "context": 1, "tensor": 2},
    {"data": 2, "fsdp": 1, "context": 1, "tensor": 1},
  )
  with pytest.raises(ConfigError, match="asks for 3 slices/processes, which do not split 8"):
    split_mesh_shape({"data": -1}, {"data": 3}, 8)
  with pytest.raises(ConfigError, match="positive sizes"):
    split_mesh_shape({"data": -1}, {"data": 0}, 8)
  # One process is one granule: 2 across processes cannot be laid out (the 2-process layout
  # is tested in test_multihost).
  with pytest.raises(ConfigError, match="across processes"):
    make_mesh({"data": -1}, dcn_shape={"data": 2})
