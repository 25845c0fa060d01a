"""The train step's guards and gradient accumulation: non-finite steps are skipped, counted and
stop the run; micro-batches give the whole-batch step."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import bouncing_shapes_unet
from jvdm.data import pipeline
from jvdm.diffusion import make_loss
from jvdm.models import get_model
from jvdm.parallel.mesh import make_mesh
from jvdm.training import loop
from jvdm.training.optimizer import make_optimizer
from jvdm.training.checkpoint import Checkpointer
from jvdm.training.state import abstract_train_state, create_sharded_state
from jvdm.training.step import make_train_step


def _tiny(**train):
  config = bouncing_shapes_unet.get_config("tiny")
  with config.unlocked():
    config.train.update(train)
  return config


def _step_and_state(config, microbatches=1, init_rng=None):
  mesh = make_mesh({"data": -1}, jax.devices()[:1])
  rules = config.mesh.logical_axis_rules
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    model = get_model(config)
    tx, schedule = make_optimizer(config.optim, config.train.num_steps)
    shape = (config.data.num_frames, config.data.height, config.data.width, 3)
    init_rng = jax.random.key(0) if init_rng is None else init_rng
    state, _, _ = create_sharded_state(model, tx, init_rng, shape, mesh, rules)
    step = jax.jit(
      make_train_step(
        model, make_loss(config.diffusion), tx, schedule, 0.99, microbatches=microbatches
      )
    )
  return step, state, shape


def _videos(shape, count=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (count,) + shape, dtype=np.uint8)


def test_a_non_finite_step_changes_nothing_but_the_counters():
  step, state, shape = _step_and_state(_tiny())
  rng = jax.random.key(1)
  state, metrics = step(state, {"video": _videos(shape)}, rng)
  assert np.isfinite(metrics["loss"]) and int(metrics["skipped_steps"]) == 0
  before = jax.device_get(state)
  poisoned = _videos(shape).astype(np.float32) / 127.5 - 1.0
  poisoned[3, 1, 2, 2, 0] = np.nan  # one NaN pixel in one video
  for count in (1, 2):
    state, metrics = step(state, {"video": poisoned}, rng)
    assert np.isnan(metrics["loss"])
    assert int(state.skipped_steps) == count and int(state.consecutive_skipped) == count
  after = jax.device_get(state)
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(getattr(before, name)), jax.tree.leaves(getattr(after, name))):
      np.testing.assert_array_equal(a, b)
  assert int(after.step) == int(before.step) + 2  # the step (and its data) still moves on
  state, metrics = step(state, {"video": _videos(shape, seed=1)}, rng)
  assert np.isfinite(metrics["loss"])
  assert int(state.skipped_steps) == 2 and int(state.consecutive_skipped) == 0
  moved = jax.tree.leaves(jax.device_get(state.params))
  assert any(not np.array_equal(a, b) for a, b in zip(moved, jax.tree.leaves(after.params)))


@pytest.mark.parametrize("microbatches", [4])
def test_micro_batches_equal_the_whole_batch(microbatches):
  config = _tiny()
  whole_step, state, shape = _step_and_state(config)
  micro_step, _, _ = _step_and_state(config, microbatches)
  batch, rng = {"video": _videos(shape)}, jax.random.key(2)
  whole_state, whole = whole_step(state, batch, rng)
  micro_state, micro = micro_step(state, batch, rng)
  np.testing.assert_allclose(micro["loss"], whole["loss"], rtol=1e-5)
  np.testing.assert_allclose(micro["grad_norm"], whole["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(micro_state.params), jax.tree.leaves(whole_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  with pytest.raises(Exception, match="does not split into train.microbatches=3"):
    _step_and_state(config, 3)[0](state, batch, rng)


class _NaNVideos:
  """A source of float videos that are all NaN."""

  def __init__(self, shape):
    self.shape = shape

  def __len__(self):
    return 64

  def __getitem__(self, index):
    return {"video": np.full(self.shape, np.nan, np.float32)}


def test_the_run_stops_after_k_consecutive_non_finite_steps_with_a_finite_checkpoint(
  tmp_path, monkeypatch
):
  config = _tiny(
    checkpoint_every=2,
    log_every=100,
    sample_every=0,  # 4 steps
    max_consecutive_skipped=3,
  )
  shape = (config.data.num_frames, config.data.height, config.data.width, 3)
  real = pipeline.make_dataset
  monkeypatch.setattr(
    loop, "make_dataset", lambda data_config: real(data_config, source=_NaNVideos(shape))
  )
  with pytest.raises(loop.NonFiniteLossError, match="3 consecutive steps up to step 3"):
    loop.train_and_evaluate(config, str(tmp_path), progress=False)
  # The checkpoint of step 2 holds the initial params: nothing non-finite was applied.
  loop_init_rng = jax.random.split(jax.random.key(config.seed))[0]  # as the loop draws it
  init_params = _step_and_state(config, init_rng=loop_init_rng)[1].params
  checkpointer = Checkpointer(tmp_path / "checkpoints", read_only=True)
  assert checkpointer.latest_step() == 2
  _, _, abstract = abstract_train_state(
    get_model(config),
    make_optimizer(config.optim, config.train.num_steps)[0],
    shape,
    make_mesh({"data": -1}),
    config.mesh.logical_axis_rules,
  )
  restored = checkpointer.restore(abstract)
  checkpointer.close()
  assert int(restored.skipped_steps) == 2
  for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(init_params)):
    np.testing.assert_array_equal(a, b)
