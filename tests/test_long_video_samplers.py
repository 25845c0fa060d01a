"""Training-free long videos from denoisers: Gen-L-Video co-denoising, FreeNoise noise
rescheduling and autoregressive extension (SEINE / VidRD), with analytic denoisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import EDMProcess, FlowProcess, VPProcess, get_schedule
from jvdm.errors import ConfigError, ShapeError
from jvdm.pipelines import VideoSampler
from jvdm.samplers import ddim_step, run_solver, uniform_time_grid
from jvdm.samplers.denoiser import gaussian_denoiser as exact_gaussian_denoiser
from jvdm.pipelines.long.gen_l_video import co_denoising
from jvdm.pipelines.long.extension import extend
from jvdm.pipelines.long.freenoise import rescheduled_noise, rescheduled_noise_per_sample
from jvdm.ops.windows import window_starts, window_weights

MEAN, STD = 0.3, 0.5
VP = VPProcess(get_schedule("cosine"))
FRAME = (3, 3, 1)


def gaussian_denoiser(process):
  """The exact posterior mean for data N(MEAN, STD^2) i.i.d.: frame j's x0 depends on frame j."""
  return exact_gaussian_denoiser(process, MEAN, STD)


def mixing_denoiser(process):
  """A denoiser whose frames see their window: the Gaussian one plus the window's mean frame."""
  per_frame = gaussian_denoiser(process)
  return lambda z, t, cond: per_frame(z, t, cond) + 0.2 * z.mean(axis=1, keepdims=True)


def cond_denoiser(z, t, cond):
  """Returns its per-video (or per-window) scalar condition on every pixel."""
  del t
  return jnp.broadcast_to(cond.reshape((-1,) + (1,) * (z.ndim - 1)), z.shape)


def videos(batch, frames, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, frames) + FRAME)


def keys_for(batch, seed=0):
  return jax.random.split(jax.random.key(seed), batch)


# --- Gen-L-Video co-denoising --------------------------------------------------------------


def test_co_denoising_with_one_window_is_plain_sampling():
  denoise = mixing_denoiser(VP)
  run = lambda d: run_solver(ddim_step(d, VP), videos(2, 4), uniform_time_grid(4), keys_for(2))
  np.testing.assert_array_equal(run(co_denoising(denoise, window=4, stride=2)), run(denoise))


@pytest.mark.parametrize(
  "window,stride,weighting,window_batch,per_frame_t",
  [(3, 1, "uniform", None, False), (4, 3, "pyramid", None, True), (5, 2, "uniform", 2, True)],
)
def test_co_denoising_leaves_a_per_frame_denoiser_unchanged(
  window, stride, weighting, window_batch, per_frame_t
):
  denoise = gaussian_denoiser(VP)
  z = videos(2, 7)
  t = jnp.linspace(0.2, 0.9, 14).reshape(2, 7) if per_frame_t else jnp.array([0.3, 0.8])
  long_denoise = jax.jit(co_denoising(denoise, window, stride, weighting, window_batch))
  np.testing.assert_allclose(long_denoise(z, t, None), denoise(z, t, None), atol=1e-6)


def test_co_denoising_weightings_and_window_batches():
  denoise = mixing_denoiser(VP)
  z, t = videos(2, 6), jnp.array([0.4, 0.7])
  uniform = co_denoising(denoise, 4, 2)(z, t, None)
  pyramid = co_denoising(denoise, 4, 2, "pyramid")(z, t, None)
  assert uniform.shape == z.shape
  assert float(jnp.abs(uniform - pyramid).max()) > 1e-3
  # Groups of 2 of the 3 windows (the last group padded) give the single call's result.
  grouped = co_denoising(denoise, 3, 2, window_batch=2)(z, t, None)
  np.testing.assert_allclose(grouped, co_denoising(denoise, 3, 2)(z, t, None), atol=1e-6)


def test_co_denoising_averages_windows_uniformly_by_default():
  """Gen-L-Video's merge (`pipeline_tuning_free.py:595-597`: value / count): a frame is the
  plain mean of its windows, whatever its place in them."""
  prompts = jnp.array([[1.0, 2.0, 4.0]])  # windows [0, 3), [2, 5), [4, 7)
  x0 = co_denoising(cond_denoiser, 3, 2, per_window_cond=True)(
    videos(1, 7), jnp.array([0.5]), prompts
  )
  np.testing.assert_allclose(x0[0, :, 0, 0, 0], [1, 1, 1.5, 2, 3, 4, 4], rtol=1e-6)


@pytest.mark.parametrize("weighting", ["uniform", "pyramid"])
def test_co_denoising_gives_each_window_its_condition(weighting):
  frames, window, stride = 7, 3, 2
  starts = window_starts(frames, window, stride)  # (0, 2, 4)
  prompts = jnp.array([[1.0, 2.0, 4.0], [-1.0, 0.0, 3.0]])  # [B, W]
  x0 = co_denoising(cond_denoiser, window, stride, weighting, per_window_cond=True)(
    videos(2, frames), jnp.array([0.5, 0.5]), prompts
  )
  weights = window_weights(window, weighting)
  total, norm = np.zeros((2, frames)), np.zeros(frames)
  for w, start in enumerate(starts):
    total[:, start : start + window] += weights * np.asarray(prompts)[:, w : w + 1]
    norm[start : start + window] += weights
  np.testing.assert_allclose(x0[..., 0, 0, 0], total / norm, rtol=1e-6)
  # A per-video condition reaches every window.
  per_video = co_denoising(cond_denoiser, window, stride)(
    videos(2, frames), jnp.array([0.5, 0.5]), jnp.array([5.0, 6.0])
  )
  np.testing.assert_allclose(per_video[:, :, 0, 0, 0], [[5.0] * frames, [6.0] * frames])
  with pytest.raises(ShapeError, match="count doesn't match the segments.*3 windows"):
    co_denoising(cond_denoiser, window, stride, per_window_cond=True)(
      videos(2, frames), jnp.array([0.5, 0.5]), prompts[:, :2]
    )


def test_co_denoising_rejects_bad_windows():
  denoise = gaussian_denoiser(VP)
  with pytest.raises(ConfigError, match="window of 5 frames does not fit a video of 4 frames"):
    co_denoising(denoise, 5, 2)(videos(1, 4), jnp.array([0.5]), None)
  with pytest.raises(ConfigError, match="stride must be in \\[1, window=4\\].*got 0"):
    co_denoising(denoise, 4, 0)
  with pytest.raises(ConfigError, match="got 5"):
    co_denoising(denoise, 4, 5)
  with pytest.raises(ConfigError, match="window weighting 'gauss'"):
    co_denoising(denoise, 4, 2, "gauss")
  with pytest.raises(ConfigError, match="window_batch"):
    co_denoising(denoise, 4, 2, window_batch=0)
  with pytest.raises(ShapeError, match="got \\(1, 3\\)"):
    co_denoising(denoise, 4, 2)(videos(1, 6), jnp.zeros((1, 3)), None)


# --- FreeNoise noise rescheduling ----------------------------------------------------------


def test_rescheduled_noise_shuffles_the_first_window():
  frames, window, stride = 14, 4, 3  # blocks start at 4, 7, 10, 13 (the last cut to 1 frame)
  noise = np.asarray(rescheduled_noise(jax.random.key(0), frames, (2, 2, 1), window, stride))
  assert noise.shape == (frames, 2, 2, 1)
  rows = noise.reshape(frames, -1)
  # Which first-window frame each frame is (first-window frames are distinct a.s.).
  matches = (rows[:, None] == rows[None, :window]).all(-1)
  assert (matches.sum(1) == 1).all()
  source = matches.argmax(1)
  np.testing.assert_array_equal(source[:window], np.arange(window))
  shuffled = False
  for start in range(window, frames, stride):
    block = source[start : start + stride]
    origin = source[start - window : start - window + stride]
    assert len(set(block)) == len(block) and set(block) <= set(origin)
    if len(block) == stride:
      np.testing.assert_array_equal(np.sort(block), np.sort(origin))
      shuffled |= not np.array_equal(block, origin)
  assert shuffled


def test_rescheduled_noise_keys_and_jit():
  args = (9, (2, 2, 1), 4, 2)
  keys = keys_for(3)
  per_sample = rescheduled_noise_per_sample(keys, *args)
  assert per_sample.shape == (3, 9, 2, 2, 1)
  np.testing.assert_array_equal(per_sample[1], rescheduled_noise(keys[1], *args))
  assert not np.array_equal(per_sample[0], per_sample[1])
  jitted = jax.jit(rescheduled_noise, static_argnums=(1, 2, 3, 4))
  np.testing.assert_array_equal(jitted(keys[2], *args), per_sample[2])
  # With no frames past the first window, it is the first window's i.i.d. noise.
  assert rescheduled_noise(keys[0], 4, (2,), 4, 2).shape == (4, 2)


@pytest.mark.parametrize(
  "frames,window,stride,message",
  [(4, 5, 2, "does not fit a video of 4 frames"), (8, 4, 0, "got 0"), (8, 4, 5, "got 5")],
)
def test_rescheduled_noise_rejects_bad_windows(frames, window, stride, message):
  with pytest.raises(ConfigError, match=message):
    rescheduled_noise(jax.random.key(0), frames, (2,), window, stride)


# --- autoregressive extension --------------------------------------------------------------


def _gaussian_x0_network(process):
  denoise = gaussian_denoiser(process)
  return lambda variables, model_input, t: denoise(model_input, t, None)


@pytest.mark.parametrize(
  "mode,sampler,stagger,power",
  [("clean", "ddpm", 0.0, 1.0), ("replace", "dpmpp_2m", 0.5, 1.0), ("clean", "ddpm", 0.5, 2.0)],
)
def test_extension_starts_with_plain_sampling(mode, sampler, stagger, power):
  window = 4
  plain = VideoSampler(
    _gaussian_x0_network(VP),
    VP,
    "x0",
    sampler=sampler,
    num_steps=6,
    frame_stagger=stagger,
    time_power=power,
    clip_x0=False,
  )
  expected = plain.sample({}, seed=3, num_videos=2, video_shape=(window,) + FRAME, progress=False)
  base = jax.random.key(3)
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(2))
  video = extend(
    gaussian_denoiser(VP),
    VP,
    keys,
    7,
    window,
    2,
    FRAME,
    sampler=sampler,
    num_steps=6,
    clip_x0=False,
    mode=mode,
    frame_stagger=stagger,
    time_power=power,
  )
  assert video.shape == (2, 7) + FRAME and np.all(np.isfinite(video))
  np.testing.assert_allclose(video[:, :window], expected, atol=1e-6)


@pytest.mark.parametrize(
  "mode,process,sampler",
  [
    ("clean", VP, "ddim"),
    ("clean", FlowProcess(), "unipc"),
    ("clean", EDMProcess(), "heun"),
    ("replace", FlowProcess(), "ddim"),
  ],
)
def test_extension_clips_continue_their_context(mode, process, sampler):
  """Each clip's context frames come out as the previous clip's last frames, exactly (clean
  mode holds them; replace mode's last replacement is at t = 0, where sigma = 0 for the flow
  process), and the video is the first clip followed by the clips' new frames."""
  window, context, frames = 4, 3, 7  # 4 clips: 4 + 1 + 1 + 1 frames
  args = (mixing_denoiser(process), process, keys_for(2), frames, window, context, FRAME)
  settings = dict(sampler=sampler, num_steps=4, mode=mode, clip_x0=False)
  clips = extend(*args, return_clips=True, **settings)
  assert clips.shape == (2, 4, window) + FRAME and np.all(np.isfinite(clips))
  np.testing.assert_array_equal(clips[:, 1:, :context], clips[:, :-1, -context:])
  video = extend(*args, **settings)
  stitched = jnp.concatenate([clips[:, 0], clips[:, 1:, context:].reshape((2, -1) + FRAME)], 1)
  np.testing.assert_array_equal(video, stitched)


def test_extension_keys_condition_length_and_single_trace():
  process = FlowProcess()
  keys = keys_for(2, seed=1)
  run = lambda k, frames=10: extend(
    mixing_denoiser(process), process, k, frames, 4, 2, FRAME, num_steps=3, clip_x0=False
  )
  video = run(keys)
  assert video.shape == (2, 10) + FRAME  # 4 clips give 4 + 2 + 2 + 2 frames
  np.testing.assert_array_equal(run(keys), video)
  np.testing.assert_allclose(run(keys[1:]), video[1:], atol=1e-6)  # per-video keys
  assert run(keys, frames=9).shape == (2, 9) + FRAME  # the last clip cut
  # The condition reaches every clip (the last DDIM step returns x0 at the flow's t = 0).
  out = extend(
    cond_denoiser, process, keys, 6, 4, 1, FRAME, num_steps=2, cond=jnp.array([0.25, -0.5])
  )
  np.testing.assert_allclose(out[..., 0, 0, 0], [[0.25] * 6, [-0.5] * 6])
  # The clip body is traced once, whatever the number of clips.
  traces = []

  def counting(z, t, cond):
    traces.append(z.shape)
    return gaussian_denoiser(process)(z, t, cond)

  for frames in (6, 40):
    jax.eval_shape(
      lambda k, n=frames: extend(counting, process, k, n, 4, 2, FRAME, num_steps=3), keys
    )
  assert len(traces) == 2


@pytest.mark.parametrize(
  "overrides,error,message",
  [
    (dict(context_frames=0), ConfigError, "context_frames must be in \\[1, window - 1\\]"),
    (dict(context_frames=4), ConfigError, "got 4"),
    (dict(num_frames=3), ConfigError, "window=4 frames is longer than the requested num_frames=3"),
    (dict(mode="inpaint"), ConfigError, "Unknown extension mode 'inpaint'"),
    (dict(sampler="dpm++"), ConfigError, "Unknown sampler 'dpm\\+\\+'"),
    (dict(sampler="unipc", eta=0.5), ConfigError, "'ddim' sampler only"),
    (dict(num_steps=0), ConfigError, "positive integer, got 0"),
    (dict(frame_shape=(3, 3)), ShapeError, "frame_shape must be \\(H, W, C\\)"),
  ],
)
def test_extension_rejects_bad_input(overrides, error, message):
  args = dict(
    denoise=gaussian_denoiser(VP),
    process=VP,
    keys=keys_for(1),
    num_frames=8,
    window=4,
    context_frames=2,
    frame_shape=FRAME,
  )
  with pytest.raises(error, match=message):
    extend(**{**args, **overrides})
