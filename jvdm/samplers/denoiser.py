"""Denoisers: pure functions `denoise(z_t, t, cond) -> x0_hat` built once from a network.

Samplers see only denoisers, never networks, so they can be tested with analytic ones.
"""

from typing import Any, Callable, Optional

import jax.numpy as jnp

from jvdm.diffusion.parameterization import x0_from_prediction
from jvdm.diffusion.vp import VPProcess, broadcast_to_video

Denoiser = Callable[[jnp.ndarray, jnp.ndarray, Optional[Any]], jnp.ndarray]


def make_denoiser(apply_fn: Callable[..., jnp.ndarray], params: Any, process: VPProcess,
                  prediction: str) -> Denoiser:
  """Wraps `apply_fn({'params': params}, z, t)` into an x0-predicting denoiser.

  Args:
    apply_fn: the network's apply, `(variables, z [B, T, H, W, C], t [B] | [B, T]) -> output`.
    params: the network's params (e.g. the EMA params).
    process: the forward process, for the alpha/sigma of t.
    prediction: what the network outputs: 'v', 'eps' or 'x0'.
  """

  def denoise(z: jnp.ndarray, t: jnp.ndarray, cond: Optional[Any] = None) -> jnp.ndarray:
    del cond  # unconditional models only, for now
    output = apply_fn({"params": params}, z, t).astype(jnp.float32)
    alpha, sigma = process.alpha_sigma(t)
    return x0_from_prediction(prediction, output, z, broadcast_to_video(alpha, z),
                              broadcast_to_video(sigma, z))

  return denoise
