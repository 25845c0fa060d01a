"""The train step: `(state, batch, rng) -> (state, metrics)`, pure, jitted by the loop."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jvdm.data.transforms import to_model_range
from jvdm.training.optimizer import ema_update
from jvdm.training.state import TrainState

# {'video': uint8 [B, T, H, W, C]}, and for a caption-conditioned model 'caption': int [B, L].
Batch = dict[str, jnp.ndarray]


def drop_condition(rng: jax.Array, condition: jnp.ndarray, null_condition: jnp.ndarray,
                   probability: float) -> jnp.ndarray:
  """Replaces each video's condition by the null one with `probability` (classifier-free
  guidance training, Ho & Salimans 2022, Algorithm 1), so one network learns both the
  conditional and the unconditional model."""
  dropped = jax.random.bernoulli(rng, probability, condition.shape[:1])
  dropped = dropped.reshape(dropped.shape + (1,) * (condition.ndim - 1))
  return jnp.where(dropped, jnp.asarray(null_condition, condition.dtype), condition)


def make_train_step(model: nn.Module, denoising_loss: Callable[..., jnp.ndarray],
                    tx: optax.GradientTransformation, schedule: optax.Schedule,
                    ema_decay: float, null_condition=None,
                    condition_dropout: float = 0.0) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
  """Builds the train step for `model` trained with `denoising_loss(network, x=videos,
  rng=rng)`, the loss of `jvdm.diffusion.make_loss`. With `null_condition` (a caption-conditioned
  model) the network sees `batch["caption"]`, replaced by `null_condition` for a fraction
  `condition_dropout` of the videos."""

  def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    # One key per step, independent of how the run was split into restarts.
    step_rng = jax.random.fold_in(rng, state.step)
    dropout_rng, loss_rng = jax.random.split(step_rng)
    videos = to_model_range(batch["video"])
    condition = {}
    if null_condition is not None:
      condition["cond"] = drop_condition(jax.random.fold_in(step_rng, 1), batch["caption"], null_condition,
                                         condition_dropout)

    def loss_fn(params):
      network = lambda z, t: model.apply({"params": params}, z, t, train=True,
                                         rngs={"dropout": dropout_rng}, **condition)
      return denoising_loss(network, x=videos, rng=loss_rng)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(step=state.step + 1, params=params,
                           ema_params=ema_update(state.ema_params, params, state.step, ema_decay),
                           opt_state=opt_state)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads),
               "learning_rate": schedule(state.step)}
    return new_state, metrics

  return train_step
