"""UniPC-2 (Zhao et al. 2023, "UniPC", Algorithms 2-3) in data prediction with B(h) = h (bh1)
or e^h - 1 (bh2), as diffusers' UniPCMultistepScheduler(solver_order=2, predict_x0=True).

Each step first corrects the sample it was given (UniC) with the estimate x0 just made at it,
the two previous estimates and the sample it came from, then predicts the next sample (UniP).
With lambda = log(alpha / sigma), hh = lambda_from - lambda_to (< 0), phi = e^hh - 1:
  UniP-1: x_s = (sigma_s / sigma_t) x - alpha_s phi x0
  UniP-2: UniP-1 - alpha_s B(hh) D / 2,  D = (x0_1 - x0) / r,  r = (lambda_1 - lambda_t) / h
  UniC-p: the UniP-p update from the previous sample plus rho_p-weighted differences, with
          R rho = b solving the order conditions (Algorithm 3; rho = 1/2 at order 1).
The first step predicts at order 1, a step to clean data (sigma_s = 0) at order 1
(`lower_order_final`), and the corrector uses the order of the step it corrects.
"""

from typing import NamedTuple

import jax.numpy as jnp

from jvdm.errors import ConfigError
from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like, clean_estimate
from jvdm.diffusion.vp import broadcast_to_video
from jvdm.samplers.dpm_solver import half_log_snr, multistep_history
from jvdm.samplers.driver import Solver

UNIPC_VARIANTS = ("bh1", "bh2")


class UniPCHistory(NamedTuple):
  """UniPC's memory: the last two clean estimates and their times, the last sample (UniC
  corrects it), the step count and the order of the last prediction."""

  x0_1: jnp.ndarray
  t_1: jnp.ndarray
  count: jnp.ndarray
  x_1: jnp.ndarray
  x0_2: jnp.ndarray
  t_2: jnp.ndarray
  order_1: jnp.ndarray


def unipc_step(denoise: Denoiser, process, variant: str = "bh2", clip_x0: bool = False) -> Solver:
  if variant not in UNIPC_VARIANTS:
    raise ConfigError(f"Unknown UniPC variant {variant!r}; valid: {list(UNIPC_VARIANTS)}.")
  b_of_h = (lambda hh: hh) if variant == "bh1" else jnp.expm1

  def init_history(x, t):
    first = multistep_history(x, t)
    return UniPCHistory(
      first.x0_1,
      first.t_1,
      first.count,
      jnp.zeros_like(x),
      jnp.zeros_like(x),
      t,
      jnp.zeros(t.shape, jnp.int32),
    )

  def step(x, history, t_cur, t_next, noise):
    del noise
    x0 = clean_estimate(denoise, x, t_cur, clip_x0)
    alpha_t, sigma_t = alpha_sigma_like(process, t_cur, x)
    alpha_s, sigma_s = alpha_sigma_like(process, t_next, x)
    alpha_1, sigma_1 = alpha_sigma_like(process, history.t_1, x)
    lam_t, lam_s = half_log_snr(alpha_t, sigma_t), half_log_snr(alpha_s, sigma_s)
    lam_1 = half_log_snr(alpha_1, sigma_1)
    lam_2 = half_log_snr(*alpha_sigma_like(process, history.t_2, x))
    x0_1, x0_2 = history.x0_1, history.x0_2
    count = broadcast_to_video(history.count, x)

    # UniC: correct x with x0, starting again from the previous sample x_1 at lambda_1.
    hh = lam_1 - lam_t
    phi, b_h = jnp.expm1(hh), b_of_h(hh)
    b1 = (phi / hh - 1.0) / b_h
    b2 = ((phi / hh - 1.0) / hh - 0.5) * 2.0 / b_h
    r = (lam_2 - lam_1) / (lam_t - lam_1)
    rho_0 = (b1 - b2) / (1.0 - r)
    start = (sigma_t / sigma_1) * history.x_1 - alpha_t * phi * x0_1
    corrected_1 = start - alpha_t * b_h * 0.5 * (x0 - x0_1)
    corrected_2 = start - alpha_t * b_h * (rho_0 * (x0_2 - x0_1) / r + (b1 - rho_0) * (x0 - x0_1))
    corrected = jnp.where(broadcast_to_video(history.order_1, x) == 2, corrected_2, corrected_1)
    x = jnp.where(count > 0, corrected, x)

    # UniP: predict the sample at s.
    hh = lam_t - lam_s
    predicted_1 = (sigma_s / sigma_t) * x - alpha_s * jnp.expm1(hh) * x0
    r = (lam_1 - lam_t) / (lam_s - lam_t)
    predicted_2 = predicted_1 - alpha_s * b_of_h(hh) * 0.5 * (x0_1 - x0) / r
    # Order 2 after the first step, except for a step to clean data (lower_order_final).
    order = jnp.where((history.count > 0) & (process.alpha_sigma(t_next)[1] > 0), 2, 1)
    order = order.astype(jnp.int32)
    x_next = jnp.where(broadcast_to_video(order, x) == 2, predicted_2, predicted_1)
    return x_next, UniPCHistory(x0, t_cur, history.count + 1, x, x0_1, history.t_1, order)

  return Solver(step=step, init_history=init_history)
