"""Appends metrics as JSON lines to `workdir/metrics.jsonl` (process 0 only)."""

import json
import time
from typing import Any, Mapping

import jax
import numpy as np
from etils import epath


class MetricsLog:
  def __init__(self, path: str | epath.Path):
    self.path = epath.Path(path)
    self._enabled = jax.process_index() == 0

  def drop_after(self, step: int) -> None:
    """Removes records of steps after `step`: a resumed run logs those steps again."""
    if not self._enabled or not self.path.exists():
      return
    lines = self.path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    temporary = self.path.parent / (self.path.name + ".tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    temporary.replace(self.path)  # atomic: a crash here leaves the old file whole

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self._enabled:
      return
    record = {"step": int(step), "time": time.time()}
    record.update({key: float(np.asarray(value)) for key, value in metrics.items()})
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
