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

import dataclasses
import os
from typing import Sequence

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from jvdm.cli import parse_flags, reported_errors, run_script
from jvdm.config_validation import validate_config
from jvdm.parallel.distributed import initialize_distributed
from jvdm.training.loop import train_and_evaluate

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "configs", "bouncing_shapes_unet.py"
)


@dataclasses.dataclass(frozen=True)
class Arguments:
  config: ml_collections.ConfigDict
  workdir: str
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None


def parse_arguments(argv: Sequence[str]) -> Arguments:
  """The command line, read into its own flags; a bad flag, config file, variant or field
  exits with one line (`jvdm.cli`). Does not touch devices."""
  flag_values = flags.FlagValues()
  define = dict(flag_values=flag_values)
  with reported_errors(argv):
    # config_flags reads the file and applies the --config.* overrides of argv right here.
    config = config_flags.DEFINE_config_file(
      "config",
      _DEFAULT_CONFIG,
      "Config file, optionally with ':variant'.",
      sys_argv=list(argv),
      **define,
    )
    workdir = flags.DEFINE_string(
      "workdir", None, "Output folder; default runs/<config name> in the current folder.", **define
    )
    # Multi-host runs; None: a single process, or what the cluster's environment says.
    coordinator = flags.DEFINE_string(
      "coordinator_address", None, "HOST:PORT of process 0, the same on every process.", **define
    )
    num_processes = flags.DEFINE_integer("num_processes", None, "Processes in the job.", **define)
    process_id = flags.DEFINE_integer(
      "process_id", None, "This process's index, 0 to N - 1.", **define
    )
    parse_flags(flag_values, argv)
    config.value.get("seed")  # a config file that could not be read raises here, not later
    return Arguments(
      config=config.value,
      workdir=workdir.value
      or default_workdir(config_flags.get_config_filename(flag_values["config"])),
      coordinator_address=coordinator.value,
      num_processes=num_processes.value,
      process_id=process_id.value,
    )


def default_workdir(config_argument: str) -> str:
  """runs/<config file name>[_<variant>], e.g. runs/bouncing_shapes_unet_tiny."""
  path, _, variant = config_argument.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", f"{name}_{variant}" if variant else name)


def main(argv: Sequence[str]) -> None:
  arguments = parse_arguments(argv)
  config, workdir = arguments.config, arguments.workdir
  # Before anything touches devices.
  initialize_distributed(
    arguments.coordinator_address, arguments.num_processes, arguments.process_id
  )
  validate_config(config)  # every field, before anything is announced or created
  print(f"jvdm: writing checkpoints, metrics.jsonl and samples/ to {os.path.abspath(workdir)}")
  train_and_evaluate(config, workdir)
  if jax.process_index() == 0 and config.model.name == "vae":
    print(
      "jvdm: done. Train a latent diffusion model on this VAE with: python train.py "
      f"--config configs/bouncing_shapes_latent.py --config.latent.vae_workdir={workdir}"
    )
  elif jax.process_index() == 0:
    print(f"jvdm: done. Sample new videos with: python sample.py --workdir {workdir}")


if __name__ == "__main__":
  run_script(main)
