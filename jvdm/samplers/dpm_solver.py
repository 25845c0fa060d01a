"""DPM-Solver++(2M) and its SDE variant (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and
eq. 15 (SDE)), in data prediction with the midpoint rule, as diffusers'
DPMSolverMultistepScheduler(solver_order=2, solver_type="midpoint").

With lambda = log(alpha / sigma), h = lambda_s - lambda_t and the previous step's estimate
x0_prev at lambda_prev (r = (lambda_t - lambda_prev) / h):
  ODE: x_s = (sigma_s / sigma_t) x - alpha_s (e^-h - 1) (x0 + D / 2)
  SDE: x_s = (sigma_s / sigma_t) e^-h x + alpha_s (1 - e^-2h) (x0 + D / 2)
             + sigma_s sqrt(1 - e^-2h) n
with D = (x0 - x0_prev) / r. The first step, and a step to clean data (sigma_s = 0), are
first order (D = 0), as diffusers does with final_sigmas_type="zero".
Per-frame times work unchanged: every quantity is per frame.
"""

from typing import NamedTuple

import jax.numpy as jnp

from jvdm.diffusion.vp import broadcast_to_video
from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like, clean_estimate
from jvdm.samplers.driver import Solver


def half_log_snr(alpha, sigma):
  """lambda = log(alpha / sigma); +inf for clean data."""
  return jnp.log(alpha) - jnp.log(sigma)


class MultistepHistory(NamedTuple):
  """What a second-order multistep solver keeps of its previous step."""

  x0_1: jnp.ndarray  # the previous step's clean estimate, like x
  t_1: jnp.ndarray  # its time, like t
  count: jnp.ndarray  # int, steps taken so far, like t


def multistep_history(x, t) -> MultistepHistory:
  """The history of a multistep solver before its first step."""
  return MultistepHistory(jnp.zeros_like(x), t, jnp.zeros(t.shape, jnp.int32))


def dpm_solver_2m_step(
  denoise: Denoiser, process, sde: bool = False, clip_x0: bool = False
) -> Solver:

  def step(x, history, t_cur, t_next, noise):
    x0 = clean_estimate(denoise, x, t_cur, clip_x0)
    alpha_t, sigma_t = alpha_sigma_like(process, t_cur, x)
    alpha_s, sigma_s = alpha_sigma_like(process, t_next, x)
    lam_t, lam_s = half_log_snr(alpha_t, sigma_t), half_log_snr(alpha_s, sigma_s)
    lam_1 = half_log_snr(*alpha_sigma_like(process, history.t_1, x))
    h = lam_s - lam_t
    second_order = (broadcast_to_video(history.count, x) > 0) & (sigma_s > 0)
    correction = jnp.where(second_order, (x0 - history.x0_1) * h / (lam_t - lam_1), 0.0)
    data_term = x0 + 0.5 * correction
    if sde:
      x_next = (sigma_s / sigma_t * jnp.exp(-h)) * x - alpha_s * jnp.expm1(-2.0 * h) * data_term
      x_next = x_next + sigma_s * jnp.sqrt(-jnp.expm1(-2.0 * h)) * noise
    else:
      x_next = (sigma_s / sigma_t) * x - alpha_s * jnp.expm1(-h) * data_term
    return x_next, MultistepHistory(x0, t_cur, history.count + 1)

  return Solver(step=step, init_history=multistep_history, stochastic=sde)
