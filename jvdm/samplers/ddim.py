"""DDIM (Song et al. 2021, eq. 12) for any process z = alpha x + sigma eps.

With r = sigma / alpha, from time t to the less noisy s:
  x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps_hat + c n,   c = eta sigma_s sqrt(1 - r_s^2 / r_t^2).
On a VP process this is DDIM's c = eta (sigma_s / sigma_t) sqrt(1 - alpha_t^2 / alpha_s^2).

The same step is, with eta = 0, Euler's method on the probability-flow ODE in (x / alpha, r)
(Karras et al. 2022, sec. 4: "DDIM is Euler"), which makes it diffusers' EulerDiscrete and
FlowMatchEulerDiscrete steps; with eta = 1 it is ancestral sampling: DDPM's posterior step
with the "fixed_small" variance (Ho et al. 2020, eq. 6-7) and EulerAncestralDiscrete's
sigma_up / sigma_down split. Those samplers differ only in their time grids
(`jvdm.samplers.grids`).
"""

import jax.numpy as jnp

from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like, clean_estimate
from jvdm.samplers.driver import Solver


def ddim_step(denoise: Denoiser, process, eta: float = 0.0, clip_x0: bool = True) -> Solver:
  """The DDIM solver for `denoise` on `process`; `eta` > 0 makes it stochastic."""

  def step(x, history, t_cur, t_next, noise):
    x0 = clean_estimate(denoise, x, t_cur, clip_x0)
    alpha_t, sigma_t = alpha_sigma_like(process, t_cur, x)
    alpha_s, sigma_s = alpha_sigma_like(process, t_next, x)
    eps = (x - alpha_t * x0) / sigma_t
    x_next = alpha_s * x0
    if eta > 0:  # eta is a Python float: deterministic DDIM draws no noise
      ratio = (sigma_s * alpha_t) / (alpha_s * sigma_t)
      c = eta * sigma_s * jnp.sqrt(jnp.clip(1.0 - ratio**2, 0.0))
      return x_next + jnp.sqrt(jnp.clip(sigma_s**2 - c**2, 0.0)) * eps + c * noise, history
    return x_next + sigma_s * eps, history

  return Solver(step=step, stochastic=eta > 0)
