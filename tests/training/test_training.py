"""The train step, sharding, checkpoint resume and config checks on the tiny config; the step's
guards (non-finite steps skipped, counted, stopping the run) and gradient accumulation."""

import flax.linen as nn
import jax
import json
import numpy as np
import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.config_validation import validate_config
from jvdm.builders import get_model, make_loss
from jvdm.errors import CheckpointError, ConfigError, ShapeError
from jvdm.parallel.mesh import make_mesh
from jvdm.sampling import sample_from_workdir
from jvdm.training import loop
from jvdm.training.checkpoint import Checkpointer
from jvdm.training.loop import train_and_evaluate
from jvdm.training.optimizer import make_optimizer
from jvdm.training.state import abstract_train_state, create_sharded_state
from jvdm.training.step import make_train_step
from jvdm.workdir import load_trained_run
from step_equivalence import assert_8_devices_equal_1_device


def tiny_config(**overrides):
  config = bouncing_shapes_unet.get_config("tiny")
  config.unlock()
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for key in parents:
      node = node[key]
    node[leaf] = value
  config.lock()
  return config


@pytest.mark.parametrize(
  "mesh_shape",
  [
    {"data": -1},
    {"data": 2, "fsdp": 4},
    {"data": 2, "fsdp": 2, "tensor": 2},
  ],
)
def test_train_step_on_8_devices_equals_1_device(mesh_shape):
  assert_8_devices_equal_1_device(tiny_config(), mesh_shape)


def test_dit_train_step_on_8_devices_equals_1_device():
  """Data, FSDP and tensor parallel (heads and MLP width split in two) at once, with the
  blocks under nn.scan (params stacked on a "layers" axis), and cross-attention to captions
  through the text encoder, with caption dropout."""
  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.scan_layers = True
    config.model.causal = True
    config.model.condition = "caption"
    config.train.condition_dropout = 0.5
  assert_8_devices_equal_1_device(config, {"data": 2, "fsdp": 2, "tensor": 2})


def test_resumed_training_is_bitwise_equal_to_uninterrupted(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # relative workdirs, as users type them
  config = tiny_config(**{"train.checkpoint_every": 2, "diffusion.per_frame_noise": 0.5})
  straight = train_and_evaluate(config, "straight", progress=False)
  interrupted = train_and_evaluate(config, "resumed", stop_after_step=2, progress=False)
  assert int(interrupted.step) == 2
  resumed = train_and_evaluate(config, "resumed", progress=False)
  assert int(resumed.step) == 4
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(
      jax.tree.leaves(getattr(straight, name)), jax.tree.leaves(getattr(resumed, name))
    ):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # The losses logged after the restart are those of the uninterrupted run (same data order).
  def losses(workdir):
    lines = (tmp_path / workdir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]

  assert losses("straight") == losses("resumed")
  assert [step for step, _ in losses("straight")] == [1, 2, 3, 4]


# The tests below train the tiny config as it is (4 steps), so they share one compiled step
# through the persistent compilation cache (tests/conftest.py).
def test_workdir_outputs_and_sampling(tmp_path):
  config = tiny_config()
  workdir = tmp_path / "run"
  state = train_and_evaluate(config, str(workdir), progress=False)
  run = load_trained_run(workdir)  # what sampling and the benchmarks load
  assert run.step == config.train.num_steps and run.config.to_dict() == config.to_dict()
  assert isinstance(run.model, type(get_model(config)))
  for restored, trained in zip(jax.tree.leaves(run.params), jax.tree.leaves(state.ema_params)):
    np.testing.assert_array_equal(restored, trained)
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert {"loss", "grad_norm", "learning_rate"} <= set(records[0])
  assert "steps_per_second" in records[1]  # step 1 compiled; its time is not a rate
  assert (workdir / "samples" / "step_0000004.gif").exists()
  periodic = np.load(workdir / "samples" / "step_0000004.npz")["videos"]  # exact, for rescoring
  assert periodic.dtype == np.uint8 and periodic.shape[:2] == (config.train.num_sample_videos, 4)
  assert any(r.get("sample_valid_fraction") is not None for r in records)
  assert any(r.get("sample_motion_error_median_px") is not None for r in records)
  summary = sample_from_workdir(
    str(workdir), out=str(tmp_path / "out"), num_samples=3, seed=5, progress=False
  )
  videos = np.load(tmp_path / "out" / "samples.npz")["videos"]
  assert videos.shape == (3, 4, 16, 16, 3) and videos.dtype == np.uint8
  assert "synthetic_video_validity" in summary
  assert (tmp_path / "out" / "samples.mp4").exists() and (
    tmp_path / "out" / "metrics.json"
  ).exists()
  again = sample_from_workdir(
    str(workdir), out=str(tmp_path / "again"), num_samples=3, seed=5, progress=False
  )
  np.testing.assert_array_equal(np.load(tmp_path / "again" / "samples.npz")["videos"], videos)
  del again
  longer = sample_from_workdir(
    str(workdir), out=str(tmp_path / "longer"), num_samples=1, num_frames=6, steps=2, progress=False
  )
  assert np.load(tmp_path / "longer" / "samples.npz")["videos"].shape == (1, 6, 16, 16, 3)
  assert longer["steps"] == 2


def test_incompatible_workdir_is_refused(tmp_path):
  train_and_evaluate(tiny_config(), str(tmp_path), progress=False)
  with pytest.raises(
    CheckpointError, match=r"model.base_channels: workdir has 16, this config has 32"
  ):
    train_and_evaluate(tiny_config(**{"model.base_channels": 32}), str(tmp_path), progress=False)


def test_a_failed_start_does_not_block_the_workdir(tmp_path):
  with pytest.raises(ShapeError):
    train_and_evaluate(
      tiny_config(**{"data.height": 17, "model.patch_size": 2}), str(tmp_path), progress=False
    )
  state = train_and_evaluate(tiny_config(), str(tmp_path), progress=False)
  assert int(state.step) == 4


def test_sampling_a_missing_or_empty_workdir(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    sample_from_workdir(str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="not a jvdm workdir"):
    sample_from_workdir(str(tmp_path / "empty"))


def test_dit_heads_must_split_over_the_tensor_axis(tmp_path):
  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.num_heads = 3
    config.model.hidden_size = 48
    config.mesh.shape = {"data": 4, "tensor": 2}
  with pytest.raises(
    ConfigError, match="num_heads=3 is not divisible by the tensor axis of size 2"
  ):
    train_and_evaluate(config, str(tmp_path), progress=False)


@pytest.mark.parametrize(
  "overrides, error, match",
  [
    ({"data.name": "imagenet"}, ConfigError, "bouncing_shapes"),
    ({"train.num_steps": 0}, ConfigError, "train.num_steps"),
    ({"diffusion.prediction": "score"}, ConfigError, "'v'"),
    ({"data.height": 17, "model.patch_size": 2}, ShapeError, "divisible by .* got x of shape .*17"),
    ({"optim.warmup_steps": 10}, ConfigError, "warmup_steps=10"),
    ({"data.channels": 1}, ConfigError, "expected 3"),
    ({"data.batch_size": 4}, ConfigError, "micro-batch of 4 videos .* data-parallel size 8"),
    ({"data.name": "video_folder"}, ConfigError, "video_folder.root"),
    ({"mesh.shape": {"data": 3}}, ConfigError, "multiply to 3, but there are 8 devices"),
    (
      {"train.microbatches": 2},
      ConfigError,
      "microbatches=2\\) does not split over the data-parallel size 8",
    ),
  ],
)
def test_bad_configs_stop_with_a_clear_error(tmp_path, overrides, error, match):
  with pytest.raises(error, match=match):
    train_and_evaluate(tiny_config(**overrides), str(tmp_path), progress=False)


def test_long_variant_is_the_default_recipe_trained_longer():
  default = bouncing_shapes_unet.get_config().to_dict()
  long = bouncing_shapes_unet.get_config("long").to_dict()
  validate_config(bouncing_shapes_unet.get_config("long"))
  assert {k: v for k, v in long.items() if k != "train"} == {
    k: v for k, v in default.items() if k != "train"
  }
  assert long["train"]["num_steps"] > default["train"]["num_steps"]
  assert long["train"]["num_sample_videos"] == 32  # scored as the quality benchmark scores
  assert long["train"]["num_steps"] % long["train"]["sample_every"] == 0


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
  monkeypatch.setattr(loop, "make_source", lambda data_config: _NaNVideos(shape))
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
