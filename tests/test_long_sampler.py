"""LongVideoSampler: every long-video method on tiny trained-shape networks."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.data.captions import null_condition_for
from jvdm.diffusion import make_process
from jvdm.errors import ConfigError, ShapeError
from jvdm.models import get_model
from jvdm.pipelines import VideoSampler
from jvdm.samplers.grids import sampling_time_grid
from jvdm.pipelines.long.freenoise import frame_conditions, injection_times
from jvdm.pipelines.long.long_video import METHODS, LongVideoSampler

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
