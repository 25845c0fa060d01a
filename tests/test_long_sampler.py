"""LongVideoSampler: every long-video method on tiny trained-shape networks."""

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
from jvdm.samplers import VideoSampler
from jvdm.samplers.long.motion_injection import frame_conditions
from jvdm.samplers.long.sampler import METHODS, LongVideoSampler

WINDOW, FRAMES = 4, 8
SHAPE = (FRAMES, 16, 16, 3)


@functools.lru_cache(maxsize=None)
def _setup(name):
  module = bouncing_shapes_unet if name == "unet" else bouncing_shapes_dit
  config = module.get_config("tiny")
  model = get_model(config)
  variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, WINDOW, 16, 16, 3)),
                                  jnp.zeros((1,)))
  # Perturb the zero-initialized output layers, so that the network is not the zero map.
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [leaf + 0.05 * jax.random.normal(key, leaf.shape)
                                     for leaf, key in zip(leaves, keys)])
  base = VideoSampler(model.apply, make_process(config.diffusion), config.diffusion.prediction,
                      num_steps=2)
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
  variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, WINDOW, 16, 16, 3)),
                                  jnp.zeros((1,)), cond=captions)
  leaves, tree = jax.tree.flatten(variables["params"])
  params = jax.tree.unflatten(tree, [leaf + 0.05 * jax.random.normal(jax.random.key(i), leaf.shape)
                                     for i, leaf in enumerate(leaves)])
  base = VideoSampler(model.apply, make_process(config.diffusion), config.diffusion.prediction,
                      num_steps=2, null_condition=null)
  return model, params, base, null


def test_per_window_prompts_reach_their_windows():
  """Gen-L-Video with a prompt per window on a caption-conditioned DiT: changing one window's
  prompt changes the frames of that window most."""
  model, params, base, null = _caption_dit()
  sampler = LongVideoSampler(base, model, "gen_l_video", WINDOW, stride=WINDOW,
                             per_window_condition=True)
  prompts = np.zeros((1, 2, len(null)), np.int32)  # two windows, frames 0-3 and 4-7
  prompts[0, :, 0] = (1, 2)
  first = sampler.sample(params, 0, 1, SHAPE, progress=False, condition=prompts)
  changed = prompts.copy()
  changed[0, 1, 0] = 3
  second = sampler.sample(params, 0, 1, SHAPE, progress=False, condition=changed)
  np.testing.assert_array_equal(first[:, :WINDOW], second[:, :WINDOW])  # disjoint windows
  assert not np.allclose(first[:, WINDOW:], second[:, WINDOW:])
  with pytest.raises(ShapeError, match="Got 3 prompts per video for the 2 windows"):
    sampler.sample(params, 0, 1, SHAPE, progress=False,
                   condition=np.zeros((1, 3, len(null)), np.int32))


def test_a_caption_per_frame_equals_one_caption_when_all_are_alike():
  model, params, _, null = _caption_dit()
  x = jax.random.normal(jax.random.key(0), (2, WINDOW, 16, 16, 3))
  t = jnp.array([0.3, 0.7])
  captions = jnp.zeros((2, len(null)), jnp.int32).at[:, 0].set(jnp.array([1, 2]))
  one = model.apply({"params": params}, x, t, cond=captions)
  per_frame = jnp.repeat(captions[:, None], WINDOW, axis=1)  # [B, T, L]
  np.testing.assert_allclose(model.apply({"params": params}, x, t, cond=per_frame), one,
                             atol=1e-5)
  other = per_frame.at[:, WINDOW // 2:, 0].set(3)
  assert not np.allclose(model.apply({"params": params}, x, t, cond=other), one, atol=1e-3)
  with pytest.raises(ShapeError, match="one caption per frame"):
    model.apply({"params": params}, x, t, cond=per_frame[:, None])


def test_frame_conditions_take_the_nearest_window():
  windows = jnp.arange(3)[None]  # 8 frames, windows [0, 4), [2, 6), [4, 8)
  np.testing.assert_array_equal(frame_conditions(windows, 8, 4, 2)[0], [0, 0, 0, 1, 1, 2, 2, 2])


def test_freenoise_motion_injection():
  """FreeNoise with a prompt per window: outside the injection range every frame sees the
  first prompt, so an empty range equals single-prompt FreeNoise; inside it, a later window's
  prompt reaches the video."""
  model, params, base, null = _caption_dit()
  prompts = np.zeros((1, 3, len(null)), np.int32)  # 3 windows at stride 2
  prompts[0, :, 0] = (1, 2, 3)
  run = lambda injection_range, condition, per_window=True: LongVideoSampler(
      base, model, "freenoise", WINDOW, stride=2, per_window_condition=per_window,
      injection_range=injection_range).sample(params, 0, 1, SHAPE, progress=False,
                                              condition=condition)
  single = run((0.0, 1.0), prompts[:, 0], per_window=False)
  # The 2-step grid calls the denoiser at t = 1 and t = 0.5.
  np.testing.assert_allclose(run((0.9, 0.95), prompts), single, atol=1e-5)
  injected = run((0.0, 1.0), prompts)
  assert not np.allclose(injected, single, atol=1e-3)
  changed = prompts.copy()
  changed[0, 2, 0] = 4
  assert not np.allclose(run((0.0, 1.0), changed), injected, atol=1e-3)
  with pytest.raises(ConfigError, match="injection_range"):
    LongVideoSampler(base, model, "freenoise", WINDOW, per_window_condition=True,
                     injection_range=(0.8, 0.2))


@pytest.mark.parametrize("fields,message", [
    (dict(method="freeinit"), "Unknown long-video method"),
    (dict(stride=0), r"stride must be in \[1, window=4\]"),
    (dict(stride=5), r"stride must be in \[1, window=4\]"),
    (dict(method="fifo", tail="uniform"), "Unknown FIFO tail"),
    (dict(method="autoregressive", extension_mode="inpaint"), "Unknown extension mode"),
    (dict(method="fifo", per_window_condition=True), "Gen-L-Video's or FreeNoise's"),
])
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
