"""Every sampler against diffusers' schedulers, grid and trajectory, number for number.

The fixture comes from scripts/make_sampler_references.py: diffusers 0.42 drives its
schedulers on Gaussian data with the exact posterior-mean denoiser, in float64, recording
the noise its stochastic steps drew. jvdm runs the same problem from the same start with the
same noise; this file needs only numpy to read the fixture.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import FlowProcess, VPProcess
from jvdm.diffusion.discrete import DiscreteSchedule
from jvdm.samplers import SOLVERS, rescale_guidance, run_solver, sampling_time_grid, unipc_step
from jvdm.samplers.denoiser import alpha_sigma_like

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "diffusers_scheduler_references.npz"


@pytest.fixture(scope="module")
def reference():
  with np.load(FIXTURE) as data:
    return {key: data[key] for key in data.files}


def _names():
  with np.load(FIXTURE) as data:
    return sorted({key.split("/")[0] for key in data.files if key.endswith("/config")})


def _sampler_and_spacing(config):
  """jvdm's sampler name and spacing for a diffusers scheduler and its kwargs."""
  kwargs, scheduler = config["kwargs"], config["scheduler"]
  sampler = {
    "DDPMScheduler": "ddpm",
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_ancestral",
    "HeunDiscreteScheduler": "heun",
    "UniPCMultistepScheduler": "unipc",
    "FlowMatchEulerDiscreteScheduler": "flow_euler",
    "LCMScheduler": "lcm",
  }.get(scheduler)
  if scheduler == "DPMSolverMultistepScheduler":
    sampler = "dpmpp_2m_sde" if kwargs.get("algorithm_type") == "sde-dpmsolver++" else "dpmpp_2m"
  default_spacing = {"ddpm": "leading", "lcm": "lcm", "flow_euler": "flow"}.get(sampler, "linspace")
  if kwargs.get("use_flow_sigmas"):
    default_spacing = "flow"
  spacing = (
    "karras" if kwargs.get("use_karras_sigmas") else kwargs.get("timestep_spacing", default_spacing)
  )
  return sampler, spacing


def _setup(reference, name):
  config = json.loads(str(reference[f"{name}/config"]))
  if config["scheduler"] == "FlowMatchEulerDiscreteScheduler":
    process = FlowProcess(shift=config["kwargs"]["shift"])
  elif config["kwargs"].get("use_flow_sigmas"):  # UniPC on flow sigmas (Wan 2.1)
    process = FlowProcess(shift=config["kwargs"]["flow_shift"])
  else:
    process = VPProcess(DiscreteSchedule(reference[f"{name}/alphas_cumprod"]))
  sampler, spacing = _sampler_and_spacing(config)
  grid = sampling_time_grid(
    process,
    SOLVERS[sampler][1],
    config["num_inference_steps"],
    spacing,
    config["kwargs"].get("steps_offset", 0),
  )
  return config, process, sampler, grid


def _noise_ratios(process, t):
  alpha, sigma = process.alpha_sigma(jnp.asarray(t, jnp.float64))
  return np.asarray(sigma / alpha)


@pytest.mark.parametrize("name", _names())
def test_grid_matches_diffusers(reference, name):
  with jax.enable_x64(True):
    config, process, sampler, grid = _setup(reference, name)
    t_cur, t_next = grid if isinstance(grid, tuple) else (grid[:-1], grid[1:])
    if f"{name}/sigmas" in reference:
      sigmas = reference[f"{name}/sigmas"]
      if sampler == "heun":  # diffusers interleaves each inner sigma twice
        sigmas = np.concatenate([sigmas[:1], sigmas[1::2]])
      times = np.append(t_cur, t_next[-1])
      # diffusers rounds its sigma tables to float32. Its flow sigma is the noise weight s of
      # z = (1 - s) x + s eps, compared as it is (as a noise ratio s / (1 - s), the rounding of
      # s = 1 - 1e-6 would be a 1% error).
      ours = process.shifted(times) if isinstance(process, FlowProcess) else None
      ours = _noise_ratios(process, times) if ours is None else ours
      np.testing.assert_allclose(ours, sigmas, rtol=2e-6)
    else:  # integer-index schedulers: DDPM, LCM
      np.testing.assert_allclose(t_cur * 1000 - 1, reference[f"{name}/timesteps"], atol=1e-9)


@pytest.mark.parametrize("name", _names())
def test_trajectory_matches_diffusers(reference, name):
  mean, std = float(reference["mean"]), float(reference["std"])
  with jax.enable_x64(True):
    config, process, sampler, grid = _setup(reference, name)

    def denoise(z, t, cond):  # the exact posterior mean E[x | z] for x ~ N(mean, std^2)
      del cond
      alpha, sigma = alpha_sigma_like(process, t, z)
      return mean + alpha * std**2 * (z - alpha * mean) / (alpha**2 * std**2 + sigma**2)

    factory, _ = SOLVERS[sampler]
    solver = factory(denoise, process, 0.0, False)
    if config["kwargs"].get("solver_type") == "bh1":
      solver = unipc_step(denoise, process, "bh1")
    x_init = jnp.asarray(reference["x_init"])
    keys = jax.random.split(jax.random.key(0), x_init.shape[0])
    noise = reference.get(f"{name}/noise")
    ours = run_solver(
      solver,
      x_init,
      grid,
      keys,
      noise=None if noise is None else jnp.asarray(noise),
      trajectory=True,
    )
    expected = reference[f"{name}/trajectory"]
    assert ours.dtype == jnp.float64
    # Every intermediate sample, not only the last; relative to the sample's scale.
    error = np.abs(np.asarray(ours) - expected).max(axis=tuple(range(1, expected.ndim)))
    scale = np.abs(expected).max(axis=tuple(range(1, expected.ndim)))
    assert np.all(error <= 1e-5 * scale), error / scale


def test_guidance_rescale_matches_diffusers(reference):
  with jax.enable_x64(True):
    out = rescale_guidance(
      jnp.asarray(reference["guidance_rescale/noise_cfg"]),
      jnp.asarray(reference["guidance_rescale/noise_pred_text"]),
      float(reference["guidance_rescale/phi"]),
    )
    np.testing.assert_allclose(out, reference["guidance_rescale/out"], rtol=1e-12)
