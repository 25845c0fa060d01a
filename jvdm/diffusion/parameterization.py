"""What the network predicts, and the exact conversions to the clean-video estimate x0.

With z = alpha x + sigma eps (alpha^2 + sigma^2 = 1):
  eps: x0 = (z - sigma eps) / alpha
  v:   v = alpha eps - sigma x  ->  x0 = alpha z - sigma v   (Salimans & Ho 2022, eq. 9)
  x0:  the output itself.
All coefficients are already broadcast to the video's shape.
"""

import jax.numpy as jnp

from jvdm.errors import ConfigError

PREDICTIONS = ("v", "eps", "x0")


def _check(prediction: str) -> None:
  if prediction not in PREDICTIONS:
    raise ConfigError(f"Unknown prediction {prediction!r}; valid predictions: {list(PREDICTIONS)}.")


def target_for_prediction(prediction: str, x: jnp.ndarray, noise: jnp.ndarray, alpha: jnp.ndarray,
                          sigma: jnp.ndarray) -> jnp.ndarray:
  """The regression target of the network for clean `x` noised with `noise`."""
  _check(prediction)
  if prediction == "v":
    return alpha * noise - sigma * x
  if prediction == "eps":
    return noise
  return x


def x0_from_prediction(prediction: str, output: jnp.ndarray, z: jnp.ndarray, alpha: jnp.ndarray,
                       sigma: jnp.ndarray) -> jnp.ndarray:
  """The clean-video estimate implied by the network `output` at noisy `z`."""
  _check(prediction)
  if prediction == "v":
    return alpha * z - sigma * output
  if prediction == "eps":
    return (z - sigma * output) / alpha
  return output
