"""Stopping cleanly when the scheduler asks: save a checkpoint at the next step and exit.

Cluster schedulers (SLURM, Kubernetes, Cloud TPU maintenance) send SIGTERM some seconds before
they kill a job. In a multi-process `jax.distributed` job, JAX's preemption service catches it
and every process reaches the same sync point (`Checkpointer.reached_preemption`); a single
process has no such service, so `PreemptionNotice` catches SIGTERM itself and the loop reads
the flag between steps.
"""

import logging
import signal
import threading

logger = logging.getLogger(__name__)


class PreemptionNotice:
  """A flag set by SIGTERM while the context is active (main thread only; elsewhere inert).

  Use as `with PreemptionNotice() as notice: ... if notice.received: save and stop`. The
  previous SIGTERM handler is restored on exit.
  """

  def __init__(self, signum: int = signal.SIGTERM):
    self.signum = signum
    self.received = False
    self._previous = None

  def _handle(self, signum, frame):
    del frame
    logger.warning(
      "Received signal %d: saving a checkpoint after this step, then stopping.", signum
    )
    self.received = True

  def __enter__(self) -> "PreemptionNotice":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(self.signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._previous is not None:
      signal.signal(self.signum, self._previous)
      self._previous = None
