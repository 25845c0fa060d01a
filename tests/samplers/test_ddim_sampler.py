"""DDIM and the scan driver, tested with the exact denoiser of Gaussian data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import VPProcess, get_schedule
from jvdm.samplers.denoiser import gaussian_denoiser
from jvdm.errors import ConfigError
from jvdm.pipelines import VideoSampler
from jvdm.samplers import ddim_step, uniform_time_grid
from jvdm.samplers import run_solver as _run_solver
from jvdm.samplers.driver import staggered_time_grid

run_solver = jax.jit(_run_solver, static_argnums=0)

MEAN, STD = 0.3, 0.5
PROCESS = VPProcess(get_schedule("cosine"))


def gaussian_posterior_mean(variables, z, t):
  """E[x | z_t] for x ~ N(MEAN, STD^2) per pixel: the exact x0 denoiser."""
  del variables
  return gaussian_denoiser(PROCESS, MEAN, STD)(z, t, None)


def denoise(z, t, cond):
  del cond
  return gaussian_posterior_mean(None, z, t)


def _sampler(steps, eta=0.0, frame_stagger=0.0):
  return VideoSampler(
    gaussian_posterior_mean,
    PROCESS,
    "x0",
    num_steps=steps,
    eta=eta,
    clip_x0=False,
    frame_stagger=frame_stagger,
  )


@pytest.mark.parametrize("eta, frame_stagger", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.5)])
def test_samples_have_the_data_distribution(eta, frame_stagger):
  videos = _sampler(200, eta, frame_stagger).sample(
    {}, seed=0, num_videos=64, video_shape=(4, 8, 8, 1), batch_size=64, progress=False
  )
  assert videos.shape == (64, 4, 8, 8, 1)
  assert abs(videos.mean() - MEAN) < 0.01
  assert abs(videos.std() - STD) < 0.02  # sampling error ~0.003, DDPM-like bias at eta=1


def test_deterministic_ddim_converges_to_the_exact_flow_map():
  # For Gaussian data the probability-flow ODE is linear: it maps the starting noise z_1 to
  # MEAN + STD * (z_1 - alpha_1 MEAN) / sqrt(alpha_1^2 STD^2 + sigma_1^2).
  shape = (2, 3, 4, 4, 1)
  x_init = jax.random.normal(jax.random.key(0), shape)
  alpha1, sigma1 = PROCESS.alpha_sigma(jnp.float32(1.0))
  exact = MEAN + STD * (x_init - alpha1 * MEAN) / jnp.sqrt(alpha1**2 * STD**2 + sigma1**2)
  keys = jax.random.split(jax.random.key(1), shape[0])
  errors = []
  for steps in (20, 80, 320):
    out = run_solver(
      ddim_step(denoise, PROCESS, clip_x0=False), x_init, uniform_time_grid(steps), keys
    )
    errors.append(float(jnp.max(jnp.abs(out - exact))))
  assert errors[2] < 1e-2
  # DDIM is a first-order solver: 4x the steps, about 1/4 the error.
  assert 3.0 < errors[0] / errors[1] < 5.0 and 3.0 < errors[1] / errors[2] < 5.0


def test_per_frame_time_grid():
  shape = (1, 2, 4, 4, 1)
  steps = 10
  x_init = jax.random.normal(jax.random.key(0), shape)
  keys = jax.random.split(jax.random.key(1), 1)
  solver = ddim_step(denoise, PROCESS, clip_x0=False)
  shared = uniform_time_grid(steps)
  # [B, T] times that are equal across frames give the same result as scalar times.
  same = run_solver(
    solver, x_init, jnp.broadcast_to(shared[:, None, None], (steps + 1, 1, 2)), keys
  )
  np.testing.assert_allclose(same, run_solver(solver, x_init, shared, keys), atol=1e-6)
  # Frame 0 held at one time (t_cur == t_next) is left unchanged while frame 1 is denoised.
  held = jnp.stack([jnp.full(steps + 1, 0.5), shared], axis=-1)[:, None, :]
  out = run_solver(solver, x_init, held, keys)
  np.testing.assert_allclose(out[:, 0], x_init[:, 0], atol=1e-5)
  np.testing.assert_allclose(out[:, 1], same[:, 1], atol=1e-5)


def test_staggered_grid_lags_later_frames_and_spans_the_whole_range():
  np.testing.assert_allclose(
    staggered_time_grid(10, 4, 0.0),
    jnp.broadcast_to(uniform_time_grid(10)[:, None], (11, 4)),
    atol=1e-6,
  )
  grid = np.asarray(staggered_time_grid(40, 5, 0.5))
  assert grid.shape == (41, 5)
  np.testing.assert_allclose(grid[0], 1.0)
  np.testing.assert_allclose(grid[-1], 0.0, atol=1e-6)
  assert np.all(np.diff(grid, axis=0) <= 1e-7)  # every frame only gets cleaner
  assert np.all(np.diff(grid, axis=1) >= -1e-7)  # a later frame is never cleaner
  assert grid[20, 0] == 0.0 and grid[20, 4] == 1.0  # frame 0 done, the last not started
  with pytest.raises(ConfigError, match="stagger"):
    staggered_time_grid(10, 4, 1.0)


def test_time_power_crowds_each_frames_steps_near_clean_data():
  linear = np.asarray(staggered_time_grid(40, 5, 0.5))
  warped = np.asarray(staggered_time_grid(40, 5, 0.5, time_power=3.0))
  np.testing.assert_allclose(warped, linear**3, rtol=1e-6)
  # Frame 0 gets 20 steps: linear in t its last step starts at 1/20, warped at 1/20^3.
  last_start = lambda grid: grid[:, 0][grid[:, 0] > 0].min()
  assert last_start(linear) == pytest.approx(1 / 20) and last_start(warped) == pytest.approx(
    1 / 8000
  )
  shared = VideoSampler(lambda p, x, t: x, PROCESS, "x0", num_steps=4, time_power=2.0)
  np.testing.assert_allclose(shared.time_grid, [1.0, 0.5625, 0.25, 0.0625, 0.0])
  with pytest.raises(ConfigError, match="time power must be in \\[1, 10\\].*got 0.5"):
    staggered_time_grid(10, 4, 0.5, time_power=0.5)
  with pytest.raises(ConfigError, match="time_power=2.0 warps the 'uniform' spacing"):
    VideoSampler(
      lambda p, x, t: x, PROCESS, "x0", sampler="dpmpp_2m", spacing="karras", time_power=2.0
    )


def test_staggered_sampling_converges_to_the_exact_flow_map():
  # The Gaussian denoiser treats frames independently, so each frame follows its own DDIM
  # grid from t = 1 to 0 and must land on the same exact flow map as with a shared grid.
  shape = (2, 4, 4, 4, 1)
  x_init = jax.random.normal(jax.random.key(0), shape)
  alpha1, sigma1 = PROCESS.alpha_sigma(jnp.float32(1.0))
  exact = MEAN + STD * (x_init - alpha1 * MEAN) / jnp.sqrt(alpha1**2 * STD**2 + sigma1**2)
  grid = staggered_time_grid(640, shape[1], 0.5)
  grid = jnp.broadcast_to(grid[:, None], (grid.shape[0],) + shape[:2])
  keys = jax.random.split(jax.random.key(1), shape[0])
  out = run_solver(ddim_step(denoise, PROCESS, clip_x0=False), x_init, grid, keys)
  np.testing.assert_allclose(out, exact, atol=1e-2)


def test_same_seed_same_videos_and_independent_of_batch_size():
  sampler = _sampler(4, eta=1.0)
  a = sampler.sample(
    {}, seed=3, num_videos=5, video_shape=(2, 4, 4, 1), batch_size=2, progress=False
  )
  b = sampler.sample(
    {}, seed=3, num_videos=5, video_shape=(2, 4, 4, 1), batch_size=5, progress=False
  )
  c = sampler.sample(
    {}, seed=4, num_videos=5, video_shape=(2, 4, 4, 1), batch_size=5, progress=False
  )
  np.testing.assert_allclose(a, b, atol=1e-6)
  assert not np.allclose(a, c)


def test_one_compile_per_shape_and_step_count():
  sampler = _sampler(7)
  for seed in range(3):
    sampler.sample(
      {}, seed=seed, num_videos=3, video_shape=(2, 4, 4, 1), batch_size=2, progress=False
    )
  assert sampler.jitted_sample_batch._cache_size() == 1  # pylint: disable=protected-access


def test_bad_sampler_arguments():
  with pytest.raises(ConfigError, match="ddim"):
    VideoSampler(gaussian_posterior_mean, PROCESS, "x0", sampler="plms")
  with pytest.raises(ConfigError, match="positive"):
    VideoSampler(gaussian_posterior_mean, PROCESS, "x0", num_steps=0)
  with pytest.raises(ConfigError, match="eta"):
    VideoSampler(gaussian_posterior_mean, PROCESS, "x0", eta=-1.0)
