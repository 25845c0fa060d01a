"""Denoisers: pure functions `denoise(z_t, t, cond) -> x0_hat` built once from a network.

Samplers see only denoisers, never networks, so they can be tested with analytic ones.
"""

from typing import Any, Callable, Optional

import jax.numpy as jnp

from jvdm.diffusion.parameterization import x0_from_prediction
from jvdm.diffusion.vp import broadcast_to_video

Denoiser = Callable[[jnp.ndarray, jnp.ndarray, Optional[Any]], jnp.ndarray]


def alpha_sigma_like(process, t: jnp.ndarray, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The process's (alpha_t, sigma_t) for `[B]` or `[B, T]` t, broadcast over the video x."""
  alpha, sigma = process.alpha_sigma(t)
  return broadcast_to_video(alpha, x), broadcast_to_video(sigma, x)


def clean_estimate(denoise: Denoiser, z: jnp.ndarray, t: jnp.ndarray, clip_x0: bool) -> jnp.ndarray:
  """The denoiser's x0 at (z, t), clipped to the data range [-1, 1] when `clip_x0`."""
  x0 = denoise(z, t, None)
  return jnp.clip(x0, -1.0, 1.0) if clip_x0 else x0


def make_denoiser(
  apply_fn: Callable[..., jnp.ndarray], params: Any, process, prediction: str
) -> Denoiser:
  """Wraps `apply_fn({'params': params}, z, t[, cond])` into an x0-predicting denoiser.

  Args:
    apply_fn: the network's apply, `(variables, model input [B, T, H, W, C], t [B] | [B, T])
      -> output`; it sees `process.scale_model_input(z, t)`. A conditional network also takes
      `cond` (a pytree batched like z); `cond=None` calls it without.
    params: the network's params (e.g. the EMA params).
    process: the forward process, for the alpha/sigma of t.
    prediction: what the network outputs (`jvdm.diffusion.PREDICTIONS`).
  """

  def denoise(z: jnp.ndarray, t: jnp.ndarray, cond: Optional[Any] = None) -> jnp.ndarray:
    model_input = process.scale_model_input(z, t)
    if cond is None:
      output = apply_fn({"params": params}, model_input, t)
    else:
      output = apply_fn({"params": params}, model_input, t, cond=cond)
    alpha, sigma = alpha_sigma_like(process, t, z)
    return x0_from_prediction(prediction, output.astype(jnp.float32), z, alpha, sigma)

  return denoise


def gaussian_denoiser(process, mean: float, std: float) -> Denoiser:
  """The exact x0 denoiser E[x | z_t] for data x ~ N(mean, std^2), i.i.d. per element: the
  analytic reference that tests samplers without a network (its probability-flow map is known
  in closed form, `tests/samplers/test_solver_convergence.py`)."""

  def denoise(z, t, cond):
    del cond
    alpha, sigma = alpha_sigma_like(process, t, z)
    return mean + alpha * std**2 * (z - alpha * mean) / (alpha**2 * std**2 + sigma**2)

  return denoise
