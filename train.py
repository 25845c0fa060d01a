"""Trains a video diffusion model.

  python train.py                                   # the default: a 3D UNet on bouncing shapes
  python train.py --config configs/bouncing_shapes_unet.py:tiny --workdir /tmp/run
  python train.py --config.train.num_steps=500      # any config field can be overridden
  python train.py --config configs/bouncing_shapes_vae.py          # a video VAE
  python train.py --config configs/bouncing_shapes_latent.py       # latent diffusion on it

Re-running with the same --workdir resumes from its latest checkpoint.

Multi-host: run the same command on every host (one process each), adding
  --coordinator_address=HOST0:PORT --num_processes=N --process_id=I
or nothing under Slurm (srun), Open MPI (mpirun) or Cloud TPU, where JAX reads them from the
environment (jvdm/parallel/distributed.py). All processes need the same --workdir (shared storage).
"""

import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from jvdm.cli import configure_console_logging
from jvdm.errors import JvdmError
from jvdm.parallel.distributed import initialize_distributed
from jvdm.training.loop import train_and_evaluate

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "configs", "bouncing_shapes_unet.py"
)
_CONFIG = config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Config file, optionally with ':variant'."
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Output folder; default runs/<config name> in the current folder."
)
# Multi-host runs; None: a single process, or what the cluster's environment says.
_COORDINATOR_ADDRESS = flags.DEFINE_string(
  "coordinator_address", None, "HOST:PORT of process 0, the same on every process."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 to N - 1.")


def default_workdir(config_argument: str) -> str:
  """runs/<config file name>[_<variant>], e.g. runs/bouncing_shapes_unet_tiny."""
  path, _, variant = config_argument.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", f"{name}_{variant}" if variant else name)


def parse_flags(argv):
  """absl's parser, with an unknown `--config.x` field reported as a one-line error."""
  try:
    return flags.FLAGS(argv)
  except AttributeError as error:  # raised by ml_collections for a field the config lacks
    overrides = [arg for arg in argv[1:] if arg.startswith("--config.")]
    message = str(error).strip("'\"").replace("\\n", " ").replace("\n", " ")
    sys.exit(f"error: unknown config field in {overrides}: {message}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = _WORKDIR.value or default_workdir(
    config_flags.get_config_filename(flags.FLAGS["config"])
  )
  try:
    # Before anything touches devices.
    initialize_distributed(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    print(f"jvdm: writing checkpoints, metrics.jsonl and samples/ to {os.path.abspath(workdir)}")
    train_and_evaluate(_CONFIG.value, workdir)
  except JvdmError as error:
    sys.exit(f"error: {error}")
  if jax.process_index() == 0 and _CONFIG.value.model.name == "vae":
    print(
      "jvdm: done. Train a latent diffusion model on this VAE with: python train.py "
      f"--config configs/bouncing_shapes_latent.py --config.latent.vae_workdir={workdir}"
    )
  elif jax.process_index() == 0:
    print(f"jvdm: done. Sample new videos with: python sample.py --workdir {workdir}")


if __name__ == "__main__":
  configure_console_logging()
  app.run(main, flags_parser=parse_flags)
