"""Checkpoints: the train state and the data iterator saved together by orbax.

Saves are asynchronous and atomic: orbax writes into a temporary folder and renames it when
complete, so a run killed during a save resumes from the previous complete checkpoint.
"""

import logging
from typing import Any

import grain
import orbax.checkpoint as ocp
from etils import epath

from jvdm.errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"  # inside the workdir


class Checkpointer:
  """Saves and restores (state, data iterator) pairs under `directory`."""

  def __init__(
    self, directory: str | epath.Path, keep: int = 3, read_only: bool = False, keep_every: int = 0
  ):
    """`keep` latest checkpoints are kept, and with `keep_every` > 0 also every checkpoint whose
    step is a multiple of it (for evaluating a run's history)."""
    self.directory = epath.Path(directory).resolve()  # orbax requires absolute paths
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

    Args:
      abstract_state: a tree of `jax.ShapeDtypeStruct` with shardings, matching the saved one.
      data_iterator: a grain iterator whose position is restored; None to skip it.
      step: which step; default the latest.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint found in {self.directory}.")
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data_iterator"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as error:
      raise CheckpointError(
        f"The checkpoint at step {step} in {self.directory} does not match the model built "
        f"from this config (was it written with another config?). Orbax said: {error}"
      ) from error
    logger.info("Restored step %d from %s", step, self.directory)
    return restored["state"]

  def restore_params(self, abstract_params: Any, step: int, name: str = "ema_params") -> Any:
    """Restores only the state's `name` params (default the EMA ones, for sampling) into the
    shardings of `abstract_params`, without reading the optimizer state (a third of the memory
    with Adam), and whatever else the state holds."""
    item = {name: abstract_params}
    restore = ocp.args.PyTreeRestore(
      item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
    )
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=restore))
    except (ValueError, KeyError, TypeError) as error:
      raise CheckpointError(
        f"The {name} of the checkpoint at step {step} in {self.directory} do not match the "
        f"model built from this config. Orbax said: {error}"
      ) from error
    return restored["state"][name]

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
