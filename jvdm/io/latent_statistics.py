"""The statistics latent diffusion normalizes a VAE's latents with (`shift`, `scale`), computed
when the VAE is evaluated and kept beside its checkpoints as `latent_statistics.json`."""

import json

import numpy as np
from etils import epath

from jvdm.errors import CheckpointError

LATENT_STATISTICS_FILE = "latent_statistics.json"


def latent_statistics(latents: np.ndarray) -> dict[str, float]:
  """`shift` (mean) and `scale` (1 / std) of a sample of latents, over all their elements."""
  latents = np.asarray(latents, np.float64)
  return {"shift": float(latents.mean()), "scale": float(1.0 / max(latents.std(), 1e-6))}


def save_latent_statistics(
  workdir: str | epath.Path, statistics: dict[str, float], step: int
) -> None:
  path = epath.Path(workdir) / LATENT_STATISTICS_FILE
  temporary = path.parent / (LATENT_STATISTICS_FILE + ".tmp")
  temporary.write_text(json.dumps({**statistics, "step": int(step)}, indent=2))
  temporary.replace(path)  # atomic


def load_latent_statistics(workdir: str | epath.Path) -> dict[str, float]:
  path = epath.Path(workdir) / LATENT_STATISTICS_FILE
  if not path.exists():
    raise CheckpointError(
      f"The VAE workdir {workdir} has no {LATENT_STATISTICS_FILE}: train the "
      "VAE until its first evaluation (train.sample_every, or the end)."
    )
  return json.loads(path.read_text())
