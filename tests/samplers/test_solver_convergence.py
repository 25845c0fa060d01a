"""The solvers against the exact solution of an analytic problem, without any reference run.

Data x ~ N(MEAN, STD^2) i.i.d. per element. For z = alpha x + sigma eps the posterior mean is
  x0_hat(z) = MEAN + alpha STD^2 (z - alpha MEAN) / (alpha^2 STD^2 + sigma^2),
and the probability-flow ODE maps z0 at (alpha0, sigma0) to
  z = alpha MEAN + sqrt(alpha^2 STD^2 + sigma^2) (z0 - alpha0 MEAN)
                  / sqrt(alpha0^2 STD^2 + sigma0^2)
(in y = z / alpha, r = sigma / alpha the ODE dy/dr = (y - x0_hat) / r reads
d(y - MEAN)/dr = (y - MEAN) r / (STD^2 + r^2); 4096 Heun steps agree with it to 5e-8). No
solver here is exact for it, DDIM included: along the solution x0_hat - MEAN is proportional
to 1 / sqrt(STD^2 + r^2), neither polynomial in r (Euler/Heun) nor in lambda = log(alpha /
sigma) (DPM-Solver++, UniPC), so each method shows its own order.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import EDMProcess, FlowProcess, VPProcess, get_schedule
from jvdm.samplers import SOLVERS, run_solver, unipc_step
from jvdm.samplers.denoiser import gaussian_denoiser as exact_gaussian_denoiser
from jvdm.samplers.driver import staggered_time_grid

MEAN, STD = 0.3, 0.5
PROCESSES = {
  "vp": lambda: VPProcess(get_schedule("cosine")),
  "edm": EDMProcess,
  "flow": lambda: FlowProcess(shift=1.0),
}
_run = jax.jit(run_solver, static_argnums=0, static_argnames="trajectory")


def gaussian_denoiser(process):
  """The exact posterior mean E[x | z] for x ~ N(MEAN, STD^2), element by element."""
  return exact_gaussian_denoiser(process, MEAN, STD)


def exact_flow(process, z0, t0, t1):
  """The probability-flow ODE's exact solution from z0 at time t0 to time t1."""
  a0, s0 = process.alpha_sigma(jnp.float64(t0))
  a1, s1 = process.alpha_sigma(jnp.float64(t1))
  return a1 * MEAN + jnp.sqrt(a1**2 * STD**2 + s1**2) * (z0 - a0 * MEAN) / jnp.sqrt(
    a0**2 * STD**2 + s0**2
  )


def make_solver(name, process):
  denoise = gaussian_denoiser(process)
  if name == "unipc_bh1":
    return unipc_step(denoise, process, "bh1")
  return SOLVERS[name][0](denoise, process, 0.0, False)


def noise_ratio(process, t):
  alpha, sigma = process.alpha_sigma(jnp.float64(t))
  return float(sigma / alpha)


def log_snr_grid(process, t_start, t_end, num_steps):
  """`num_steps + 1` times uniform in log-SNR (geometric in sigma / alpha) from t_start to t_end."""
  ratios = np.geomspace(noise_ratio(process, t_start), noise_ratio(process, t_end), num_steps + 1)
  return jnp.asarray(process.time_at_noise_ratio(ratios))


def keys_for(batch, seed=0):
  return jax.random.split(jax.random.key(seed), batch)


# (solver, process, expected order, bound on the error at the finest step count).
# Expected orders: DDIM = Euler on the probability-flow ODE (Song et al. 2021; Karras et al.
# 2022, sec. 4) 1; Heun (Karras et al. 2022, Algorithm 1) 2; DPM-Solver++(2M) (Lu et al. 2022,
# Algorithm 2, multistep, variable step) 2; UniPC-2 = UniP-2 + UniC-2 (Zhao et al. 2023,
# sec. 3: UniC-p raises UniP-p's order of accuracy by one, to p + 1) 3, with B(h) = e^h - 1
# (bh2) and B(h) = h (bh1). Measured over the two finest pairs: 0.99-1.00 (Euler), 2.01
# (Heun), 1.98-2.09 (DPM++), 2.95-3.00 (UniPC); the finest errors are 2.4x-37x below the bounds.
ORDER_CASES = [
  ("ddim", "vp", 1, 1e-2),
  ("euler", "vp", 1, 1e-2),
  ("euler", "edm", 1, 1e-2),
  ("flow_euler", "flow", 1, 1e-2),
  ("heun", "vp", 2, 1e-4),
  ("heun", "edm", 2, 1e-4),
  ("dpmpp_2m", "vp", 2, 1e-4),
  ("dpmpp_2m", "edm", 2, 1e-4),
  ("unipc", "vp", 3, 1e-6),
  ("unipc", "edm", 3, 1e-6),
  ("unipc_bh1", "vp", 3, 1e-6),
]
# Noisy start and still-noisy end: a last step to clean data is first order by design in
# DPM-Solver++ and UniPC (lower_order_final), which would mask their order.
SPANS = {"vp": (0.9, 0.2), "flow": (0.9, 0.1)}
STEP_COUNTS = (32, 64, 128, 256)


@pytest.mark.parametrize(
  "name,process_name,order,finest_bound", ORDER_CASES, ids=[f"{c[0]}-{c[1]}" for c in ORDER_CASES]
)
def test_deterministic_convergence_order(name, process_name, order, finest_bound):
  """Observed order log2(err(N) / err(2N)) of each deterministic solver, over the two finest
  pairs of N in 32, 64, 128, 256 steps on a grid uniform in log-SNR, within +-0.3 of the
  method's order, and the error going to 0. VP: t 0.9 -> 0.2; EDM: sigma 10 -> 0.1; flow:
  t 0.9 -> 0.1. The max error is over 12 elements started on the marginal at t_start."""
  with jax.enable_x64(True):
    process = PROCESSES[process_name]()
    if process_name == "edm":
      t_start, t_end = (float(process.time_at_noise_ratio(r)) for r in (10.0, 0.1))
    else:
      t_start, t_end = SPANS[process_name]
    alpha, sigma = process.alpha_sigma(jnp.float64(t_start))
    eps = jax.random.normal(jax.random.key(1), (2, 3, 2, 2, 1), jnp.float64)
    z_start = alpha * MEAN + jnp.sqrt(alpha**2 * STD**2 + sigma**2) * eps
    expected = exact_flow(process, z_start, t_start, t_end)
    solver = make_solver(name, process)
    errors = []
    for num_steps in STEP_COUNTS:
      out = _run(solver, z_start, log_snr_grid(process, t_start, t_end, num_steps), keys_for(2))
      assert out.dtype == jnp.float64
      errors.append(float(jnp.max(jnp.abs(out - expected))))
    errors = np.array(errors)
    observed = np.log2(errors[:-1] / errors[1:])
    message = f"errors {errors} at {STEP_COUNTS} steps, observed orders {observed}"
    np.testing.assert_array_less(np.abs(observed[-2:] - order), 0.3, err_msg=message)
    assert errors[-1] < finest_bound, message


STOCHASTIC = ("ddpm", "euler_ancestral", "dpmpp_2m_sde")


@pytest.mark.parametrize("name", STOCHASTIC + ("dpmpp_2m",))
def test_samples_match_data_distribution(name):
  """From N(0, 1) at t = 1 to t = 0 on VP cosine in 200 uniform steps, the n = 16384 samples'
  mean and std are MEAN and STD within 4 standard errors (STD / sqrt(n), STD / sqrt(2n)) plus
  a discretization allowance (0.001 mean, 0.012 std). The allowance covers the discretized
  chain's own bias, computed exactly for this linear-Gaussian problem (the output is affine in
  the start and the noise): at 200 steps the std is off by -0.0092 for DDPM (eta = 1: the
  "fixed small" posterior variance leaves out the uncertainty of x0, a first-order bias:
  -0.032, -0.018, -0.0092, -0.0048 at 50, 100, 200, 400 steps), +0.0031 for DPM-Solver++(2M)
  SDE, +0.0008 for DPM-Solver++(2M), and the mean by under 1e-4.

  The marginals alone do not pin the noise down (DDIM keeps them for every eta), so also the
  path: the reverse SDE that DDPM's ancestral steps and DPM-Solver++ SDE discretize has the
  forward process's path law, so along a sampling path corr(z_t, x_final) is the forward
  process's alpha_t STD / sqrt(alpha_t^2 STD^2 + sigma_t^2) (0.0003, 0.20, 0.45, 0.77 at
  t = 1, 0.75, 0.5, 0.25), within 4 / sqrt(n) plus 0.015 (the discretized chain is off by at
  most 0.010; eta = 1.15 or 0.85 instead of 1 is off by over 0.09 at t = 0.5). The
  deterministic control maps z_t affinely to x_final: corr = 1."""
  with jax.enable_x64(True):
    process = PROCESSES["vp"]()
    solver = make_solver(name, process)
    assert solver.stochastic == (name in STOCHASTIC)
    grid = jnp.linspace(1.0, 0.0, 201)
    x_init = jax.random.normal(jax.random.key(7), (1, 1, 128, 128, 1), jnp.float64)
    path = np.asarray(_run(solver, x_init, grid, keys_for(1, seed=3), trajectory=True))
    path = path.reshape(path.shape[0], -1)  # [S + 1, n]: x_init, then after each step
    samples, n = path[-1], path.shape[1]
    mean_tol = 4 * STD / np.sqrt(n) + 0.001
    std_tol = 4 * STD / np.sqrt(2 * n) + 0.012
    assert abs(samples.mean() - MEAN) < mean_tol, (samples.mean(), mean_tol)
    assert abs(samples.std() - STD) < std_tol, (samples.std(), std_tol)
    steps = np.array([0, 50, 100, 150])  # t = 1, 0.75, 0.5, 0.25
    corr = np.array([np.corrcoef(path[k], samples)[0, 1] for k in steps])
    if solver.stochastic:
      alpha, sigma = (np.asarray(c) for c in process.alpha_sigma(grid[steps]))
      forward = alpha * STD / np.sqrt(alpha**2 * STD**2 + sigma**2)
      np.testing.assert_array_less(
        np.abs(corr - forward),
        4 / np.sqrt(n) + 0.015,
        err_msg=f"corr {corr}, forward process {forward}",
      )
    else:
      np.testing.assert_array_less(1 - 1e-9, corr)


def _moving_steps(column):
  """A frame's own grid: its times with the held steps (t_next == t_cur) removed."""
  column = np.asarray(column)
  return column[np.concatenate([[True], column[1:] != column[:-1]])]


@pytest.mark.parametrize("process_name", ["vp", "edm"])
@pytest.mark.parametrize("name", ["ddim", "heun", "dpmpp_2m", "unipc"])
def test_per_frame_grid_equals_each_frame_alone(name, process_name):
  """On a staggered per-frame grid (frames wait at t = 1, then descend, then wait at t = 0) and
  an element-wise denoiser, every frame ends exactly where the same solver takes it alone over
  its own grid without the held steps: a multistep solver's history (last estimates, their
  times, step count, UniPC's last sample and order) is per frame and frozen while it waits.
  On EDM the descent ends at sigma = 0, UniPC's and DPM-Solver++'s first-order final step."""
  with jax.enable_x64(True):
    process = PROCESSES[process_name]()
    solver = make_solver(name, process)
    num_steps, batch, frames = 10, 2, 3
    per_frame = staggered_time_grid(num_steps, frames, 0.5)  # [S + 1, T]
    assert per_frame.dtype == jnp.float64
    # Some steps move two frames at once, from different times.
    moves = np.asarray(per_frame[1:] != per_frame[:-1])
    assert np.any((moves[:, 0] & moves[:, 1]) & np.asarray(per_frame[:-1, 0] != per_frame[:-1, 1]))
    grid = jnp.broadcast_to(per_frame[:, None], (num_steps + 1, batch, frames))
    alpha, sigma = process.alpha_sigma(jnp.float64(1.0))
    x_init = alpha * MEAN + sigma * jax.random.normal(
      jax.random.key(2), (batch, frames, 2, 2, 1), jnp.float64
    )
    together = np.asarray(_run(solver, x_init, grid, keys_for(batch)))
    assert np.all(np.isfinite(together))
    for frame in range(frames):
      own = _moving_steps(per_frame[:, frame])
      assert 3 <= len(own) - 1 < num_steps  # the frame both waits and moves
      alone = np.asarray(
        _run(solver, x_init[:, frame : frame + 1], jnp.asarray(own), keys_for(batch))
      )
      np.testing.assert_allclose(
        together[:, frame : frame + 1],
        alone,
        rtol=0,
        atol=1e-10,
        err_msg=f"frame {frame}, grid {own}",
      )
