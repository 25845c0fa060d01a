"""DDIM (Song et al. 2021), eq. 12, with eta interpolating to ancestral DDPM (eta = 1)."""

import jax.numpy as jnp

from jvdm.diffusion.vp import VPProcess, broadcast_to_video
from jvdm.samplers.denoiser import Denoiser
from jvdm.samplers.driver import SamplerCarry, Solver, normal_per_sample, split_per_sample


def ddim_step(denoise: Denoiser, process: VPProcess, eta: float = 0.0,
              clip_x0: bool = True) -> Solver:
  """Returns the DDIM solver step for `denoise` on `process`.

  With alpha_bar = alpha^2 (DDIM's notation), from time t to the less noisy s:
    x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c = eta * (sigma_s / sigma_t) * sqrt(1 - alpha_t^2 / alpha_s^2).
  """

  def step(carry: SamplerCarry, t_cur: jnp.ndarray, t_next: jnp.ndarray) -> SamplerCarry:
    x = carry.x
    rng, noise_rng = split_per_sample(carry.rng)
    batch = x.shape[0]
    t_cur = jnp.broadcast_to(t_cur, (batch,)) if jnp.ndim(t_cur) == 0 else t_cur
    t_next = jnp.broadcast_to(t_next, (batch,)) if jnp.ndim(t_next) == 0 else t_next
    x0 = denoise(x, t_cur, None)
    if clip_x0:
      x0 = jnp.clip(x0, -1.0, 1.0)
    alpha_t, sigma_t = (broadcast_to_video(c, x) for c in process.alpha_sigma(t_cur))
    alpha_s, sigma_s = (broadcast_to_video(c, x) for c in process.alpha_sigma(t_next))
    eps = (x - alpha_t * x0) / sigma_t
    c = eta * (sigma_s / sigma_t) * jnp.sqrt(jnp.clip(1.0 - (alpha_t / alpha_s)**2, 0.0))
    direction = jnp.sqrt(jnp.clip(sigma_s**2 - c**2, 0.0)) * eps
    x_next = alpha_s * x0 + direction
    if eta > 0:  # eta is a Python float: deterministic DDIM draws no noise
      x_next = x_next + c * normal_per_sample(noise_rng, x.shape[1:], x.dtype)
    return SamplerCarry(x=x_next, rng=rng)

  return step
