"""A run's metrics, where people read them: JSON lines in `workdir/metrics.jsonl`, and the same
scalars (and the periodic sample videos) as TensorBoard event files in `workdir/tensorboard/`,
written by tensorboardX, so `tensorboard --logdir runs/` shows every run. Process 0 writes.

A resumed run first drops what the killed run logged after its checkpoint: those lines leave
`metrics.jsonl`, and the new event file starts with a purge marker at the restored step, so
TensorBoard hides the killed run's later points (tensorboardX's `purge_step`); the steps run
again are logged once.
"""

import io
import json
import time
from typing import Any, Mapping

import imageio.v3 as iio
import jax
import numpy as np
from etils import epath
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def read_records(workdir: str | epath.Path) -> list[dict[str, Any]]:
  """The records of `workdir/metrics.jsonl` (every process can read them: the workdir is
  shared)."""
  path = epath.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
  def __init__(self, workdir: str | epath.Path, resume_step: int = 0, redo_step: bool = False):
    """Opens the logs of `workdir` for a run that continues after step `resume_step` (0: a
    fresh run, which drops whatever an earlier attempt logged). `redo_step`: the evaluation
    of `resume_step` runs again, so its earlier records go too (the step's training record
    stays, and is written again to the new event file, which hides the step's old points)."""
    self.path = epath.Path(workdir) / METRICS_FILE
    self._enabled = jax.process_index() == 0
    self._writer = None
    if not self._enabled:
      return
    records = read_records(workdir)
    kept = [
      r
      for r in records
      if r["step"] < resume_step or (r["step"] == resume_step and (not redo_step or "loss" in r))
    ]
    temporary = self.path.parent / (self.path.name + ".tmp")
    temporary.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_text("".join(json.dumps(r) + "\n" for r in kept))
    temporary.replace(self.path)  # atomic: a crash here leaves the old file whole
    purge_step = resume_step if redo_step else resume_step + 1
    self._writer = SummaryWriter(
      str(epath.Path(workdir) / TENSORBOARD_DIR), purge_step=purge_step, flush_secs=30
    )
    for record in kept:
      if record["step"] >= purge_step:
        self._add_scalars(
          record["step"], {k: v for k, v in record.items() if k not in ("step", "time")}
        )

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Scalars, to both logs."""
    if not self._enabled:
      return
    scalars = {key: float(np.asarray(value)) for key, value in metrics.items()}
    self.write_record(step, scalars)
    self._add_scalars(step, scalars)

  def _add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for key, value in scalars.items():
      if np.isfinite(value):  # NaN (e.g. no valid sample to measure) stays in metrics.jsonl only
        self._writer.add_scalar(key, value, step)

  def write_record(self, step: int, record: Mapping[str, Any]) -> None:
    """Any JSON-serializable fields, to `metrics.jsonl` only."""
    if not self._enabled:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with self.path.open("a") as f:
      f.write(json.dumps({"step": int(step), "time": time.time(), **record}) + "\n")

  def write_video(self, step: int, tag: str, grid: np.ndarray, fps: int) -> None:
    """A uint8 video `[T, H, W, 3]` (e.g. a grid of samples) as an animated GIF in TensorBoard's
    Images tab."""
    if not self._enabled:
      return
    buffer = io.BytesIO()
    iio.imwrite(buffer, grid, extension=".gif", duration=1000 / fps, loop=0)
    frames, height, width, channels = grid.shape
    image = Summary.Image(
      height=height, width=width, colorspace=channels, encoded_image_string=buffer.getvalue()
    )
    self._writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
