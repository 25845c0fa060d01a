"""Multi-host training: two processes on loopback (gloo) train as one 8-device process does."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import bouncing_shapes_unet
from jvdm.errors import ConfigError
from jvdm.parallel.distributed import detected_cluster, initialize_distributed
from jvdm.training.loop import train_and_evaluate
from subprocess_env import cpu_environment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "configs", "bouncing_shapes_unet.py") + ":tiny"
TIMEOUT_S = 300
# The tiny config as it is: 4 steps, checkpoints at 2 and 4, samples at the end.
CLUSTER_VARIABLES = (
  "JAX_COORDINATOR_ADDRESS",
  "SLURM_JOB_ID",
  "SLURM_STEP_NODELIST",
  "SLURM_NTASKS",
  "SLURM_PROCID",
  "SLURM_LOCALID",
  "OMPI_MCA_orte_hnp_uri",
  "OMPI_COMM_WORLD_SIZE",
  "TPU_WORKER_HOSTNAMES",
  "TPU_PROCESS_ADDRESSES",
  "MEGASCALE_COORDINATOR_ADDRESS",
)


@pytest.fixture(name="no_cluster")
def fixture_no_cluster(monkeypatch):
  """No cluster environment, and a jax.distributed.initialize that must not be reached."""
  for name in CLUSTER_VARIABLES:
    monkeypatch.delenv(name, raising=False)

  def fail(*args, **kwargs):
    raise AssertionError(f"jax.distributed.initialize{args, kwargs} was called")

  monkeypatch.setattr(jax.distributed, "initialize", fail)
  return monkeypatch


def test_single_process_run_initializes_nothing(no_cluster):
  assert detected_cluster() is None
  assert not initialize_distributed()


@pytest.mark.parametrize(
  "arguments, message",
  [
    (
      dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2),
      r"process_id must be in \[0, num_processes\).*num_processes=2, process_id=2",
    ),
    (
      dict(coordinator_address="127.0.0.1:1234", num_processes=0, process_id=0),
      "num_processes must be >= 1.*num_processes=0",
    ),
    (dict(num_processes=2, process_id=0), "coordinator_address missing.*num_processes=2"),
    (dict(coordinator_address="127.0.0.1:1234"), "num_processes and process_id missing"),
    (
      dict(coordinator_address="127.0.0.1", num_processes=2, process_id=0),
      "HOST:PORT.*'127.0.0.1'",
    ),
  ],
)
def test_inconsistent_arguments_are_config_errors(no_cluster, arguments, message):
  with pytest.raises(ConfigError, match=message):
    initialize_distributed(**arguments)


def test_cluster_environments_are_detected(no_cluster):
  slurm = dict(
    SLURM_JOB_ID="7", SLURM_STEP_NODELIST="node[1-2]", SLURM_PROCID="0", SLURM_LOCALID="0"
  )
  for name, value in slurm.items():
    no_cluster.setenv(name, value)
  no_cluster.setenv("SLURM_NTASKS", "1")
  assert detected_cluster() is None  # one task: a single-process run
  no_cluster.setenv("SLURM_NTASKS", "2")
  assert detected_cluster() == "Slurm"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_process(workdir, log_prefix, num_devices, coordinator, process_id):
  """train.py as process `process_id` of 2, with `num_devices` CPU devices, in a subprocess."""
  env = cpu_environment(num_devices)
  # No persistent compilation cache: process 1 cannot use the entries process 0 writes, so it
  # would compile while process 0 waits at the first collective, and gloo gives up after 30 s.
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  command = [
    sys.executable,
    os.path.join(REPO, "train.py"),
    f"--config={TINY}",
    f"--workdir={workdir}",
    # The data axis spans the two processes as DCN (make_mesh's hybrid layout).
    "--config.mesh.dcn_shape.data=2",
    f"--coordinator_address={coordinator}",
    "--num_processes=2",
    f"--process_id={process_id}",
  ]
  with open(f"{log_prefix}.out", "w") as stdout, open(f"{log_prefix}.err", "w") as stderr:
    return subprocess.Popen(
      command, cwd=workdir.parent, env=env, stdout=stdout, stderr=stderr, text=True
    )


def _losses(workdir):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in records if "loss" in r], [r for r in records if "sample_valid_fraction" in r]


@pytest.mark.e2e
def test_two_processes_train_like_one_with_the_same_devices(tmp_path):
  multi, single = tmp_path / "two_processes", tmp_path / "one_process"
  num_devices = jax.device_count()  # 8, from conftest.py; split between the two processes
  coordinator = f"127.0.0.1:{_free_port()}"
  processes = [
    _start_process(multi, tmp_path / f"process_{i}", num_devices // 2, coordinator, i)
    for i in range(2)
  ]
  try:
    # Meanwhile the reference: the same job in this process, on the same number of devices.
    config = bouncing_shapes_unet.get_config("tiny")
    train_and_evaluate(config, str(single), progress=False)
    for process in processes:
      process.wait(timeout=TIMEOUT_S)
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  logs = [
    ((tmp_path / f"process_{i}.out").read_text(), (tmp_path / f"process_{i}.err").read_text())
    for i in range(2)
  ]
  report = "\n".join(
    f"--- process {i} (exit {p.returncode}) stderr:\n{logs[i][1][-4000:]}"
    for i, p in enumerate(processes)
  )
  assert [p.returncode for p in processes] == [0, 0], report

  # metrics.jsonl, samples and the final hint come from process 0 only; both processes checkpoint.
  steps, samples = _losses(multi)
  assert [r["step"] for r in steps] == [1, 2, 3, 4], steps
  assert [r["step"] for r in samples] == [4] and "sample_valid_fraction" in samples[0], samples
  assert (multi / "samples" / "step_0000004.gif").exists()
  assert "jvdm: done" in logs[0][0] and "jvdm: done" not in logs[1][0], logs
  for step in ("2", "4"):
    saved = sorted(
      p.name
      for p in (multi / "checkpoints" / step / "data_iterator").iterdir()
      if p.suffix == ".json"
    )
    assert saved == ["process_0-of-2.json", "process_1-of-2.json"], saved

  # The same global batch on the same number of devices: the same training.
  reference, _ = _losses(single)
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(
      [r[key] for r in steps], [r[key] for r in reference], rtol=1e-5, err_msg=key
    )
