"""Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1).

In y = z / alpha and r = sigma / alpha the ODE is dy/dr = (y - x0(y, r)) / r. A step takes an
Euler step to r_s, evaluates the slope there, and averages the two slopes; a step to r_s = 0
stays an Euler step (Algorithm 1, line 6), as in diffusers' HeunDiscreteScheduler. Two
denoiser calls per step. Not for the flow process's start at t = 1 (alpha = 0).
"""

import jax.numpy as jnp

from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like, clean_estimate
from jvdm.samplers.driver import Solver


def heun_step(denoise: Denoiser, process, clip_x0: bool = False) -> Solver:

  def step(x, history, t_cur, t_next, noise):
    del noise
    alpha_t, sigma_t = alpha_sigma_like(process, t_cur, x)
    alpha_s, sigma_s = alpha_sigma_like(process, t_next, x)
    r_t, r_s = sigma_t / alpha_t, sigma_s / alpha_s
    y = x / alpha_t
    slope = (y - clean_estimate(denoise, x, t_cur, clip_x0)) / r_t
    y_euler = y + (r_s - r_t) * slope
    slope_next = (y_euler - clean_estimate(denoise, alpha_s * y_euler, t_next, clip_x0)) / r_s
    y_heun = y + (r_s - r_t) * 0.5 * (slope + slope_next)
    return alpha_s * jnp.where(r_s > 0, y_heun, y_euler), history

  return Solver(step=step)
