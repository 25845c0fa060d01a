"""Shared by the training and parallelism tests: two train steps of a config on given devices,
and the check that 8 sharded devices give the 1-device result."""

import flax.linen as nn
import jax
import numpy as np

from jvdm.data.captions import caption_tokens
from jvdm.builders import get_model, make_loss, null_condition_for
from jvdm.parallel.mesh import batch_sharding, make_mesh
from jvdm.training.optimizer import make_optimizer
from jvdm.training.state import create_sharded_state
from jvdm.training.step import make_train_step


def one_train_step(config, devices, batch_np, rng, mesh_shape=None):
  mesh = make_mesh(mesh_shape or {"data": -1}, devices)
  rules = config.mesh.logical_axis_rules
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    model = get_model(config)
    tx, schedule = make_optimizer(config.optim, config.train.num_steps)
    video_shape = batch_np.shape[1:]
    null_condition = null_condition_for(config)
    state, shardings, _ = create_sharded_state(
      model, tx, jax.random.key(0), video_shape, mesh, rules, null_condition
    )
    step = jax.jit(
      make_train_step(
        model,
        make_loss(config.diffusion),
        tx,
        schedule,
        0.99,
        null_condition,
        config.train.condition_dropout,
      ),
      in_shardings=(shardings, None, None),
      out_shardings=(shardings, None),
    )
    batch = {"video": jax.device_put(batch_np, batch_sharding(mesh, batch_np.ndim))}
    if null_condition is not None:  # captions of 0 to 2 colours, the same on every run
      captions = np.stack([caption_tokens(range(i % 3), 2) for i in range(len(batch_np))])
      batch["caption"] = jax.device_put(captions, batch_sharding(mesh, 2))
    state, metrics = step(state, batch, rng)
    state, metrics = step(state, batch, rng)
    return jax.device_get(state.params), jax.device_get(metrics)


def assert_8_devices_equal_1_device(config, mesh_shape):
  assert jax.device_count() == 8
  batch = np.random.default_rng(0).integers(0, 256, (8, 4, 16, 16, 3), dtype=np.uint8)
  params_1, metrics_1 = one_train_step(config, jax.devices()[:1], batch, jax.random.key(1))
  params_8, metrics_8 = one_train_step(config, jax.devices(), batch, jax.random.key(1), mesh_shape)
  np.testing.assert_allclose(metrics_1["loss"], metrics_8["loss"], rtol=1e-5)
  np.testing.assert_allclose(metrics_1["grad_norm"], metrics_8["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
