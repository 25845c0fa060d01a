"""Shared by the resume tests: a workdir's metrics.jsonl without its timing fields, and the steps
TensorBoard shows for a tag."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jvdm.training.metrics_log import TENSORBOARD_DIR

TIMING = {"time", "steps_per_second", "examples_per_second", "evaluation_seconds"}


def untimed_records(workdir) -> list[dict]:
  """The records of `workdir/metrics.jsonl` without the fields that measure time."""
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  timed = lambda key: key in TIMING or key.endswith("_per_s") or key.startswith("mfu")
  return [{k: v for k, v in json.loads(line).items() if not timed(k)} for line in lines]


def tensorboard_steps(workdir, tag: str) -> list[int]:
  """The steps of a scalar or image `tag` as TensorBoard shows them (the points a killed run
  logged after its checkpoint purged)."""
  events = EventAccumulator(str(workdir / TENSORBOARD_DIR), size_guidance={"images": 0})
  events.Reload()
  if tag in events.Tags()["scalars"]:
    return [event.step for event in events.Scalars(tag)]
  return [event.step for event in events.Images(tag)]
