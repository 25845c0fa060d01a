"""Long videos: the methods on analytic denoisers (Gen-L-Video co-denoising, FreeNoise noise
rescheduling, autoregressive extension) and LongVideoSampler running every method on tiny
networks."""

import dataclasses
import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.builders import get_model, make_process, null_condition_for
from jvdm.diffusion import EDMProcess, FlowProcess, VPProcess, get_schedule
from jvdm.errors import ConfigError, ShapeError
from jvdm.ops.windows import window_starts, window_weights
from jvdm.pipelines import VideoSampler
from jvdm.pipelines.long.extension import extend
from jvdm.pipelines.long.freenoise import (
  frame_conditions,
  injection_times,
  rescheduled_noise,
  rescheduled_noise_per_sample,
)
from jvdm.pipelines.long.gen_l_video import co_denoising
from jvdm.pipelines.long.long_video import LongVideoSampler, METHODS
from jvdm.samplers import ddim_step, run_solver, uniform_time_grid
from jvdm.samplers.denoiser import gaussian_denoiser as exact_gaussian_denoiser
from jvdm.samplers.grids import sampling_time_grid


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


WINDOW, FRAMES = 4, 8
SHAPE = (FRAMES, 16, 16, 3)


@functools.lru_cache(maxsize=None)
def _setup(name):
  module = bouncing_shapes_unet if name == "unet" else bouncing_shapes_dit
  config = module.get_config("tiny")
  model = get_model(config)
  variables = jax.jit(model.init)(
    jax.random.key(1), jnp.zeros((1, WINDOW, 16, 16, 3)), jnp.zeros((1,))
  )
  # Perturb the zero-initialized output layers, so that the network is not the zero map.
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(
    tree, [leaf + 0.05 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
  )
  base = VideoSampler(
    model.apply, make_process(config.diffusion), config.diffusion.prediction, num_steps=2
  )
  return model, params, base


def _sampler(method, name="unet", **fields):
  model, params, base = _setup(name)
  fields.setdefault("num_partitions", 1)
  return LongVideoSampler(base, model, method, WINDOW, **fields), params


@pytest.mark.parametrize("method", METHODS)
def test_every_method_shapes_and_seeds(method):
  sampler, params = _sampler(method)
  run = lambda seed: sampler.sample(params, seed, 2, SHAPE, progress=False)
  videos = run(0)
  assert videos.shape == (2,) + SHAPE and np.all(np.isfinite(videos))
  np.testing.assert_array_equal(run(0), videos)
  assert not np.allclose(run(1), videos)
  assert not np.allclose(videos[0], videos[1])


@pytest.mark.parametrize("method", ["freenoise", "freelong", "gen_l_video"])
def test_dit_methods(method):
  sampler, params = _sampler(method, "dit")
  videos = sampler.sample(params, 0, 1, SHAPE, progress=False)
  assert videos.shape == (1,) + SHAPE and np.all(np.isfinite(videos))


def test_window_methods_at_the_training_length_are_plain_sampling():
  """A video of one window: co-denoising, FreeNoise's attention and noise (whose first window
  is i.i.d.) and FreeLong all reduce to the plain sampler."""
  model, params, base = _setup("unet")
  shape = (WINDOW,) + SHAPE[1:]
  plain = base.sample(params, 3, 2, shape, progress=False)
  for method in ("gen_l_video", "freenoise", "freelong", "one_pass"):
    sampler = LongVideoSampler(base, model, method, WINDOW)
    videos = sampler.sample(params, 3, 2, shape, progress=False)
    np.testing.assert_allclose(videos, plain, atol=1e-5, err_msg=method)


def test_chunks_are_independent_short_samples():
  """Clip c of video i is the plain sampler's clip from fold_in(video i's key, c)."""
  sampler, params = _sampler("chunks")
  _, _, base = _setup("unet")
  videos = sampler.sample(params, 0, 2, SHAPE, progress=False)
  video_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(2))
  clip_keys = jnp.stack([jax.random.fold_in(video_keys[i], c) for i in range(2) for c in (0, 1)])
  clips = base.jitted_sample_batch(params, clip_keys, None, (WINDOW,) + SHAPE[1:])
  np.testing.assert_allclose(videos, np.asarray(clips).reshape((2,) + SHAPE), atol=1e-5)


@functools.lru_cache(maxsize=None)
def _caption_dit():
  """A tiny caption-conditioned DiT with perturbed params, its base sampler and null caption."""
  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.condition = "caption"
  model = get_model(config)
  null = tuple(int(v) for v in null_condition_for(config))
  captions = jnp.zeros((1, len(null)), jnp.int32)
  variables = jax.jit(model.init)(
    jax.random.key(1), jnp.zeros((1, WINDOW, 16, 16, 3)), jnp.zeros((1,)), cond=captions
  )
  leaves, tree = jax.tree.flatten(variables["params"])
  params = jax.tree.unflatten(
    tree,
    [
      leaf + 0.05 * jax.random.normal(jax.random.key(i), leaf.shape)
      for i, leaf in enumerate(leaves)
    ],
  )
  base = VideoSampler(
    model.apply,
    make_process(config.diffusion),
    config.diffusion.prediction,
    num_steps=2,
    null_condition=null,
  )
  return model, params, base, null


def test_per_window_prompts_reach_their_windows():
  """Gen-L-Video with a prompt per window on a caption-conditioned DiT: changing one window's
  prompt changes the frames of that window most."""
  model, params, base, null = _caption_dit()
  sampler = LongVideoSampler(
    base, model, "gen_l_video", WINDOW, stride=WINDOW, per_window_condition=True
  )
  prompts = np.zeros((1, 2, len(null)), np.int32)  # two windows, frames 0-3 and 4-7
  prompts[0, :, 0] = (1, 2)
  first = sampler.sample(params, 0, 1, SHAPE, progress=False, condition=prompts)
  changed = prompts.copy()
  changed[0, 1, 0] = 3
  second = sampler.sample(params, 0, 1, SHAPE, progress=False, condition=changed)
  np.testing.assert_array_equal(first[:, :WINDOW], second[:, :WINDOW])  # disjoint windows
  assert not np.allclose(first[:, WINDOW:], second[:, WINDOW:])
  with pytest.raises(ShapeError, match="Got 3 prompts per video for the 2 windows"):
    sampler.sample(
      params, 0, 1, SHAPE, progress=False, condition=np.zeros((1, 3, len(null)), np.int32)
    )


def test_a_caption_per_frame_equals_one_caption_when_all_are_alike():
  model, params, _, null = _caption_dit()
  x = jax.random.normal(jax.random.key(0), (2, WINDOW, 16, 16, 3))
  t = jnp.array([0.3, 0.7])
  captions = jnp.zeros((2, len(null)), jnp.int32).at[:, 0].set(jnp.array([1, 2]))
  one = model.apply({"params": params}, x, t, cond=captions)
  per_frame = jnp.repeat(captions[:, None], WINDOW, axis=1)  # [B, T, L]
  np.testing.assert_allclose(model.apply({"params": params}, x, t, cond=per_frame), one, atol=1e-5)
  other = per_frame.at[:, WINDOW // 2 :, 0].set(3)
  assert not np.allclose(model.apply({"params": params}, x, t, cond=other), one, atol=1e-3)
  with pytest.raises(ShapeError, match="one caption per frame"):
    model.apply({"params": params}, x, t, cond=per_frame[:, None])


def test_frame_conditions_are_freenoises_layout():
  """Two prompts over 16 frames: 3T/8 = 6 frames of each at the ends, the 4 between
  interpolated from the first exactly to the second (the authors' `cond1`); caption tokens,
  which cannot be interpolated, switch half-way."""
  two = jnp.array([[0.0, 1.0]])
  np.testing.assert_allclose(
    frame_conditions(two, 16)[0], [0] * 6 + [0, 1 / 3, 2 / 3, 1] + [1] * 6, atol=1e-6
  )
  tokens = jnp.array([[[7], [9]]])
  np.testing.assert_array_equal(frame_conditions(tokens, 16)[0, :, 0], [7] * 8 + [9] * 8)
  # Three prompts over 24 frames: thirds, with a ramp of half a third around each boundary.
  third = [1 / 3, 2 / 3]
  np.testing.assert_allclose(
    frame_conditions(jnp.array([[0.0, 1.0, 2.0]]), 24)[0],
    [0] * 7 + third + [1] * 6 + [1 + x for x in third] + [2] * 7,
    atol=1e-6,
  )
  np.testing.assert_array_equal(frame_conditions(jnp.array([[5]]), 4)[0], [5] * 4)


def test_injection_is_freenoises_steps_5_to_15_of_50():
  """The default injection steps, on the 50-step DDIM grid (uniform or diffusers' leading),
  select exactly the steps 5..15 the authors inject in (`ddim_mp.py:227`)."""
  model, _, base = _setup("unet")
  for spacing in ("uniform", "leading"):
    grid = sampling_time_grid(base.process, "ddim", 50, spacing)
    t_cur = np.asarray(grid[0] if isinstance(grid, tuple) else grid[:-1], np.float32)
    low, high = injection_times(grid)
    np.testing.assert_array_equal(
      np.nonzero((t_cur >= low) & (t_cur <= high))[0], np.arange(5, 16), err_msg=spacing
    )
  sampler = LongVideoSampler(dataclasses.replace(base, num_steps=50), model, "freenoise", WINDOW)
  assert sampler.injection_times == injection_times(sampling_time_grid(base.process, "ddim", 50))
  assert injection_times(sampling_time_grid(base.process, "ddim", 2)) is None  # no step 5-15


def test_freenoise_motion_injection():
  """FreeNoise with several prompts on a caption DiT: at steps outside the injection every
  frame sees the LAST prompt, so no injected step equals single-prompt FreeNoise with the last
  prompt; injecting lets the other prompts reach the video."""
  model, params, base, null = _caption_dit()
  prompts = np.zeros((1, 3, len(null)), np.int32)  # any number of prompts
  prompts[0, :, 0] = (1, 2, 3)
  run = lambda condition, per_window=True, **fields: LongVideoSampler(
    base, model, "freenoise", WINDOW, stride=2, per_window_condition=per_window, **fields
  ).sample(params, 0, 1, SHAPE, progress=False, condition=condition)
  single_last = run(prompts[:, -1], per_window=False)
  # The 2-step grid calls the denoiser at t = 1 and t = 0.5: neither is a step 5-15 of 50,
  # nor inside t in [0.9, 0.95].
  np.testing.assert_allclose(run(prompts), single_last, atol=1e-5)
  np.testing.assert_allclose(run(prompts, injection_range=(0.9, 0.95)), single_last, atol=1e-5)
  injected = run(prompts, injection_range=(0.0, 1.0))
  assert not np.allclose(injected, single_last, atol=1e-3)
  changed = prompts.copy()
  changed[0, 0, 0] = 4
  assert not np.allclose(run(changed, injection_range=(0.0, 1.0)), injected, atol=1e-3)
  with pytest.raises(ConfigError, match="injection_range"):
    LongVideoSampler(
      base, model, "freenoise", WINDOW, per_window_condition=True, injection_range=(0.8, 0.2)
    )
  with pytest.raises(ConfigError, match="injection_steps"):
    LongVideoSampler(
      base, model, "freenoise", WINDOW, per_window_condition=True, injection_steps=(0.5, 0.1)
    )


def test_window_weightings_default_to_each_paper():
  """Gen-L-Video averages its windows uniformly; FreeNoise weighs them as a pyramid."""
  model, params, base = _setup("unet")
  make = lambda method, **fields: LongVideoSampler(base, model, method, WINDOW, stride=2, **fields)
  assert make("gen_l_video").window_weighting == "uniform"
  assert make("freenoise").long_attention.weighting == "pyramid"
  run = lambda sampler: sampler.sample(params, 0, 1, SHAPE, progress=False)
  default = run(make("gen_l_video"))
  np.testing.assert_allclose(default, run(make("gen_l_video", weighting="uniform")), atol=1e-6)
  assert not np.allclose(default, run(make("gen_l_video", weighting="pyramid")), atol=1e-4)


def test_fifo_runs_the_authors_settings():
  """FIFO on a deterministic base sampler: eta 1, the base clip sampled with the queue's S
  steps on one shared time per step, the levels on the base sampler's spacing."""
  model, _, base = _setup("unet")
  staggered = dataclasses.replace(base, frame_stagger=0.5)
  sampler = LongVideoSampler(staggered, model, "fifo", WINDOW, num_partitions=2)
  assert sampler.fifo.eta == 1.0 and sampler.fifo.spacing == base.spacing
  clip = sampler.fifo_base_sampler
  assert (clip.num_steps, clip.eta, clip.frame_stagger) == (2 * WINDOW, 1.0, 0.0)
  # The queue's levels are the base sampler's grid with the queue's S = 8 steps.
  np.testing.assert_allclose(sampler.fifo_levels, np.linspace(0.0, 1.0, 2 * WINDOW + 1))
  leading = LongVideoSampler(
    dataclasses.replace(base, spacing="leading"), model, "fifo", WINDOW, num_partitions=2
  )
  np.testing.assert_allclose(leading.fifo_levels, [0.0] + [(125 * k + 1) / 1000 for k in range(8)])
  assert LongVideoSampler(base, model, "fifo", WINDOW, fifo_eta=0.0).fifo.eta == 0.0


@pytest.mark.parametrize(
  "fields,message",
  [
    (dict(method="freeinit"), "Unknown long-video method"),
    (dict(stride=0), r"stride must be in \[1, window=4\]"),
    (dict(stride=5), r"stride must be in \[1, window=4\]"),
    (dict(method="fifo", tail="uniform"), "Unknown FIFO tail"),
    (dict(method="autoregressive", extension_mode="inpaint"), "Unknown extension mode"),
    (dict(method="fifo", per_window_condition=True), "Gen-L-Video's or FreeNoise's"),
  ],
)
def test_bad_settings_raise(fields, message):
  model, _, base = _setup("unet")
  with pytest.raises(ConfigError, match=message):
    LongVideoSampler(base, model, **{"method": "freenoise", "window": WINDOW, **fields})


def test_bad_lengths_raise():
  sampler, params = _sampler("freenoise")
  with pytest.raises(ConfigError, match="window of 4 frames is longer than the video of 3"):
    sampler.sample(params, 0, 1, (3, 16, 16, 3), progress=False)
  fifo, _ = _sampler("fifo", num_partitions=4)
  with pytest.raises(ConfigError, match="queue of 16 frames"):
    fifo.sample(params, 0, 1, SHAPE, progress=False)
