"""The two scripts as a user runs them: train a few steps, then sample (subprocesses)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from run_records import tensorboard_steps, untimed_records
from subprocess_env import cpu_environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "bouncing_shapes_unet.py") + ":tiny"


def _env():
  """2 CPU devices, and the test session's compilation cache: every run here trains the tiny
  config as it is (4 steps), so only the first compiles the step."""
  import jax  # pylint: disable=g-import-not-at-top

  return cpu_environment(
    2,
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
  )


def run(*args, cwd):
  return subprocess.run(
    [sys.executable, *args],
    cwd=cwd,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


@pytest.mark.e2e
def test_train_then_sample(tmp_path):
  workdir = tmp_path / "run"
  train = run(
    os.path.join(REPO, "train.py"), f"--config={TINY}", f"--workdir={workdir}", cwd=tmp_path
  )
  assert train.returncode == 0, train.stderr[-3000:]
  assert str(workdir) in train.stdout
  assert (workdir / "checkpoints").is_dir() and (workdir / "metrics.jsonl").exists()

  sample = run(
    os.path.join(REPO, "sample.py"),
    f"--workdir={workdir}",
    "--num_samples=2",
    "--steps=3",
    f"--out={tmp_path / 'out'}",
    cwd=tmp_path,
  )
  assert sample.returncode == 0, sample.stderr[-3000:]
  videos = np.load(tmp_path / "out" / "samples.npz")["videos"]
  assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
  assert (tmp_path / "out" / "samples.gif").stat().st_size > 0

  long = run(
    os.path.join(REPO, "sample.py"),
    f"--workdir={workdir}",
    "--num_samples=1",
    "--steps=3",
    "--long=freenoise",
    "--num_frames=10",
    f"--out={tmp_path / 'long'}",
    cwd=tmp_path,
  )
  assert long.returncode == 0, long.stderr[-3000:]
  assert np.load(tmp_path / "long" / "samples.npz")["videos"].shape == (1, 10, 16, 16, 3)
  assert '"long"' in long.stdout and "freenoise" in long.stdout

  short = run(
    os.path.join(REPO, "sample.py"),
    f"--workdir={workdir}",
    "--long=fifo",
    "--num_frames=6",
    "--steps=3",
    f"--out={tmp_path / 'short'}",
    cwd=tmp_path,
  )
  assert short.returncode != 0
  assert "error:" in short.stderr and "queue" in short.stderr and "Traceback" not in short.stderr


@pytest.mark.e2e
def test_errors_are_one_line_messages_not_tracebacks(tmp_path):
  typo = run(
    os.path.join(REPO, "train.py"),
    f"--config={TINY}",
    f"--workdir={tmp_path / 'w'}",
    "--config.model.base_chanels=8",
    cwd=tmp_path,
  )
  assert typo.returncode != 0
  assert "unknown config field" in typo.stderr and "base_channels" in typo.stderr
  assert "Traceback" not in typo.stderr

  missing = run(os.path.join(REPO, "sample.py"), f"--workdir={tmp_path / 'nowhere'}", cwd=tmp_path)
  assert missing.returncode != 0
  assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def _final_params(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(steps[-1]) / "state")
  return steps[-1], restored["params"]


@pytest.mark.e2e
def test_sigkilled_run_resumes_and_ends_bitwise_equal(tmp_path):
  args = [os.path.join(REPO, "train.py"), f"--config={TINY}", "--config.train.checkpoint_every=1"]
  env = _env()
  # The uninterrupted run goes on beside the killed one (the machine has 2 cores).
  straight = subprocess.Popen(
    [sys.executable, *args, f"--workdir={tmp_path / 'straight'}"],
    cwd=tmp_path,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )

  killed_dir = tmp_path / "killed"
  process = subprocess.Popen(
    [sys.executable, *args, f"--workdir={killed_dir}"],
    cwd=tmp_path,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    import time  # pylint: disable=g-import-not-at-top

    deadline = time.time() + 300
    checkpoints = killed_dir / "checkpoints"
    while time.time() < deadline and process.poll() is None:
      if checkpoints.is_dir() and any(p.name == "2" for p in checkpoints.iterdir()):
        break
      time.sleep(0.05)
    process.kill()  # SIGKILL: no chance to clean up, possibly mid-save
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    completed = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()]
    assert 2 <= max(completed) < 4
  finally:
    if process.poll() is None:
      process.kill()
  resumed = run(*args, f"--workdir={killed_dir}", cwd=tmp_path)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  straight_stderr = straight.communicate(timeout=600)[1]
  assert straight.returncode == 0, straight_stderr[-3000:]

  records = map(json.loads, (killed_dir / "metrics.jsonl").read_text().splitlines())
  logged = [record["step"] for record in records if "loss" in record]
  assert logged == sorted(set(logged)), "a resumed run logged some steps twice"
  # Nothing lost or repeated: the same records (timing aside), curves, samples and keep policy.
  assert untimed_records(killed_dir) == untimed_records(tmp_path / "straight")
  assert tensorboard_steps(killed_dir, "loss") == [1, 2, 3, 4]
  assert (killed_dir / "samples" / "step_0000004.npz").exists()
  assert len([p for p in (killed_dir / "checkpoints").iterdir() if p.name.isdigit()]) == 3
  step_a, params_a = _final_params(tmp_path / "straight")
  step_b, params_b = _final_params(killed_dir)
  assert step_a == step_b == 4
  import jax  # pylint: disable=g-import-not-at-top

  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
