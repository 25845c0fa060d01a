"""The train step: `(state, batch, rng) -> (state, metrics)`, pure, jitted by the loop."""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jvdm.builders import make_loss, null_condition_for
from jvdm.data.transforms import to_network_input
from jvdm.errors import ConfigError, ShapeError
from jvdm.training.optimizer import ema_update
from jvdm.training.state import TrainState

# {'video': uint8 [B, T, H, W, C] (or float, used as given)}, and for a caption-conditioned
# model 'caption': int [B, L].
Batch = dict[str, jnp.ndarray]


class StepInputs(NamedTuple):
  """What a loss sees of one batch, every field with the batch as its leading axis (so the
  inputs split into micro-batches): the videos in the network's range, one key per video,
  and for a conditional model the (partly dropped) conditions."""

  video: jnp.ndarray  # float [B, T, H, W, C]
  keys: jax.Array  # [B]
  cond: jnp.ndarray | None = None  # e.g. caption tokens int [B, L]


def drop_condition(
  rng: jax.Array, condition: jnp.ndarray, null_condition: jnp.ndarray, probability: float
) -> jnp.ndarray:
  """Replaces each video's condition by the null one with `probability` (classifier-free
  guidance training, Ho & Salimans 2022, Algorithm 1), so one network learns both the
  conditional and the unconditional model."""
  dropped = jax.random.bernoulli(rng, probability, condition.shape[:1])
  dropped = dropped.reshape(dropped.shape + (1,) * (condition.ndim - 1))
  return jnp.where(dropped, jnp.asarray(null_condition, condition.dtype), condition)


def _keep_if(finite: jnp.ndarray, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)


# `loss_fn(params, inputs, dropout_key) -> (loss, metrics)`.
LossFn = Callable[[Any, StepInputs, jax.Array], tuple[jnp.ndarray, dict]]
# `make_inputs(batch, step_rng) -> inputs`; `split(step_rng)[0]` is the dropout key.
MakeInputs = Callable[[Batch, jax.Array], StepInputs]


def make_train_step(
  model: nn.Module,
  denoising_loss: Callable[..., jnp.ndarray],
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  ema_decay: float,
  null_condition=None,
  condition_dropout: float = 0.0,
  microbatches: int = 1,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
  """Builds the diffusion train step for `model` trained with `denoising_loss(network,
  x=videos, rng=rng)`, the loss of `jvdm.diffusion.make_loss`.

  Args:
    model, denoising_loss, tx, schedule, ema_decay: the network, its loss, the optimizer, its
      learning-rate schedule (for logging) and the EMA decay.
    null_condition: for a caption-conditioned model, its null caption; the network then sees
      `batch["caption"]`, replaced by the null one for a fraction `condition_dropout` of videos.
    condition_dropout: see `drop_condition`.
    microbatches: see `make_step_for_loss`. Each video keeps its own noise keys, so the result
      equals the whole-batch step up to float rounding (with `diffusion.context_frames`,
      micro-batches are weighted equally rather than by their number of scored frames).
  """

  def make_inputs(batch: Batch, step_rng: jax.Array) -> StepInputs:
    videos = to_network_input(batch["video"])
    _, loss_rng = jax.random.split(step_rng)  # the first half is the dropout key
    cond = None
    if null_condition is not None:
      cond = drop_condition(
        jax.random.fold_in(step_rng, 1), batch["caption"], null_condition, condition_dropout
      )
    return StepInputs(videos, jax.random.split(loss_rng, videos.shape[0]), cond)

  def loss_fn(params, inputs: StepInputs, dropout_key):
    condition = {} if inputs.cond is None else {"cond": inputs.cond}
    network = lambda z, t: model.apply(
      {"params": params}, z, t, train=True, rngs={"dropout": dropout_key}, **condition
    )
    return denoising_loss(network, x=inputs.video, rng=inputs.keys), {}

  return make_step_for_loss(loss_fn, make_inputs, tx, schedule, ema_decay, microbatches)


def make_step_for_loss(
  loss_fn: LossFn,
  make_inputs: MakeInputs,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  ema_decay: float,
  microbatches: int = 1,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
  """The train step of any objective: gradients, optimizer, EMA and non-finite skipping.

  Args:
    loss_fn: the objective (see `LossFn`); its extra metrics are logged beside the loss.
    make_inputs: turns a batch and the step's key into `loss_fn`'s inputs.
    tx, schedule, ema_decay: the optimizer, its learning-rate schedule (for logging), the EMA
      decay.
    microbatches: gradient accumulation: the inputs are split into this many micro-batches,
      run one after another in a `lax.scan` and their gradients averaged, so activation memory
      is that of one micro-batch.

  The step never applies a non-finite update: when the loss or the gradient norm is NaN or
  infinite, params, EMA and optimizer state stay as they were, `state.skipped_steps` and
  `state.consecutive_skipped` count it, and the step still advances (the next batch is new).
  """
  if microbatches < 1:
    raise ConfigError(f"train.microbatches must be >= 1, got {microbatches}.")

  def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    # One key per step, independent of how the run was split into restarts.
    step_rng = jax.random.fold_in(rng, state.step)
    dropout_rng, _ = jax.random.split(step_rng)
    inputs = make_inputs(batch, step_rng)
    batch_size = inputs.video.shape[0]
    if batch_size % microbatches:
      raise ShapeError(
        f"The per-step batch of {batch_size} videos does not split into "
        f"train.microbatches={microbatches} equal micro-batches."
      )
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    if microbatches == 1:
      (loss, extra), grads = value_and_grad(state.params, inputs, dropout_rng)
    else:
      split = jax.tree.map(
        lambda a: a.reshape((microbatches, a.shape[0] // microbatches) + a.shape[1:]), inputs
      )

      def accumulate(carry, micro):
        index, micro_inputs = micro
        (loss, extra), grads = value_and_grad(
          state.params, micro_inputs, jax.random.fold_in(dropout_rng, index)
        )
        return jax.tree.map(jnp.add, carry, (loss, extra, grads)), None

      extra_shapes = jax.eval_shape(
        loss_fn, state.params, jax.tree.map(lambda a: a[0], split), dropout_rng
      )[1]
      zeros = (
        jnp.zeros((), jnp.float32),
        jax.tree.map(jnp.zeros_like, extra_shapes),
        jax.tree.map(jnp.zeros_like, state.params),
      )
      (loss, extra, grads), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(microbatches), split))
      loss, extra, grads = jax.tree.map(lambda a: a / microbatches, (loss, extra, grads))

    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = ema_update(state.ema_params, params, state.step, ema_decay)
    skipped = (~finite).astype(jnp.int32)
    new_state = TrainState(
      step=state.step + 1,
      params=_keep_if(finite, params, state.params),
      ema_params=_keep_if(finite, ema_params, state.ema_params),
      opt_state=_keep_if(finite, opt_state, state.opt_state),
      skipped_steps=state.skipped_steps + skipped,
      consecutive_skipped=(state.consecutive_skipped + 1) * skipped,
    )
    metrics = {
      "loss": loss,
      "grad_norm": grad_norm,
      "learning_rate": schedule(state.step),
      "skipped_steps": new_state.skipped_steps,
      "consecutive_skipped": new_state.consecutive_skipped,
      **extra,
    }
    return new_state, metrics

  return train_step


def train_step_from_config(
  config, model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule
):
  """`make_train_step` with the loss, EMA, caption conditioning and micro-batches of `config`."""
  return make_train_step(
    model,
    make_loss(config.diffusion),
    tx,
    schedule,
    config.optim.ema_decay,
    null_condition_for(config),
    config.train.condition_dropout,
    config.train.microbatches,
  )
