"""Discrete-time schedules and DDIM against diffusers' numbers.

The fixture comes from scripts/make_sampler_references.py (diffusers' DDIMScheduler on Gaussian
data with the exact denoiser); this file needs only numpy to read it.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_unet
from jvdm.builders import make_process, make_video_sampler
from jvdm.config_validation import validate_config
from jvdm.diffusion import VPProcess, broadcast_to_video
from jvdm.diffusion.discrete import (
  DiscreteSchedule,
  discrete_timesteps,
  index_to_time,
  make_betas,
  rescale_zero_terminal_snr,
)
from jvdm.errors import ConfigError
from jvdm.samplers import ddim_step, sampling_time_grid
from jvdm.samplers.driver import run_solver

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "diffusers_ddim_references.npz"
CASES = (
  "ddim_linear_leading",
  "ddim_scaled_linear_leading",
  "ddim_cosine_linspace",
  "ddim_linear_leading_50",
)


@pytest.fixture(scope="module")
def reference():
  with np.load(FIXTURE) as data:
    return {key: data[key] for key in data.files}


def _case(reference, name):
  config = json.loads(str(reference[f"{name}/config"]))
  return config, {
    key: reference[f"{name}/{key}"]
    for key in ("alphas_cumprod", "final_alpha_cumprod", "timesteps", "trajectory")
  }


@pytest.mark.parametrize("name", CASES)
def test_beta_schedules_match_diffusers(reference, name):
  config, case = _case(reference, name)
  kwargs = {key: config[key] for key in ("beta_start", "beta_end") if key in config}
  betas = make_betas(config["beta_schedule"], config["num_train_timesteps"], **kwargs)
  # diffusers builds its tables in float32, so agreement is to float32 precision.
  np.testing.assert_allclose(np.cumprod(1.0 - betas), case["alphas_cumprod"], rtol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_timestep_spacings_match_diffusers(reference, name):
  config, case = _case(reference, name)
  timesteps = discrete_timesteps(
    config["num_inference_steps"],
    config["num_train_timesteps"],
    config["timestep_spacing"],
    config.get("steps_offset", 0),
  )
  np.testing.assert_array_equal(timesteps, case["timesteps"])


@pytest.mark.parametrize("name", CASES)
def test_ddim_trajectory_matches_diffusers(reference, name):
  config, case = _case(reference, name)
  mean, std = float(reference["mean"]), float(reference["std"])
  with jax.enable_x64(True):
    process = VPProcess(DiscreteSchedule(case["alphas_cumprod"]))

    def denoise(z, t, cond):
      del cond
      alpha, sigma = (broadcast_to_video(c, z) for c in process.alpha_sigma(t))
      return mean + alpha * std**2 * (z - alpha * mean) / (alpha**2 * std**2 + sigma**2)

    t_cur, t_next = sampling_time_grid(  # the grid the config's sample.* fields build
      process,
      "ddim",
      len(case["timesteps"]),
      config["timestep_spacing"],
      config.get("steps_offset", 0),
      set_alpha_to_one=config["set_alpha_to_one"],
    )
    # The end point is the reference's final alpha_bar.
    final_alpha, _ = process.alpha_sigma(jnp.float64(t_next[-1]))
    np.testing.assert_allclose(final_alpha**2, case["final_alpha_cumprod"], rtol=1e-12)
    solver = ddim_step(denoise, process, eta=0.0, clip_x0=False)
    x = jnp.asarray(reference["x_init"])
    keys = jax.random.split(jax.random.key(0), x.shape[0])
    trajectory = case["trajectory"]
    # Step by step: every intermediate sample matches, not only the last.
    one_step = jax.jit(functools.partial(run_solver, solver))  # compiled once for all steps
    for i in range(len(t_cur)):
      x = one_step(x, (jnp.asarray(t_cur[i : i + 1]), jnp.asarray(t_next[i : i + 1])), keys)
      assert x.dtype == jnp.float64
      np.testing.assert_allclose(x, trajectory[i + 1], rtol=1e-9, atol=1e-12)
    # And the whole grid in one scan gives the same final sample.
    x_scan = run_solver(
      solver, jnp.asarray(reference["x_init"]), (jnp.asarray(t_cur), jnp.asarray(t_next)), keys
    )
    np.testing.assert_allclose(x_scan, trajectory[-1], rtol=1e-9, atol=1e-12)


def test_discrete_schedule_hits_the_knots_and_is_clean_at_zero():
  alphas_cumprod = np.cumprod(1.0 - make_betas("linear", 1000))
  with jax.enable_x64(True):
    schedule = DiscreteSchedule(alphas_cumprod)
    index = np.array([0, 1, 499, 998, 999])
    np.testing.assert_allclose(
      schedule.alpha_bar(index_to_time(index, 1000)), alphas_cumprod[index], rtol=1e-12
    )
    assert float(schedule.alpha_bar(0.0)) == 1.0
    logsnr = np.asarray(schedule(jnp.linspace(0.0, 1.0, 101)))
    assert logsnr[0] == np.inf and np.all(np.diff(logsnr) < 0)


def test_zero_terminal_snr_rescale():
  betas = make_betas("scaled_linear", 1000, 0.00085, 0.012)
  rescaled = np.cumprod(1.0 - rescale_zero_terminal_snr(betas))
  assert rescaled[-1] == pytest.approx(0.0, abs=1e-20)
  assert rescaled[0] == pytest.approx(np.cumprod(1.0 - betas)[0], rel=1e-12)
  assert np.all(np.diff(rescaled) < 0)
  with jax.enable_x64(True):
    alpha, sigma = VPProcess(DiscreteSchedule(rescaled)).alpha_sigma(jnp.float64(1.0))
  assert float(alpha) == 0.0 and float(sigma) == 1.0  # pure noise at t = 1


def test_bad_names_and_steps_list_the_valid_ones():
  with pytest.raises(ConfigError, match="squaredcos_cap_v2"):
    make_betas("cosine_typo")
  with pytest.raises(ConfigError, match="trailing"):
    discrete_timesteps(10, spacing="middle")
  with pytest.raises(ConfigError, match="steps"):
    discrete_timesteps(0)
  with pytest.raises(ConfigError, match="decrease"):
    DiscreteSchedule(np.linspace(0.1, 0.9, 10))


def test_config_switch_builds_the_discrete_process():
  config = bouncing_shapes_unet.get_config("tiny")
  config.diffusion.schedule = "discrete"
  config.diffusion.discrete.beta_schedule = "scaled_linear"
  config.diffusion.discrete.beta_start = 0.00085
  config.diffusion.discrete.beta_end = 0.012
  validate_config(config)
  alphas_cumprod = np.cumprod(1.0 - make_betas("scaled_linear", 1000, 0.00085, 0.012))
  index = np.array([0, 250, 999])
  alpha, _ = make_process(config.diffusion).alpha_sigma(
    index_to_time(index, 1000).astype(np.float32)
  )
  np.testing.assert_allclose(np.asarray(alpha) ** 2, alphas_cumprod[index], rtol=1e-4)
  config.diffusion.discrete.beta_schedule = "cosine"
  with pytest.raises(ConfigError, match="beta_schedule='cosine'.*'scaled_linear'"):
    validate_config(config)


def test_set_alpha_to_one_is_reachable_from_the_config():
  """diffusers' `set_alpha_to_one=False` (Stable Diffusion's DDIM config) as `config.sample`
  fields: the last step stops at alphas_cumprod[0], not at alpha_bar = 1."""
  config = bouncing_shapes_unet.get_config("tiny")
  with config.unlocked():
    config.sample.update(sampler="ddim", spacing="leading", steps_offset=1, steps=10)
    config.sample.update(frame_stagger=0.0, time_power=1.0)
    config.sample.set_alpha_to_one = False
  validate_config(config)
  _, t_next = make_video_sampler(config, None).time_grid
  # index 0 of the 1000 training steps, as diffusers' final_alpha_cumprod = alphas_cumprod[0]
  assert t_next[-1] == index_to_time(0, 1000) == 1 / 1000
  with config.unlocked():
    config.sample.set_alpha_to_one = True
  assert make_video_sampler(config, None).time_grid[1][-1] == 0.0
  with config.unlocked():
    config.sample.spacing = "uniform"
    config.sample.set_alpha_to_one = False
  with pytest.raises(ConfigError, match="set_alpha_to_one=False is DDIM's rule"):
    make_video_sampler(config, None)
