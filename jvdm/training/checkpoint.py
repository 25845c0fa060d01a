"""Checkpoints: the train state and the data iterator saved together by orbax.

Saves are asynchronous and atomic: orbax writes into a temporary folder and renames it when
complete, so a run killed during a save resumes from the previous complete checkpoint.
"""

import logging
import time
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from jvdm.errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"  # inside the workdir


def _first_line(error: Exception) -> str:
  return (
    f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
  )


class Checkpointer:
  """Saves and restores (state, data iterator) pairs under `directory`."""

  def __init__(
    self, directory: str | epath.Path, keep: int = 3, read_only: bool = False, keep_every: int = 0
  ):
    """`keep` latest checkpoints are kept, and with `keep_every` > 0 also every checkpoint whose
    step is a multiple of it (for evaluating a run's history)."""
    self.directory = epath.Path(directory).resolve()  # orbax requires absolute paths
    self.keep, self.keep_every, self.read_only = keep, keep_every, read_only
    policy = ocp.checkpoint_managers.LatestN(keep)
    if keep_every:
      policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [policy, ocp.checkpoint_managers.EveryNSteps(keep_every)]
      )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=policy,
      enable_async_checkpointing=not read_only,
      create=not read_only,
      read_only=read_only,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def reached_preemption(self, step: int) -> bool:
    """True on every process once a preemption notice (SIGTERM to any process of a
    `jax.distributed` job) reaches its sync point at `step`; False for a single process,
    which `jvdm.training.preemption.PreemptionNotice` covers."""
    return self._manager.reached_preemption(step)

  def save(self, step: int, state: Any, data_iterator: Any = None) -> None:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data_iterator"] = grain.checkpoint.CheckpointSave(data_iterator)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state: Any, data_iterator: Any = None, step: int | None = None) -> Any:
    """Restores the state (into the shardings of `abstract_state`) and the iterator in place.

    A damaged latest checkpoint (unreadable array files) is set aside and the newest intact
    one is restored, with a warning naming both; CheckpointError only when none is intact.

    Args:
      abstract_state: a tree of `jax.ShapeDtypeStruct` with shardings, matching the saved one.
      data_iterator: a grain iterator whose position is restored; None to skip it.
      step: which step; default the latest.
    """
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data_iterator"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored, _ = self._restore_newest_intact(ocp.args.Composite(**items), step, "state")
    return restored["state"]

  def _restore_newest_intact(self, args: Any, step: int | None, what: str) -> tuple[Any, int]:
    steps = sorted(self.all_steps(), reverse=True) if step is None else [step]
    if not steps:
      raise CheckpointError(f"No checkpoint found in {self.directory}.")
    failures = []
    for candidate in steps:
      try:
        restored = self._manager.restore(candidate, args=args)
      except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many
        failures.append((candidate, error))
        continue
      if failures:
        damaged = ", ".join(f"{self.directory / str(s)} ({_first_line(e)})" for s, e in failures)
        logger.warning(
          "Checkpoint(s) %s could not be read: damaged? Restored step %d (%s) instead.",
          damaged,
          candidate,
          self.directory / str(candidate),
        )
        if not self.read_only:
          self._set_aside([s for s, _ in failures])
      logger.info("Restored the %s of step %d from %s", what, candidate, self.directory)
      return restored, candidate
    details = "; ".join(
      f"step {s} ({self.directory / str(s)}): {_first_line(e)}" for s, e in failures
    )
    raise CheckpointError(
      f"No checkpoint in {self.directory} could be read into the {what} built from this config: "
      f"{details}. Either the files are damaged, or they were written with another config."
    )

  def _set_aside(self, steps: list[int]) -> None:
    """Moves damaged checkpoints out of the way (to `damaged_checkpoints/` beside the
    checkpoint folder), so that the resumed run can save those steps again."""
    if jax.process_index() != 0:
      return
    aside = self.directory.parent / "damaged_checkpoints"
    aside.mkdir(parents=True, exist_ok=True)
    for step in steps:
      target = aside / f"{step}.{int(time.time())}"
      (self.directory / str(step)).rename(target)
      logger.warning("Moved the damaged checkpoint of step %d to %s.", step, target)
    self._manager.reload()

  def apply_keep_policy(self) -> None:
    """Deletes the checkpoints the keep policy does not keep (orbax applies it at each save; a
    run killed before its deletions finished leaves more)."""
    steps = sorted(self.all_steps())
    kept = set(steps[-self.keep :])
    if self.keep_every:
      kept |= {s for s in steps if s % self.keep_every == 0}
    for step in steps:
      if step not in kept:
        self._manager.delete(step)

  def restore_params(
    self, abstract_params: Any, step: int | None = None, name: str = "ema_params"
  ) -> tuple[Any, int]:
    """(the state's `name` params (default the EMA ones, for sampling) restored into the
    shardings of `abstract_params`, without reading the optimizer state (a third of the memory
    with Adam) or whatever else the state holds; the step read). Default: the newest intact
    checkpoint, as `restore`."""
    item = {name: abstract_params}
    restore = ocp.args.PyTreeRestore(
      item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
    )
    restored, step = self._restore_newest_intact(ocp.args.Composite(state=restore), step, name)
    return restored["state"][name], step

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
