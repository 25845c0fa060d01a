"""Every sampler through VideoSampler, and the errors bad sampler input gets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import EDMProcess, FlowProcess, VPProcess, get_schedule
from jvdm.diffusion.discrete import discrete_schedule
from jvdm.errors import ConfigError, ShapeError
from jvdm.pipelines import VideoSampler
from jvdm.samplers import SAMPLERS, SOLVERS, ddim_step, run_solver
from jvdm.samplers.denoiser import gaussian_denoiser
from jvdm.samplers.grids import sampling_time_grid

MEAN, STD = 0.3, 0.5


def _gaussian_x0_network(process):
  """An "x0-predicting network": the exact posterior mean for data N(MEAN, STD^2)."""

  denoise = gaussian_denoiser(process, MEAN, STD)

  def apply_fn(variables, model_input, t):
    del variables
    return denoise(model_input, t, None)  # VP and flow do not scale the model input

  return apply_fn


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_samples_the_data_distribution(sampler):
  process = (
    FlowProcess(shift=3.0)
    if sampler == "flow_euler"
    else VPProcess(discrete_schedule("scaled_linear", beta_start=0.00085, beta_end=0.012))
  )
  spacing = {"flow_euler": "flow", "lcm": "lcm", "ddim": "leading", "ddpm": "leading"}.get(
    sampler, "karras"
  )
  # First-order samplers narrow the distribution by O(1 / steps); they get more steps.
  first_order = sampler in ("ddim", "ddpm", "euler", "euler_ancestral", "flow_euler")
  num_steps = 4 if sampler == "lcm" else 200 if first_order else 25
  video_sampler = VideoSampler(
    _gaussian_x0_network(process),
    process,
    "x0",
    sampler=sampler,
    num_steps=num_steps,
    spacing=spacing,
    clip_x0=False,
  )
  videos = video_sampler.sample(
    {}, seed=0, num_videos=4, video_shape=(2, 16, 16, 1), batch_size=4, progress=False
  )
  assert videos.shape == (4, 2, 16, 16, 1) and np.all(np.isfinite(videos))
  # Deterministic samplers map N(0, 1) onto the data's N(MEAN, STD^2); stochastic ones sample it;
  # LCM with a non-distilled denoiser returns posterior means (too narrow), so only its mean.
  assert abs(videos.mean() - MEAN) < 0.03
  if sampler != "lcm":
    assert abs(videos.std() - STD) < 0.025, videos.std()
  again = video_sampler.sample(
    {}, seed=0, num_videos=4, video_shape=(2, 16, 16, 1), batch_size=4, progress=False
  )
  np.testing.assert_array_equal(videos, again)


def test_bad_sampler_input_names_the_valid_values():
  process = VPProcess(get_schedule("cosine"))
  apply_fn = _gaussian_x0_network(process)
  with pytest.raises(ConfigError, match="dpmpp_2m"):
    VideoSampler(apply_fn, process, "x0", sampler="dpm++")
  with pytest.raises(ConfigError, match="positive integer, got 0"):
    VideoSampler(apply_fn, process, "x0", num_steps=0)
  with pytest.raises(ConfigError, match="positive integer, got -3"):
    sampling_time_grid(process, "euler", -3)
  with pytest.raises(ConfigError, match="'uniform', 'linspace', 'leading', 'trailing'"):
    VideoSampler(apply_fn, process, "x0", sampler="ddim", spacing="karras")
  with pytest.raises(ConfigError, match="does not combine"):
    VideoSampler(apply_fn, process, "x0", sampler="euler", spacing="karras", frame_stagger=0.5)
  with pytest.raises(ConfigError, match="needs a conditional model and its null condition"):
    VideoSampler(apply_fn, process, "x0", guidance_scale=7.5)
  with pytest.raises(ConfigError, match="'ddim' sampler only"):
    VideoSampler(apply_fn, process, "x0", sampler="unipc", eta=0.5)
  with pytest.raises(ConfigError, match="flow_euler"):
    VideoSampler(apply_fn, FlowProcess(), "x0", sampler="heun")
  with pytest.raises(ConfigError, match="finite largest noise level"):
    sampling_time_grid(FlowProcess(), "multistep", 10, "karras")
  with pytest.raises(ConfigError, match="flow process"):
    sampling_time_grid(EDMProcess(), "flow", 10, "flow")


def test_timesteps_of_the_wrong_shape_are_rejected():
  process = VPProcess(get_schedule("cosine"))
  solver = ddim_step(lambda z, t, c: jnp.zeros_like(z), process)
  x = jnp.zeros((2, 3, 4, 4, 1))
  keys = jax.random.split(jax.random.key(0), 2)
  with pytest.raises(ShapeError, match=r"\[B, T\]=\(2, 3\).*got \(2, 4\)"):
    run_solver(solver, x, jnp.ones((5, 2, 4)), keys)  # T = 4 for a 3-frame video
  with pytest.raises(ShapeError, match=r"\[S, B, T\]"):
    run_solver(solver, x, jnp.ones((5, 2, 3, 1)), keys)
  with pytest.raises(ShapeError, match="noise must be"):
    run_solver(solver, x, jnp.linspace(1, 0, 5), keys, noise=jnp.zeros((3,) + x.shape))


def test_solvers_registry_and_samplers_agree():
  assert set(SAMPLERS) == set(SOLVERS)


@pytest.mark.parametrize(
  "process,sampler,spacing",
  [
    (VPProcess(get_schedule("cosine")), "unipc", "linspace"),
    (EDMProcess(), "heun", "karras"),
    (FlowProcess(shift=3.0), "dpmpp_2m", "trailing"),
  ],
)
def test_diffusers_spacings_on_continuous_processes(process, sampler, spacing):
  """The grid is built outside jit for processes without a table of training indices too."""
  video_sampler = VideoSampler(
    _gaussian_x0_network(process),
    process,
    "x0",
    sampler=sampler,
    num_steps=5,
    spacing=spacing,
    clip_x0=False,
  )
  videos = video_sampler.sample({}, seed=0, num_videos=2, video_shape=(2, 4, 4, 1), progress=False)
  assert np.all(np.isfinite(videos))
  grid = np.asarray(video_sampler.time_grid)
  assert grid[0] > grid[1] > grid[-2] > grid[-1] == 0.0
