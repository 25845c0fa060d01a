"""Checkpoint keep policies, stopping on a preemption notice, restoring onto another mesh."""

import os
import shutil
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_unet
from jvdm.builders import get_model
from jvdm.parallel.mesh import make_mesh
from jvdm.training import loop
from jvdm.training.checkpoint import Checkpointer
from jvdm.training.optimizer import make_optimizer
from jvdm.training.preemption import PreemptionNotice
from jvdm.training.state import abstract_train_state


def test_keep_the_latest_and_every_kth_checkpoint(tmp_path):
  checkpointer = Checkpointer(tmp_path, keep=2, keep_every=3)
  for step in range(1, 9):
    checkpointer.save(step, {"x": jnp.full((2,), step)})
  checkpointer.wait_until_finished()
  assert checkpointer.all_steps() == [3, 6, 7, 8]
  checkpointer.close()


def test_sigterm_sets_the_notice_and_the_old_handler_comes_back():
  before = signal.getsignal(signal.SIGTERM)
  with PreemptionNotice() as notice:
    assert not notice.received
    os.kill(os.getpid(), signal.SIGTERM)
    assert notice.received
  assert signal.getsignal(signal.SIGTERM) is before


def test_a_preempted_run_saves_at_the_next_step_and_stops(tmp_path, monkeypatch):
  config = bouncing_shapes_unet.get_config("tiny")
  with config.unlocked():
    config.train.update(checkpoint_every=100, log_every=100, sample_every=0)  # 4 steps
  original = Checkpointer.reached_preemption

  def sigterm_at_step_2(self, step):  # the signal arrives while step 2 is being run
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return original(self, step)

  monkeypatch.setattr(Checkpointer, "reached_preemption", sigterm_at_step_2)
  state = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert int(state.step) == 3  # noticed before step 3's save decision
  checkpointer = Checkpointer(tmp_path / "checkpoints", read_only=True)
  assert checkpointer.all_steps() == [3]
  checkpointer.close()  # resuming from it is what the resume and SIGKILL tests check


@pytest.mark.parametrize("mesh_shape", [{"data": 4}, {"data": 1, "fsdp": 4}])
def test_a_checkpoint_from_8_devices_restores_onto_4_and_onto_fsdp(tmp_path, mesh_shape):
  """Saved data-parallel over 8 devices; restored onto 4 devices, data-parallel or FSDP (params
  and optimizer state split over the fsdp axis): the values are the same."""
  config = bouncing_shapes_unet.get_config("tiny")
  model = get_model(config)
  tx, _ = make_optimizer(config.optim, config.train.num_steps)
  rules = config.mesh.logical_axis_rules
  shape = (config.data.num_frames, config.data.height, config.data.width, 3)

  def abstract_on(mesh):
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return abstract_train_state(model, tx, shape, mesh, rules)

  mesh_8 = make_mesh({"data": 8})
  init, shardings, _ = abstract_on(mesh_8)
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
  state = state.replace(params=jax.tree.map(lambda p: p + 0.5, state.params))  # not the init
  checkpointer = Checkpointer(tmp_path)
  checkpointer.save(1, state)
  checkpointer.wait_until_finished()

  mesh_4 = make_mesh(mesh_shape, jax.devices()[:4])
  _, shardings_4, abstract_4 = abstract_on(mesh_4)
  restored = checkpointer.restore(abstract_4)
  checkpointer.close()
  for saved, loaded, sharding in zip(
    jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(shardings_4)
  ):
    assert loaded.sharding == sharding and len(loaded.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
  if "fsdp" in mesh_shape:  # FSDP really splits something
    assert any(s.spec and any(axis for axis in s.spec) for s in jax.tree.leaves(shardings_4))


def test_a_half_written_checkpoint_is_ignored(tmp_path):
  """A kill during an async save leaves orbax's temporary folder; it is never loaded, and the
  next save of the same step still works."""
  checkpointer = Checkpointer(tmp_path)
  for step in (2, 4):
    checkpointer.save(step, {"x": jnp.full((64,), float(step))})
  checkpointer.wait_until_finished()
  checkpointer.close()
  partial = tmp_path / "6.orbax-checkpoint-tmp-1795500000"
  shutil.copytree(tmp_path / "4", partial)
  files = sorted(p for p in partial.rglob("*") if p.is_file())
  for path in files[len(files) // 2 :]:  # the second half of the files never got written
    path.unlink()

  checkpointer = Checkpointer(tmp_path)
  assert checkpointer.latest_step() == 4
  restored = checkpointer.restore({"x": jax.ShapeDtypeStruct((64,), jnp.float32)})
  np.testing.assert_array_equal(restored["x"], np.full((64,), 4.0))
  checkpointer.save(6, {"x": jnp.full((64,), 6.0)})
  checkpointer.wait_until_finished()
  assert checkpointer.latest_step() == 6
  checkpointer.close()
