"""FIFO-Diffusion's queue (jvdm.pipelines.long.fifo) with analytic denoisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import FlowProcess, VPProcess, get_schedule
from jvdm.diffusion.discrete import discrete_schedule
from jvdm.errors import ConfigError, ShapeError
from jvdm.samplers import ddim_step, run_solver, uniform_time_grid
from jvdm.samplers.denoiser import alpha_sigma_like
from jvdm.pipelines.long.fifo import FIFODiffusion, coherent_tail, tail_noise

VP = VPProcess(get_schedule("cosine"))
DISCRETE = VPProcess(discrete_schedule("linear"))  # DDPM's betas, 1000 training indices
FRAME = (4, 4, 1)


def window_denoiser(process):
  """x0 of each frame depends on its window (the window's mean) and on its own t."""

  def denoise(z, t, cond):
    del cond
    alpha, sigma = alpha_sigma_like(process, t, z)
    x0 = alpha * 0.25 * z / (alpha**2 * 0.25 + sigma**2)
    return x0 + 0.1 * jnp.tanh(z.mean(axis=1, keepdims=True))

  return denoise


def gaussian_denoiser(process, variance=0.25):
  """The exact posterior mean E[x0 | z_t] for x0 ~ N(0, variance), frame by frame."""

  def denoise(z, t, cond):
    del cond
    alpha, sigma = alpha_sigma_like(process, t, z)
    return alpha * variance * z / (alpha**2 * variance + sigma**2)

  return denoise


def recording(denoise, seen):
  """`denoise`, appending every call's (z, t) as numpy to `seen` (under scan too)."""

  def wrapped(z, t, cond):
    jax.debug.callback(lambda z, t: seen.append((np.asarray(z), np.asarray(t))), z, t)
    return denoise(z, t, cond)

  return wrapped


def keys_for(batch, seed=0):
  return jax.random.split(jax.random.key(seed), batch)


def base_clip(batch, window, seed=1):
  return 0.5 * jax.random.normal(jax.random.key(seed), (batch, window) + FRAME)


@pytest.mark.parametrize("process", [VP, FlowProcess()])
def test_one_level_per_window_is_ordinary_sampling(process):
  """frames_per_level = window: each window sits at one level and steps as a whole, so a
  window that enters the tail as fresh noise leaves the head as a plain sampling run."""
  window, levels = 3, 4
  fifo = FIFODiffusion(
    window=window,
    num_partitions=levels,
    frames_per_level=window,
    lookahead=False,
    eta=0.0,
    clip_x0=False,
  )
  assert fifo.num_levels == levels
  denoise, keys = window_denoiser(process), keys_for(2)
  video = jax.jit(lambda k, b: fifo.sample(denoise, process, k, b, 4 * levels * window))(
    keys, base_clip(2, window)
  )
  assert video.shape == (2, 4 * levels * window) + FRAME
  # Warm-up keeps the last initial window; the noise entering after iteration i leaves as
  # output window i + 1.
  for i in range(3):
    noise = tail_noise(keys, i, (window,) + FRAME)
    plain = run_solver(
      ddim_step(denoise, process, clip_x0=False), noise, uniform_time_grid(levels), keys
    )
    np.testing.assert_allclose(video[:, (i + 1) * window : (i + 2) * window], plain, atol=1e-5)


@pytest.mark.parametrize(
  "process,spacing", [(VP, "uniform"), (DISCRETE, "linspace"), (DISCRETE, "trailing")]
)
def test_every_popped_frame_is_plain_ddim_on_its_noise(process, spacing):
  """Diagonal denoising with lookahead and a per-frame (exact Gaussian) denoiser: each frame
  walks the S levels from its tail noise to the head, so it leaves the queue as plain DDIM on
  its own noise over the same S-step grid."""
  window = 4
  fifo = FIFODiffusion(window=window, num_partitions=2, eta=0.0, clip_x0=False, spacing=spacing)
  denoise, keys = gaussian_denoiser(process), keys_for(2)
  video = jax.jit(lambda k, b: fifo.sample(denoise, process, k, b, 12))(keys, base_clip(2, window))
  levels = fifo.levels(process)
  solver = ddim_step(denoise, process, clip_x0=False)
  for i in range(3):  # the noise entering after iteration i is output frame window + i
    noise = tail_noise(keys, i, (1,) + FRAME)
    plain = run_solver(solver, noise, levels[::-1], keys)
    np.testing.assert_allclose(video[:, window + i : window + i + 1], plain, atol=1e-5)


def test_head_slots_are_clean_output_frames():
  """The lookahead head holds output frames: the model sees them at the grid's cleanest level
  (t = 0), as the authors' first timestep, not at the first noisy level; the initial head is
  base frame 0 itself."""
  window = 4
  fifo = FIFODiffusion(window=window, num_partitions=2, eta=0.0)
  seen = []
  base = base_clip(1, window)
  fifo.sample(recording(gaussian_denoiser(VP), seen), VP, keys_for(1), base, 8)
  z, t = seen[0]  # the first iteration: [windows, window, ...] and [windows, window]
  head = window // 2
  levels = fifo.levels(VP)
  np.testing.assert_array_equal(t[0, :head], 0.0)
  np.testing.assert_allclose(t[0, head:], levels[1 : head + 1], rtol=1e-6)  # queue levels 1, 2
  # Base frame 0 at t = 0 (the cosine schedule's clipped log-SNR leaves sigma ~ 1e-3).
  np.testing.assert_allclose(z[0, :head], np.broadcast_to(base[:, 0], (head,) + FRAME), atol=5e-3)


def test_levels_follow_the_base_samplers_spacing():
  """S = 4 levels: "uniform" in t; "linspace" on a DDPM schedule is the authors' DDIM
  timesteps, linspace(0, 999, 4).round() = 0, 333, 666, 999, i.e. t = (k + 1) / 1000."""
  fifo = FIFODiffusion(window=4, num_partitions=1, lookahead=False)
  np.testing.assert_allclose(fifo.levels(VP), [0.0, 0.25, 0.5, 0.75, 1.0])
  authors = FIFODiffusion(window=4, num_partitions=1, lookahead=False, spacing="linspace")
  np.testing.assert_allclose(authors.levels(DISCRETE), [0.0, 0.001, 0.334, 0.667, 1.0])


def test_eta_defaults_to_the_authors():
  assert FIFODiffusion(window=4).eta == 1.0  # their --eta default
  assert FIFODiffusion(window=4, sampler="euler").eta == 0.0  # no eta to set
  stochastic = FIFODiffusion(window=4, num_partitions=2)
  deterministic = FIFODiffusion(window=4, num_partitions=2, eta=0.0)
  run = lambda fifo: fifo.sample(gaussian_denoiser(VP), VP, keys_for(1), base_clip(1, 4), 8)
  assert not np.allclose(run(stochastic), run(deterministic), atol=1e-3)


@pytest.mark.parametrize(
  "lookahead,tail,sampler,frames_per_level",
  [(True, "gaussian", "ddim", 1), (False, "ouroboros", "euler", 1), (True, "ouroboros", "ddpm", 2)],
)
def test_shapes_determinism_and_per_video_keys(lookahead, tail, sampler, frames_per_level):
  fifo = FIFODiffusion(
    window=4,
    num_partitions=2,
    frames_per_level=frames_per_level,
    lookahead=lookahead,
    tail=tail,
    sampler=sampler,
  )
  run = jax.jit(lambda k, b: fifo.sample(window_denoiser(VP), VP, k, b, 12))
  keys, base = keys_for(3), base_clip(3, 4)
  video = run(keys, base)
  assert video.shape == (3, 12) + FRAME and np.all(np.isfinite(video))
  np.testing.assert_array_equal(run(keys, base), video)
  # Video i depends on keys[i] and base[i] only.
  np.testing.assert_allclose(run(keys[1:], base[1:]), video[1:], atol=1e-5)
  assert not np.allclose(run(keys_for(3, seed=5), base), video)


def test_video_starts_at_the_base_clip():
  """One partition, no lookahead: the queue starts as the base clip at levels 1..window, so the
  first output frame is the base frame 0 stepped from level 1 to 0: with a denoiser that knows
  the base clip, exactly it."""
  window = 4
  base = base_clip(1, window)
  fifo = FIFODiffusion(window=window, num_partitions=1, lookahead=False, clip_x0=False)
  oracle = lambda z, t, cond: jnp.broadcast_to(base[:, :1], z.shape)
  video = fifo.sample(oracle, FlowProcess(), keys_for(1), base, 8)
  np.testing.assert_allclose(video[:, 0], base[:, 0], atol=1e-6)


def test_conditions_reach_every_window():
  fifo = FIFODiffusion(window=2, num_partitions=2, clip_x0=False)
  seen = []

  def denoise(z, t, cond):
    seen.append((z.shape, cond.shape))
    return jnp.broadcast_to(cond[:, None, None, None, None], z.shape)

  video = fifo.sample(
    denoise, FlowProcess(), keys_for(2), base_clip(2, 2), 6, cond=jnp.array([0.5, -0.25])
  )
  # 2 videos x 4 windows (lookahead: stride 1 over 1 + 4 frames) fold into the batch.
  assert seen[0] == ((8, 2) + FRAME, (8,))
  np.testing.assert_allclose(video[..., 0, 0, 0], [[0.5] * 6, [-0.25] * 6], atol=1e-6)


def test_coherent_tail_limits():
  previous, noise = base_clip(2, 1), jax.random.normal(jax.random.key(3), (2, 1) + FRAME)
  np.testing.assert_allclose(coherent_tail(previous, noise, 1.0), previous, atol=1e-6)
  np.testing.assert_allclose(coherent_tail(previous, noise, 0.0), noise, atol=1e-6)
  mixed = coherent_tail(previous, noise, 0.5)
  # The mean (the zero frequency) comes from `previous`.
  np.testing.assert_allclose(mixed.mean(axis=(2, 3)), previous.mean(axis=(2, 3)), atol=1e-6)


@pytest.mark.parametrize(
  "fields,message",
  [
    (dict(frames_per_level=3), "must divide the window"),
    (dict(window=3), "even window"),
    (dict(tail="uniform"), "Unknown FIFO tail"),
    (dict(sampler="dpmpp_2m"), "single-step solver"),
    (dict(sampler="euler", eta=0.5), "'ddim' sampler only"),
    (dict(num_partitions=0), "num_partitions >= 1"),
    (dict(tail_cutoff=1.5), "tail_cutoff"),
  ],
)
def test_bad_settings_raise(fields, message):
  with pytest.raises(ConfigError, match=message):
    FIFODiffusion(**{"window": 4, **fields})


def test_bad_lengths_raise():
  fifo = FIFODiffusion(window=4, num_partitions=3, frames_per_level=2)
  with pytest.raises(ConfigError, match="queue of 12 frames .* got num_frames=8"):
    fifo.sample(window_denoiser(VP), VP, keys_for(1), base_clip(1, 4), 8)
  with pytest.raises(ConfigError, match="multiple of frames_per_level=2"):
    fifo.sample(window_denoiser(VP), VP, keys_for(1), base_clip(1, 4), 13)
  with pytest.raises(ShapeError, match="base clip must be"):
    fifo.sample(window_denoiser(VP), VP, keys_for(1), base_clip(1, 3), 12)
