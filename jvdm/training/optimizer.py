"""AdamW with linear warmup, cosine decay and global-norm clipping; the EMA of params."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jvdm.errors import ConfigError


def make_optimizer(
  optim_config: ml_collections.ConfigDict, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optimizer, learning-rate schedule)."""
  if not 0 <= optim_config.warmup_steps < num_steps:
    raise ConfigError(
      f"optim.warmup_steps={optim_config.warmup_steps} must be in [0, train.num_steps={num_steps})."
    )
  schedule = optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=optim_config.learning_rate,
    warmup_steps=optim_config.warmup_steps,
    decay_steps=num_steps,
    end_value=optim_config.learning_rate * optim_config.end_learning_rate_factor,
  )
  tx = optax.chain(
    optax.clip_by_global_norm(optim_config.grad_clip_norm),
    optax.adamw(
      schedule, b1=optim_config.b1, b2=optim_config.b2, weight_decay=optim_config.weight_decay
    ),
  )
  return tx, schedule


def ema_update(ema_params: Any, params: Any, step: jnp.ndarray, decay: float) -> Any:
  """EMA with the decay warmed up as min(decay, (1 + step) / (10 + step)) so short runs use it."""
  decay = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
