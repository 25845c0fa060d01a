"""`train_and_evaluate`: the whole training job that `train.py` runs.

Phases: config -> mesh -> data -> model and sharded state (or restore) -> jitted step ->
loop with progress bar, metrics.jsonl, checkpoints and periodic samples.
"""

import contextlib
import logging
import math
import time

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import tqdm
from etils import epath

from jvdm.config_validation import validate_config
from jvdm.builders import get_model, is_latent, null_condition_for
from jvdm.data.pipeline import make_dataset, make_source
from jvdm.errors import JvdmError, ShapeError
from jvdm.parallel.mesh import batch_sharding, replicated
from jvdm.training.checkpoint import CHECKPOINT_DIR, Checkpointer
from jvdm.training.metrics_log import MetricsLog, read_records
from jvdm.training.optimizer import make_optimizer
from jvdm.training.preemption import PreemptionNotice
from jvdm.training.run_config import check_run_config_matches, save_run_config
from jvdm.training.state import TrainState, abstract_train_state
from jvdm.training.throughput import (
  device_peak_flops,
  matmul_dtype,
  step_flops,
  throughput,
  tokens_per_example,
)
from jvdm.training.tasks import task_for
from jvdm.workdir import config_mesh, load_latent_space, network_video_shape

logger = logging.getLogger(__name__)


class NonFiniteLossError(JvdmError):
  """Too many consecutive steps had a NaN or infinite loss or gradient."""


class _ThroughputRate:
  """examples/s, tokens/s, model TFLOP/s and MFU from steps/s (`jvdm.training.throughput`)."""

  def __init__(
    self, config: ml_collections.ConfigDict, compiled_step, video_shape: tuple[int, ...]
  ):
    self.batch = config.data.batch_size
    self.tokens = tokens_per_example(config, video_shape)
    try:  # XLA's count is per device; every device runs the same partitioned program
      self.flops = step_flops(compiled_step) * jax.device_count()
    except JvdmError as error:
      logger.warning("No FLOP count for MFU: %s", error)
      self.flops = None
    dtype = matmul_dtype(config.model.dtype)
    self.peak, source = device_peak_flops(jax.devices()[0], dtype)
    # Simulated CPU devices share their host, whose measured matmul rate is their joint peak.
    self.peak_devices = (
      jax.process_count() if jax.devices()[0].platform == "cpu" else jax.device_count()
    )
    logger.info(
      "Step: %.3g FLOP; peak %.3g FLOP/s per device (%s, %s %s)",
      self.flops or float("nan"),
      self.peak,
      dtype,
      jax.devices()[0].device_kind,
      source,
    )

  def __call__(self, steps_per_second: float) -> dict[str, float]:
    if self.flops is None:
      return {
        "examples_per_s": steps_per_second * self.batch,
        "tokens_per_s": steps_per_second * self.batch * self.tokens,
      }
    return throughput(
      steps_per_second, self.batch, self.tokens, self.flops, self.peak, self.peak_devices
    )


def _check_skipped(metrics, step: int, max_consecutive: int, checkpointer: Checkpointer) -> None:
  """Stops the run once `max_consecutive` steps in a row were skipped as non-finite (their
  updates were not applied, so the state and its checkpoints stay finite)."""
  consecutive = int(jax.device_get(metrics["consecutive_skipped"]))
  if consecutive and consecutive >= max_consecutive:
    checkpointer.wait_until_finished()
    raise NonFiniteLossError(
      f"{consecutive} consecutive steps up to step {step} had a non-finite loss or gradient "
      f"(last loss {float(jax.device_get(metrics['loss']))}) and were skipped; stopping at "
      f"train.max_consecutive_skipped={max_consecutive}. The state is unchanged since the last "
      f"finite step; the last checkpoint is step {checkpointer.latest_step()}. Look for bad "
      "input data or lower optim.learning_rate."
    )


class _BatchAssembler:
  """A process's local batch -> the global batch the step takes: sharded arrays, and for latent
  diffusion the normalized latents of the videos (prepared latents are normalized already)."""

  def __init__(self, shardings, latent_space, video_shape, config, latent_rng):
    self.shardings, self.latent_space, self.video_shape = shardings, latent_space, video_shape
    self.config, self.latent_rng = config, latent_rng  # posterior samples
    if latent_space is not None:
      self.to_latents = jax.jit(
        lambda space, videos, rng: space.to_latents(videos, rng), out_shardings=shardings["video"]
      )

  def __call__(self, local_batch, step: int):
    if self.latent_space is not None:
      self._check_latents(local_batch["video"])
    batch = {
      key: jax.make_array_from_process_local_data(sharding, local_batch[key])
      for key, sharding in self.shardings.items()
    }
    if self.latent_space is not None:
      batch["video"] = self.to_latents(
        self.latent_space, batch["video"], jax.random.fold_in(self.latent_rng, step)
      )
    return batch

  def _check_latents(self, videos: np.ndarray) -> None:
    """Prepared latents (float batches) must have the shape of this VAE's latents."""
    if videos.dtype != np.uint8 and tuple(videos.shape[1:]) != tuple(self.video_shape):
      data = self.config.data
      raise ShapeError(
        f"The dataset gives latents of shape {tuple(videos.shape[1:])}, but the VAE in "
        f"{self.config.latent.vae_workdir} makes {tuple(self.video_shape)} for "
        f"{data.num_frames}x{data.height}x{data.width} videos: were they prepared with another "
        "VAE or video size?"
      )


class _StepTimer:
  """Steps per second over the steps since the last restart (logging, saving and sampling
  restart it; the first step, which compiles, is not timed)."""

  def __init__(self):
    self.restart()

  def restart(self) -> None:
    self.start, self.steps = time.perf_counter(), 0

  def tick(self, compiled: bool = False) -> None:
    if compiled:
      self.restart()
    else:
      self.steps += 1

  def steps_per_second(self) -> float | None:
    return self.steps / (time.perf_counter() - self.start) if self.steps else None


class _SkippedFiles:
  """Video files the source could not read: their count goes into every training record of
  metrics.jsonl (`data_skipped_files`), the files and reasons into a record of their own each
  time the set grows (`skipped_video_files`), and into the end-of-run summary. Counted in the
  main process, so with `data.worker_count` 0 (with workers, each keeps its own count, and
  only their warnings report them)."""

  def __init__(self, source, worker_count: int):
    self.source = source if hasattr(source, "skipped") and worker_count == 0 else None
    self.reported = 0

  def log(self, step: int, metrics: dict, metrics_log: MetricsLog) -> None:
    if self.source is None:
      return
    skipped = self.source.skipped
    metrics["data_skipped_files"] = len(skipped)
    if len(skipped) > self.reported:
      metrics_log.write_record(step, {"skipped_video_files": skipped})
      self.reported = len(skipped)

  def summarize(self) -> None:
    if self.source is not None and self.source.skipped:
      skipped = self.source.skipped
      logger.warning(
        "Skipped %d video file(s) that gave no clip (also in metrics.jsonl):\n  %s",
        len(skipped),
        "\n  ".join(f"{path}: {reason}" for path, reason in sorted(skipped.items())),
      )


# The metrics.jsonl key that marks a step's evaluation as complete (its duration).
EVALUATION_KEY = "evaluation_seconds"


def _is_evaluation_step(config, step: int) -> bool:
  """Samples (or reconstructions) every `train.sample_every` steps and after the last."""
  every = config.train.sample_every
  return step > 0 and ((every and step % every == 0) or step == config.train.num_steps)


def _log_start(config, state, start_step: int) -> None:
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  logger.info(
    "Model: %s, %.2fM params; starting at step %d of %d",
    config.model.name,
    num_params / 1e6,
    start_step,
    config.train.num_steps,
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  stop_after_step: int | None = None,
  progress: bool = True,
  stop_after_seconds: float | None = None,
) -> TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one.

  Args:
    config: the experiment config (see configs/).
    workdir: where checkpoints, config.json, metrics.jsonl and samples/ go.
    stop_after_step: stop (after checkpointing) once this step is reached, as a preemption
      would; the run continues from there next time. None runs to `train.num_steps`.
    progress: show a progress bar.
    stop_after_seconds: stop (after checkpointing) at the first step that ends this many
      seconds after the loop started (compilation included), as `stop_after_step` does; for
      fixed wall-time budgets (benchmarks/quality.py). None: no limit.

  Returns:
    The final train state.
  """
  # Config: every check before any compute.
  validate_config(config)
  workdir = epath.Path(workdir)
  logger.info("Workdir: %s", workdir)

  # Mesh.
  mesh = config_mesh(config)
  rules = config.mesh.logical_axis_rules
  task = task_for(config)
  # What the network sees: pixels, or for latent diffusion the latents of a trained VAE.
  video_shape = network_video_shape(config)

  # Data.
  source = make_source(config.data)  # kept: it counts the video files it had to skip
  data_iterator = iter(make_dataset(config.data, source=source))
  skipped_files = _SkippedFiles(source, config.data.worker_count)

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    # Model and state: restored from the workdir if it has a checkpoint, else initialized.
    model = get_model(config)
    tx, schedule = make_optimizer(config.optim, config.train.num_steps)
    init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
    latent_space = load_latent_space(config.latent, mesh) if is_latent(config) else None
    null_condition = null_condition_for(config)
    init, state_shardings, abstract_state = abstract_train_state(
      model, tx, video_shape, mesh, rules, null_condition, denoiser=task.denoises
    )
    checkpointer = Checkpointer(
      workdir / CHECKPOINT_DIR,
      keep=config.train.keep_checkpoints,
      keep_every=config.train.keep_checkpoint_every,
    )
    bar = None
    stack = contextlib.ExitStack()
    try:
      if checkpointer.latest_step() is not None:
        check_run_config_matches(workdir, config)
        state = checkpointer.restore(abstract_state, data_iterator)
        checkpointer.apply_keep_policy()  # a run killed mid-save may have left one too many
      else:
        state = jax.jit(init, out_shardings=state_shardings)(init_rng)
      if jax.process_index() == 0:
        save_run_config(workdir, config)
      start_step = int(state.step)
      _log_start(config, state, start_step)
      # A run killed between its checkpoint and that step's evaluation evaluates it now.
      evaluation_missing = _is_evaluation_step(config, start_step) and not any(
        r["step"] == start_step and EVALUATION_KEY in r for r in read_records(workdir)
      )
      metrics_log = stack.enter_context(
        contextlib.closing(MetricsLog(workdir, start_step, redo_step=evaluation_missing))
      )

      # Step.
      batch_shardings = {"video": batch_sharding(mesh, 1 + len(video_shape))}
      if null_condition is not None:
        batch_shardings["caption"] = batch_sharding(mesh, 2)
      train_step = jax.jit(
        task.make_train_step(config, model, tx, schedule),
        in_shardings=(state_shardings, batch_shardings, replicated(mesh)),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=0,
      )
      task_evaluation = task.make_evaluation(
        config, model, workdir, metrics_log, video_shape, latent_space
      )

      def evaluate(step: int) -> None:
        started = time.perf_counter()
        task_evaluation(step, state.ema_params)
        metrics_log.write(step, {EVALUATION_KEY: time.perf_counter() - started})

      if evaluation_missing:
        evaluate(start_step)
      latent_rng = jax.random.fold_in(jax.random.key(config.seed), 1)  # posterior samples
      global_batch = _BatchAssembler(batch_shardings, latent_space, video_shape, config, latent_rng)

      # Loop.
      end_step = config.train.num_steps
      if stop_after_step is not None:
        end_step = min(end_step, stop_after_step)
      bar = tqdm.tqdm(
        total=config.train.num_steps,
        initial=start_step,
        desc="training",
        unit="step",
        disable=not (progress and jax.process_index() == 0),
        dynamic_ncols=True,
      )
      timer = _StepTimer()
      max_skipped = config.train.max_consecutive_skipped
      previous_metrics = None
      notice = stack.enter_context(PreemptionNotice())
      loop_start = time.perf_counter()
      for step in range(start_step + 1, end_step + 1):
        batch = global_batch(next(data_iterator), step)
        if step == start_step + 1:  # compile once, ahead of time, to read its FLOP count
          train_step = train_step.lower(state, batch, train_rng).compile()
          rate = _ThroughputRate(config, train_step, video_shape)
        state, metrics = train_step(state, batch, train_rng)
        # Read the previous step's counter while this one runs: the device stays one step ahead.
        if previous_metrics is not None:
          _check_skipped(previous_metrics, step - 1, max_skipped, checkpointer)
        previous_metrics = metrics
        timer.tick(compiled=step == start_step + 1)
        bar.update(1)
        preempted = notice.received or checkpointer.reached_preemption(step)
        out_of_time = (
          stop_after_seconds is not None and time.perf_counter() - loop_start >= stop_after_seconds
        )
        is_last = step == end_step or preempted or out_of_time
        should_log = step % config.train.log_every == 0 or is_last
        should_save = step % config.train.checkpoint_every == 0 or is_last
        if should_log or should_save:
          metrics = jax.device_get(metrics)
          _check_skipped(metrics, step, max_skipped, checkpointer)
        if should_log:
          skipped_files.log(step, metrics, metrics_log)
          steps_per_second = timer.steps_per_second()
          if steps_per_second is not None:
            metrics.update(steps_per_second=steps_per_second, **rate(steps_per_second))
          metrics_log.write(step, metrics)
          bar.set_postfix(
            loss=f"{metrics['loss']:.4f}",
            steps_per_s=f"{metrics.get('steps_per_second', float('nan')):.2f}",
          )
        if should_save:
          metrics_log.flush()  # what a resumed run keeps is on disk before the checkpoint
          checkpointer.save(step, state, data_iterator)
        if _is_evaluation_step(config, step) and not preempted:  # preempted: seconds left
          evaluate(step)  # (the resumed run evaluates this step)
        if should_log or should_save:  # saving and sampling are not training time
          timer.restart()
        if preempted:
          logger.warning("Preempted: saved step %d; run the same command again to resume.", step)
          break
        if out_of_time:
          logger.info(
            "Stopped after %.0f s at step %d (stop_after_seconds).", stop_after_seconds, step
          )
          break
      skipped_files.summarize()
    finally:
      stack.close()
      if bar is not None:
        bar.close()
      checkpointer.wait_until_finished()  # an in-flight save completes even on an error
      checkpointer.close()
  return state
