"""What the network predicts, and the exact conversions to the clean-video estimate x0.

For any process z = alpha x + sigma eps (VP, EDM's alpha = 1, or flow's alpha = 1 - sigma):
  eps:  x0 = (z - sigma eps) / alpha
  v:    v = alpha eps - sigma x  ->  x0 = (alpha z - sigma v) / (alpha^2 + sigma^2)
        (Salimans & Ho 2022, eq. 9, where alpha^2 + sigma^2 = 1)
  flow: u = eps - x, the rectified-flow velocity dz/ds of z = (1 - s) x + s eps (Liu et al.
        2023)  ->  x0 = (z - sigma u) / (alpha + sigma)
  edm:  F with x0 = c_skip y + c_out F in y = z / alpha, r = sigma / alpha, c_skip =
        sd^2 / (r^2 + sd^2), c_out = r sd / sqrt(r^2 + sd^2), sd = SIGMA_DATA (Karras et al.
        2022, eq. 7 and Table 1)
  x0:   the output itself.
All coefficients are already broadcast to the video's shape.
"""

import jax.numpy as jnp

from jvdm.errors import ConfigError

PREDICTIONS = ("v", "eps", "x0", "flow", "edm")
SIGMA_DATA = 0.5  # EDM's data standard deviation; videos in [-1, 1] are close to it


def _check(prediction: str) -> None:
  if prediction not in PREDICTIONS:
    raise ConfigError(f"Unknown prediction {prediction!r}; valid predictions: {list(PREDICTIONS)}.")


def edm_scalings(alpha, sigma):
  """(c_skip, c_out) of EDM's preconditioning at noise ratio r = sigma / alpha."""
  ratio = sigma / alpha
  c_skip = SIGMA_DATA**2 / (ratio**2 + SIGMA_DATA**2)
  c_out = ratio * SIGMA_DATA / jnp.sqrt(ratio**2 + SIGMA_DATA**2)
  return c_skip, c_out


def target_for_prediction(
  prediction: str, x: jnp.ndarray, noise: jnp.ndarray, alpha: jnp.ndarray, sigma: jnp.ndarray
) -> jnp.ndarray:
  """The regression target of the network for clean `x` noised with `noise`."""
  _check(prediction)
  if prediction == "v":
    return alpha * noise - sigma * x
  if prediction == "eps":
    return noise
  if prediction == "flow":
    return noise - x
  if prediction == "edm":
    c_skip, c_out = edm_scalings(alpha, sigma)
    return (x - c_skip * (x + sigma / alpha * noise)) / c_out
  return x


def x0_from_prediction(
  prediction: str, output: jnp.ndarray, z: jnp.ndarray, alpha: jnp.ndarray, sigma: jnp.ndarray
) -> jnp.ndarray:
  """The clean-video estimate implied by the network `output` at noisy `z`."""
  _check(prediction)
  if prediction == "v":
    return (alpha * z - sigma * output) / (alpha**2 + sigma**2)
  if prediction == "eps":
    return (z - sigma * output) / alpha
  if prediction == "flow":
    return (z - sigma * output) / (alpha + sigma)
  if prediction == "edm":
    c_skip, c_out = edm_scalings(alpha, sigma)
    return c_skip * z / alpha + c_out * output
  return output


def x0_per_output(prediction: str, alpha: jnp.ndarray, sigma: jnp.ndarray) -> jnp.ndarray:
  """|d x0 / d output|: how an error in the network's output scales into x0.

  A loss weight w on the x0 error is the weight w * x0_per_output^2 on the output's error.
  """
  _check(prediction)
  if prediction == "v":
    return sigma / (alpha**2 + sigma**2)
  if prediction == "eps":
    return sigma / alpha
  if prediction == "flow":
    return sigma / (alpha + sigma)
  if prediction == "edm":
    return edm_scalings(alpha, sigma)[1]
  return jnp.ones_like(alpha)
