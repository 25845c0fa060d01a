"""The train step, sharding, checkpoint resume and config checks, on the tiny config."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.config_validation import validate_config
from jvdm.data.captions import caption_tokens, null_condition_for
from jvdm.diffusion import make_loss
from jvdm.errors import CheckpointError, ConfigError, ShapeError
from jvdm.models import get_model
from jvdm.parallel.mesh import batch_sharding, make_mesh
from jvdm.sampling import sample_from_workdir
from jvdm.training.loop import train_and_evaluate
from jvdm.training.optimizer import make_optimizer
from jvdm.training.state import create_sharded_state
from jvdm.training.step import make_train_step


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


def _one_step(config, devices, batch_np, rng, mesh_shape=None):
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
        config.train.get("condition_dropout", 0.0),
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


@pytest.mark.parametrize(
  "mesh_shape",
  [
    {"data": -1},
    {"data": 2, "fsdp": 4},
    {"data": 2, "fsdp": 2, "tensor": 2},
  ],
)
def test_train_step_on_8_devices_equals_1_device(mesh_shape):
  _assert_8_devices_equal_1_device(tiny_config(), mesh_shape)


def _assert_8_devices_equal_1_device(config, mesh_shape):
  assert jax.device_count() == 8
  batch = np.random.default_rng(0).integers(0, 256, (8, 4, 16, 16, 3), dtype=np.uint8)
  params_1, metrics_1 = _one_step(config, jax.devices()[:1], batch, jax.random.key(1))
  params_8, metrics_8 = _one_step(config, jax.devices(), batch, jax.random.key(1), mesh_shape)
  np.testing.assert_allclose(metrics_1["loss"], metrics_8["loss"], rtol=1e-5)
  np.testing.assert_allclose(metrics_1["grad_norm"], metrics_8["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


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
  _assert_8_devices_equal_1_device(config, {"data": 2, "fsdp": 2, "tensor": 2})


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
  train_and_evaluate(config, str(workdir), progress=False)
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
    train_and_evaluate(tiny_config(**{"data.height": 17}), str(tmp_path), progress=False)
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
    ({"data.height": 17}, ShapeError, "divisible by .* got x of shape .*17"),
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
