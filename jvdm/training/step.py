"""The train step: `(state, batch, rng) -> (state, metrics)`, pure, jitted by the loop."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jvdm.data.transforms import to_model_range
from jvdm.training.optimizer import ema_update
from jvdm.training.state import TrainState

Batch = dict[str, jnp.ndarray]  # {'video': uint8 [B, T, H, W, C]}


def make_train_step(model: nn.Module, denoising_loss: Callable[..., jnp.ndarray],
                    tx: optax.GradientTransformation, schedule: optax.Schedule,
                    ema_decay: float) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
  """Builds the train step for `model` trained with `denoising_loss(network, x=videos,
  rng=rng)`, the loss of `jvdm.diffusion.make_loss`."""

  def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    # One key per step, independent of how the run was split into restarts.
    dropout_rng, loss_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    videos = to_model_range(batch["video"])

    def loss_fn(params):
      network = lambda z, t: model.apply({"params": params}, z, t, train=True,
                                         rngs={"dropout": dropout_rng})
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
