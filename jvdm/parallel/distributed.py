"""Multi-host start-up: `jax.distributed.initialize` for multi-process runs, nothing otherwise.

Every process of a multi-host job runs the same program and calls `initialize_distributed`
before anything touches devices. The processes are found either from explicit arguments
(`train.py --coordinator_address=HOST:PORT --num_processes=N --process_id=I`) or from the
cluster's environment, which JAX reads itself:

- `JAX_COORDINATOR_ADDRESS`, `JAX_LOCAL_DEVICE_IDS`: JAX's own variables, read for
  coordinator_address and local_device_ids when those are None;
- Slurm (`srun`): `SLURM_JOB_ID`, `SLURM_STEP_NODELIST`, `SLURM_NTASKS`, `SLURM_PROCID`,
  `SLURM_LOCALID`; the coordinator is the first node of the step, on a port derived from the
  job id (or `JAX_COORDINATOR_PORT`);
- Open MPI (`mpirun`): `OMPI_MCA_orte_hnp_uri`, `OMPI_COMM_WORLD_SIZE`,
  `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_LOCAL_RANK`;
- Cloud TPU on GKE: `TPU_WORKER_HOSTNAMES` or `TPU_PROCESS_ADDRESSES` (the hosts of the slice,
  comma-separated; `TPU_WORKER_ID` is this host), and multislice `MEGASCALE_COORDINATOR_ADDRESS`.
  GCE TPU VMs keep the host list in the metadata server and are not detected: there the TPU
  runtime connects the hosts by itself, and the three arguments start `jax.distributed` too.

Slurm and Open MPI with a single task, and a single TPU host, are single-process runs.

CPU devices of different processes talk through gloo, whose rendezvous and collectives give up
after a fixed 30 s: the processes must reach each collective within 30 s of each other. A
persistent compilation cache breaks that: only process 0's programs hit it (the others' keys
differ), so process 0 runs ahead while the others compile.
"""

import logging
import os
from typing import Sequence

import jax

from jvdm.errors import ConfigError

logger = logging.getLogger(__name__)


def detected_cluster() -> str | None:
  """The multi-process cluster this process was launched in, by its environment; None if none."""
  env = os.environ
  if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "Open MPI"
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(name in env for name in slurm) and int(env["SLURM_NTASKS"]) > 1:
    return "Slurm"
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
  if "," in hosts or "MEGASCALE_COORDINATOR_ADDRESS" in env:
    return "Cloud TPU"
  return None


def _check_arguments(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  cluster: str | None,
) -> None:
  """Raises ConfigError for arguments that cannot describe a job."""
  given = (
    f"coordinator_address={coordinator_address!r}, num_processes={num_processes}, "
    f"process_id={process_id}"
  )
  if num_processes is not None and num_processes < 1:
    raise ConfigError(f"num_processes must be >= 1; got {given}.")
  if process_id is not None and process_id < 0:
    raise ConfigError(f"process_id must be >= 0; got {given}.")
  if num_processes is not None and process_id is not None and process_id >= num_processes:
    raise ConfigError(f"process_id must be in [0, num_processes); got {given}.")
  if coordinator_address is not None:
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or int(port) == 0:
      raise ConfigError(f"coordinator_address must be HOST:PORT with a port > 0; got {given}.")
  missing = [
    name
    for name, value in (
      ("coordinator_address", coordinator_address),
      ("num_processes", num_processes),
      ("process_id", process_id),
    )
    if value is None
  ]
  if missing and cluster is None:  # no cluster environment to fill them in
    raise ConfigError(
      f"A multi-process run needs coordinator_address, num_processes and process_id on every "
      f"process (or a Slurm, Open MPI or Cloud TPU environment); {' and '.join(missing)} "
      f"missing from {given} (JAX_COORDINATOR_ADDRESS is "
      f"{os.environ.get('JAX_COORDINATOR_ADDRESS')!r})."
    )


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  local_device_ids: int | Sequence[int] | None = None,
) -> bool:
  """Joins this process to a multi-process JAX job, when there is one.

  Must run before anything touches devices (`jax.devices()`, any computation). Arguments left
  None come from the environment (see the module docstring); with no arguments and no
  cluster environment it does nothing: a single-process run. Calling it again once
  initialized does nothing.

  Args:
    coordinator_address: `HOST:PORT` of process 0, where it starts the coordination service;
      every process passes the same one.
    num_processes: the number of processes in the job.
    process_id: this process's index, in [0, num_processes).
    local_device_ids: restricts this process to these local devices (default: all, or one
      per process under Slurm and Open MPI on GPUs).

  Returns:
    True if the job is multi-process through `jax.distributed` (now or from an earlier call),
    False for a single-process run.

  Raises:
    ConfigError: for arguments that are inconsistent or incomplete, naming them.
  """
  if jax.distributed.is_initialized():
    if num_processes not in (None, jax.process_count()) or process_id not in (
      None,
      jax.process_index(),
    ):
      raise ConfigError(
        f"jax.distributed is already initialized as process {jax.process_index()} of "
        f"{jax.process_count()}; got num_processes={num_processes}, process_id={process_id}."
      )
    return True
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  cluster = detected_cluster()
  if (coordinator_address, num_processes, process_id, cluster) == (None,) * 4:
    return False
  _check_arguments(coordinator_address, num_processes, process_id, cluster)
  # Cross-process collectives for CPU devices (gloo needs no MPI); other backends ignore it.
  if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  logger.info(
    "Joining a multi-process job (coordinator %s, process %s of %s%s)",
    coordinator_address or "from the environment",
    "auto" if process_id is None else process_id,
    "auto" if num_processes is None else num_processes,
    f", {cluster} environment" if cluster else "",
  )
  jax.distributed.initialize(coordinator_address, num_processes, process_id, local_device_ids)
  logger.info(
    "Process %d of %d: %d local devices, %d global devices (%s)",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.default_backend(),
  )
  return True
