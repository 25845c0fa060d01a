"""Nothing lost, nothing logged twice: runs interrupted before their first checkpoint, during
their end-of-run samples, or with a damaged latest checkpoint end as an uninterrupted run
does; metrics.jsonl, the TensorBoard event files, the keep policy and the count of skipped
video files hold across resumes."""

import json
import logging

import jax
import numpy as np
import pytest

import jvdm.io as video_io
from configs import bouncing_shapes_unet
from jvdm.training import evaluation, loop
from jvdm.training.checkpoint import CHECKPOINT_DIR
from jvdm.training.loop import train_and_evaluate
from jvdm.workdir import load_trained_run
from run_records import tensorboard_steps, untimed_records


def _config(**train):
  """The tiny config (4 steps, checkpoints at 2 and 4, samples at the end)."""
  config = bouncing_shapes_unet.get_config("tiny")
  with config.unlocked():
    config.train.update(train)
  return config


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


class _Interrupted(Exception):
  """Stands for the kill of the process."""


@pytest.fixture(name="straight", scope="module")
def fixture_straight(tmp_path_factory):
  """The uninterrupted run everything below must equal."""
  workdir = tmp_path_factory.mktemp("straight") / "run"
  state = train_and_evaluate(_config(), str(workdir), progress=False)
  return workdir, state


def _assert_same_run(workdir, straight):
  straight_dir, straight_state = straight
  assert untimed_records(workdir) == untimed_records(straight_dir)
  assert tensorboard_steps(workdir, "loss") == [1, 2, 3, 4]
  assert tensorboard_steps(workdir, "sample_valid_fraction") == [4]
  assert tensorboard_steps(workdir, "samples") == [4]  # the sample grid, as an animated GIF
  run = load_trained_run(workdir)
  for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(straight_state.ema_params)):
    np.testing.assert_array_equal(a, b)


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(
  tmp_path, monkeypatch, straight
):
  workdir = tmp_path / "run"
  assemble = loop._BatchAssembler.__call__

  def dies_at_step_3(self, local_batch, step):  # steps 1 and 2 run, then the kill
    # (in the loop's own thread: a source that raised would be read ahead by grain's threads)
    if step == 3:
      raise _Interrupted
    return assemble(self, local_batch, step)

  monkeypatch.setattr(loop._BatchAssembler, "__call__", dies_at_step_3)
  with pytest.raises(_Interrupted):
    train_and_evaluate(_config(checkpoint_every=4), str(workdir), progress=False)
  assert [r["step"] for r in _records(workdir)] == [1, 2]  # logged, never checkpointed
  assert not list((workdir / CHECKPOINT_DIR).iterdir())
  monkeypatch.undo()
  train_and_evaluate(_config(), str(workdir), progress=False)
  _assert_same_run(workdir, straight)


def test_a_run_killed_during_its_final_samples_writes_them_on_resume(
  tmp_path, monkeypatch, straight
):
  workdir = tmp_path / "run"

  def killed(*args, **kwargs):
    raise _Interrupted

  monkeypatch.setattr(evaluation, "write_samples", killed)
  with pytest.raises(_Interrupted):
    train_and_evaluate(_config(), str(workdir), progress=False)
  assert not (workdir / "samples" / "step_0000004.npz").exists()
  monkeypatch.undo()
  train_and_evaluate(_config(), str(workdir), progress=False)  # nothing to train: samples
  assert (workdir / "samples" / "step_0000004.npz").exists()
  _assert_same_run(workdir, straight)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, straight):
  workdir = tmp_path / "run"
  train_and_evaluate(_config(), str(workdir), progress=False)
  damaged = workdir / CHECKPOINT_DIR / "4"
  rng = np.random.default_rng(0)
  arrays = [p for p in (damaged / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
  assert arrays, list((damaged / "state").rglob("*"))
  for path in arrays:
    path.write_bytes(rng.bytes(path.stat().st_size))

  with caplog.at_level(logging.WARNING, logger="jvdm"):
    assert load_trained_run(workdir).step == 2  # sampling reads the newest intact one
  assert str(damaged) in caplog.text and "Restored step 2" in caplog.text
  assert damaged.exists()  # sampling only reads

  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="jvdm"):
    state = train_and_evaluate(_config(), str(workdir), progress=False)
  assert str(damaged) in caplog.text and "Restored step 2" in caplog.text
  assert int(state.step) == 4 and (workdir / CHECKPOINT_DIR / "4").exists()  # saved again
  assert len(list((workdir / "damaged_checkpoints").iterdir())) == 1  # set aside, not deleted
  straight_state = straight[1]
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(straight_state.params)):
    np.testing.assert_array_equal(a, b)  # steps 3 and 4 trained again, as in the straight run


def test_no_intact_checkpoint_is_an_error_naming_them(tmp_path):
  workdir = tmp_path / "run"
  train_and_evaluate(_config(), str(workdir), progress=False)
  for step in ("2", "4"):
    for path in (workdir / CHECKPOINT_DIR / step / "state").rglob("*"):
      if path.is_file() and "/d/" in str(path):
        path.write_bytes(b"\0" * path.stat().st_size)
  with pytest.raises(Exception, match="No checkpoint .* could be read.*step 4.*step 2"):
    load_trained_run(workdir)


def test_the_keep_policy_holds_after_a_resume(tmp_path):
  """A kill between a save and orbax's deletion of the oldest checkpoint leaves one too many
  (here copied in by hand); the resumed run deletes it."""
  workdir = tmp_path / "run"
  config = _config(keep_checkpoints=1, checkpoint_every=1, num_steps=4, sample_every=0)
  train_and_evaluate(config, str(workdir), stop_after_step=3, progress=False)
  checkpoints = workdir / CHECKPOINT_DIR
  assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["3"]
  import shutil  # pylint: disable=g-import-not-at-top

  shutil.copytree(checkpoints / "3", checkpoints / "2")  # the leftover
  train_and_evaluate(config, str(workdir), progress=False)
  assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["4"]


def test_skipped_video_files_are_counted_in_metrics_jsonl(tmp_path, caplog):
  root = tmp_path / "videos"
  frames = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
  for name in ("a", "b", "c"):
    video_io.write_video(root / f"{name}.mp4", frames)
  (root / "d_corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
  config = _config(num_steps=2, sample_every=0)
  with config.unlocked():
    config.data.name = "video_folder"
    config.data.video_folder.root = str(root)
  with caplog.at_level(logging.WARNING, logger="jvdm"):
    train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  records = _records(tmp_path / "run")
  counts = [r["data_skipped_files"] for r in records if "loss" in r]
  assert counts == [1, 1], records
  listed = [r["skipped_video_files"] for r in records if "skipped_video_files" in r]
  assert len(listed) == 1 and list(listed[0]) == [str(root / "d_corrupt.mp4")], listed
  assert "Skipped 1 video file(s)" in caplog.text and "d_corrupt.mp4" in caplog.text
