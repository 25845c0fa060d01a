"""Latent consistency model multistep sampling (Luo et al. 2023, "LCM", Algorithm 1), as
diffusers' LCMScheduler.

Each step maps the sample to the consistency function's clean estimate
  f(z, t) = c_skip(t) z + c_out(t) x0(z, t),
  c_skip = sd^2 / ((k s)^2 + sd^2), c_out = k s / sqrt((k s)^2 + sd^2)
(Song et al. 2023, "Consistency Models", eq. 7's boundary condition; LCM's k = the training
index of t, s = timestep_scaling = 10, sd = 0.5), then noises it afresh to the next time:
z_s = alpha_s f + sigma_s n. The last step (sigma_s = 0) returns f itself.
"""

import jax.numpy as jnp

from jvdm.diffusion.vp import broadcast_to_video
from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like, clean_estimate
from jvdm.samplers.driver import Solver

LCM_SIGMA_DATA = 0.5


def lcm_step(
  denoise: Denoiser,
  process,
  num_train_timesteps: int = 1000,
  timestep_scaling: float = 10.0,
  clip_x0: bool = False,
) -> Solver:

  def step(x, history, t_cur, t_next, noise):
    x0 = clean_estimate(denoise, x, t_cur, clip_x0)
    scaled = (t_cur * num_train_timesteps - 1.0) * timestep_scaling  # the index k, scaled
    scaled = broadcast_to_video(scaled, x)
    c_skip = LCM_SIGMA_DATA**2 / (scaled**2 + LCM_SIGMA_DATA**2)
    c_out = scaled / jnp.sqrt(scaled**2 + LCM_SIGMA_DATA**2)
    denoised = c_out * x0 + c_skip * x
    alpha_s, sigma_s = alpha_sigma_like(process, t_next, x)
    return alpha_s * denoised + sigma_s * noise, history

  return Solver(step=step, stochastic=True)
