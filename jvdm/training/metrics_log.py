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

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self._enabled:
      return
    record = {"step": int(step), "time": time.time()}
    record.update({key: float(np.asarray(value)) for key, value in metrics.items()})
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
