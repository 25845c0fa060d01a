"""A progress bar over the solver steps of a jitted sampling loop, as diffusers' pipelines show
one per denoising step: the scan reports each finished step to the host
(`run_solver(on_step=...)`), and the bar counts them over every batch of a `sample` call."""

import contextlib

import tqdm


class StepProgress:
  """The `on_step` callback of a jitted sampler and the bar it moves (none outside `showing`).

  The jitted function keeps this object, not a bar, so one compile serves every call."""

  def __init__(self):
    self.bar = None
    self.done = 0  # steps of the batches finished before the current one

  def __call__(self, steps_done) -> None:
    if self.bar is not None:  # set, not add: on a mesh each device may report the same step
      self.bar.n = self.done + int(steps_done)
      self.bar.refresh()

  def batch_finished(self, steps: int) -> None:
    self.done += steps

  @contextlib.contextmanager
  def showing(self, total_steps: int, enabled: bool = True):
    """Shows a bar of `total_steps` steps while the block runs (nothing when not `enabled`)."""
    if not enabled:
      yield self
      return
    self.bar, self.done = tqdm.tqdm(total=total_steps, desc="denoising", unit="step"), 0
    try:
      yield self
    finally:
      self.bar.n = self.bar.total if self.done >= total_steps else self.bar.n
      self.bar.close()
      self.bar = None
