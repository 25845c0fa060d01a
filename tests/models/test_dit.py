"""The video DiT: layouts, per-frame time, causality, the KV cache and autoregressive sampling."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_dit
from jvdm.builders import get_model
from jvdm.diffusion import VPProcess, get_schedule
from jvdm.errors import ConfigError, ShapeError
from jvdm.models import VideoDiT
from jvdm.models.layers.kv_cache import KVCache
from jvdm.pipelines.kv_cache_generation import CausalVideoSampler

SHAPE = (2, 8, 8, 8, 3)  # B, T, H, W, C: 8 frames of 4 x 4 tokens


def _model(**overrides):
  kwargs = dict(
    out_channels=3,
    patch_size=(1, 2, 2),
    hidden_size=48,
    depth=2,
    num_heads=4,
    causal=True,
    temporal_window=3,
  )
  kwargs.update(overrides)
  return VideoDiT(**kwargs)


@functools.lru_cache(maxsize=None)
def _apply(model):
  return jax.jit(model.apply)


def _with_cache(model):
  return jax.jit(functools.partial(model.apply, method=VideoDiT.with_cache))


def _params(model, shape=SHAPE):
  """Initialized params, perturbed so that the zero-initialized gates and outputs are not zero."""
  variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros(shape), jnp.zeros(shape[:1]))
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  return jax.tree.unflatten(
    tree, [leaf + 0.05 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
  )


def _inputs(shape=SHAPE):
  x = jax.random.normal(jax.random.key(3), shape)
  t = jax.random.uniform(jax.random.key(4), shape[:2])
  return x, t


@pytest.mark.parametrize(
  "layout,scan_layers", [("full", True), ("factorized", False), ("windowed", True)]
)
def test_layouts_shapes_and_broadcast_time(layout, scan_layers):
  model = _model(layout=layout, scan_layers=scan_layers, causal=False, patch_size=(2, 2, 2))
  params = _params(model)
  x, t = _inputs()
  out = _apply(model)({"params": params}, x, t[:, 0])
  assert out.shape == SHAPE and out.dtype == jnp.float32
  # [B] broadcasts: the same as the same level for every frame.
  same = _apply(model)({"params": params}, x, jnp.broadcast_to(t[:, :1], t.shape))
  np.testing.assert_allclose(out, same, atol=1e-6)


@pytest.mark.parametrize("layout", ["full", "factorized", "windowed"])
def test_causal_frames_ignore_later_frames_and_their_times(layout):
  model = _model(layout=layout)
  params = _params(model)
  x, t = _inputs()
  out = _apply(model)({"params": params}, x, t)
  later_changed = _apply(model)({"params": params}, x.at[:, 5:].add(1.0), t.at[:, 5:].set(0.9))
  np.testing.assert_allclose(out[:, :5], later_changed[:, :5], atol=1e-5)
  assert np.abs(out[:, 5:] - later_changed[:, 5:]).max() > 1e-2
  # Per-frame time: changing frame 2's level changes frame 2's output.
  time_changed = _apply(model)({"params": params}, x, t.at[:, 2].set(1.0 - t[:, 2]))
  assert np.abs(out[:, 2] - time_changed[:, 2]).max() > 1e-3
  np.testing.assert_allclose(out[:, :2], time_changed[:, :2], atol=1e-5)


def test_windowed_attention_sees_only_its_window():
  """With one layer, frame k depends only on frames k - window + 1 .. k."""
  model = _model(layout="windowed", depth=1, temporal_window=3)
  params = _params(model)
  x, t = _inputs()
  out = _apply(model)({"params": params}, x, t)
  moved = _apply(model)({"params": params}, x.at[:, 2].add(1.0), t)
  changed = np.abs(np.asarray(out - moved)).max(axis=(0, 2, 3, 4)) > 1e-4
  np.testing.assert_array_equal(changed, [False, False, True, True, True, False, False, False])


@pytest.mark.parametrize(
  "layout,scan_layers,position",
  [
    ("full", False, "rope"),
    ("full", True, "sincos"),
    ("windowed", True, "rope"),
    ("windowed", False, "sincos"),
  ],
)
def test_chunks_with_the_cache_equal_the_full_causal_pass(layout, scan_layers, position):
  model = _model(layout=layout, scan_layers=scan_layers, position=position)
  params = _params(model)
  x, t = _inputs()
  full = _apply(model)({"params": params}, x, t)
  cache = KVCache.create(
    num_layers=2, batch=2, capacity=8, tokens_per_frame=16, num_heads=4, head_dim=12
  )
  outputs = []
  for first in range(0, 8, 2):
    chunk = _with_cache(model)(
      {"params": params}, x[:, first : first + 2], t[:, first : first + 2], cache, first
    )
    cache = cache.write(chunk.keys, chunk.values, first)
    outputs.append(chunk.video)
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), full, atol=2e-5)


def test_ring_buffer_keeps_the_sinks_and_the_last_frames():
  cache = KVCache.create(
    num_layers=1, batch=1, capacity=5, tokens_per_frame=1, num_heads=1, head_dim=1, num_sinks=2
  )
  for first in range(0, 12, 2):  # frames 0..11 in chunks of 2; the ring holds 3
    frames = jnp.arange(first, first + 2, dtype=jnp.float32)
    values = jnp.broadcast_to(frames[None, None, :, None, None, None], (1, 1, 2, 1, 1, 1))
    cache = cache.write(values, values, first)
  assert sorted(np.asarray(cache.slot_frames).tolist()) == [0, 1, 9, 10, 11]
  # Each slot holds the keys of the frame it says it holds.
  np.testing.assert_array_equal(cache.keys[0, 0, :, 0, 0, 0], cache.slot_frames)
  with pytest.raises(ConfigError, match="chunk of 4 frames does not fit the cache's ring of 3"):
    cache.write(jnp.zeros((1, 1, 4, 1, 1, 1)), jnp.zeros((1, 1, 4, 1, 1, 1)), 12)
  with pytest.raises(ConfigError, match="sink frames < capacity"):
    KVCache.create(1, 1, capacity=2, tokens_per_frame=1, num_heads=1, head_dim=1, num_sinks=2)


def test_sliding_cache_equals_the_full_pass_with_the_same_window():
  """After the ring wraps, a chunk sees sinks + the last frames: the full pass restricted to
  them by feeding only those frames (same absolute positions) gives the same output."""
  model = _model(depth=1)
  params = _params(model)
  x, t = _inputs((1, 10, 8, 8, 3))
  cache = KVCache.create(
    num_layers=1, batch=1, capacity=6, tokens_per_frame=16, num_heads=4, head_dim=12, num_sinks=2
  )
  for first in range(0, 8, 2):
    chunk = _with_cache(model)(
      {"params": params}, x[:, first : first + 2], t[:, first : first + 2], cache, first
    )
    cache = cache.write(chunk.keys, chunk.values, first)
  last = _with_cache(model)({"params": params}, x[:, 8:], t[:, 8:], cache, 8).video
  # The cache holds frames 0, 1 (sinks) and 4..7: exactly those and 8, 9 in one causal pass.
  assert sorted(np.asarray(cache.slot_frames).tolist()) == [0, 1, 4, 5, 6, 7]
  # One layer: each frame's output depends on the frames' inputs, not on their order.
  keep = jnp.array([0, 1, 4, 5, 6, 7, 8, 9])
  window_cache = KVCache.create(
    num_layers=1, batch=1, capacity=8, tokens_per_frame=16, num_heads=4, head_dim=12
  )
  for frame in keep[:-2].tolist():
    chunk = _with_cache(model)(
      {"params": params}, x[:, frame : frame + 1], t[:, frame : frame + 1], window_cache, frame
    )
    window_cache = window_cache.write(chunk.keys, chunk.values, frame)
  reference = _with_cache(model)({"params": params}, x[:, 8:], t[:, 8:], window_cache, 8).video
  np.testing.assert_allclose(last, reference, atol=2e-5)


def _sampler(model, **overrides):
  kwargs = dict(
    process=VPProcess(get_schedule("cosine")),
    prediction="x0",
    num_steps=3,
    chunk_frames=2,
    cache_frames=6,
    sink_frames=2,
  )
  kwargs.update(overrides)
  return CausalVideoSampler(model, **kwargs)


def test_autoregressive_generation_is_one_trace_for_any_number_of_chunks(monkeypatch):
  model = _model()
  params = _params(model)
  sampler = _sampler(model)
  short = sampler.generate(params, seed=0, num_videos=2, num_chunks=2, frame_shape=(8, 8, 3))
  again = sampler.generate(params, seed=0, num_videos=2, num_chunks=2, frame_shape=(8, 8, 3))
  np.testing.assert_array_equal(short, again)
  # The chunk body is traced once for 7 chunks (a Python loop over chunks would trace it 7
  # times), and a second call of the same shapes reuses the compiled scan.
  monkeypatch.setattr(
    CausalVideoSampler, "chunk_step", chex.assert_max_traces(CausalVideoSampler.chunk_step, n=1)
  )
  sampler = _sampler(model)
  long = sampler.generate(params, seed=0, num_videos=2, num_chunks=7, frame_shape=(8, 8, 3))
  sampler.generate(params, seed=1, num_videos=2, num_chunks=7, frame_shape=(8, 8, 3))
  with pytest.raises(AssertionError, match="traced > 1"):  # the counter works: a new shape
    sampler.generate(params, seed=0, num_videos=2, num_chunks=3, frame_shape=(8, 8, 3))
  assert short.shape == (2, 4, 8, 8, 3) and long.shape == (2, 14, 8, 8, 3)
  assert np.all(np.isfinite(long))
  # Generation is causal and seeded: the first chunks do not depend on how many follow.
  np.testing.assert_allclose(long[:, :4], short, atol=1e-5)


def test_a_prompt_is_prefilled_and_continued():
  model = _model()
  params = _params(model)
  sampler = _sampler(model, cache_frames=8, sink_frames=0)
  video = sampler.generate(params, seed=0, num_videos=1, num_chunks=3, frame_shape=(8, 8, 3))
  prompt = video[:, :4]
  continued = sampler.generate(
    params, seed=5, num_videos=1, num_chunks=1, frame_shape=(8, 8, 3), prompt=prompt
  )
  assert continued.shape == (1, 2, 8, 8, 3)
  assert np.abs(continued - video[:, 4:]).max() > 1e-3  # another seed, another chunk


def test_bad_input_names_the_numbers():
  with pytest.raises(ShapeError, match="T = 6 .* patch size 4"):
    _model(patch_size=(4, 2, 2)).init(
      jax.random.key(0), jnp.zeros((1, 6, 8, 8, 3)), jnp.zeros((1,))
    )
  with pytest.raises(ConfigError, match="fewer than a chunk of 4"):
    _sampler(_model(), chunk_frames=4, cache_frames=5, sink_frames=2)
  with pytest.raises(ConfigError, match="causal DiT"):
    _sampler(_model(causal=False))
  sampler = _sampler(_model())
  params = _params(_model())
  with pytest.raises(ConfigError, match="prompt of 6 frames does not fit"):
    sampler.generate(params, 0, 1, 1, (8, 8, 3), prompt=np.zeros((1, 6, 8, 8, 3)))
  with pytest.raises(ConfigError, match="not divisible by num_heads"):
    _model(num_heads=5).init(jax.random.key(0), jnp.zeros((1, 2, 8, 8, 3)), jnp.zeros((1,)))
  with pytest.raises(ConfigError, match="'full' or 'windowed' layout"):
    model = _model(layout="factorized")
    cache = KVCache.create(2, 1, 4, 16, 4, 12)
    model.apply(
      {"params": _params(model)},
      jnp.zeros((1, 2, 8, 8, 3)),
      jnp.zeros((1,)),
      cache,
      0,
      method=VideoDiT.with_cache,
    )


@pytest.mark.parametrize("variant", ["tiny", "S", "XL"])
def test_configs_build_the_dit(variant):
  config = bouncing_shapes_dit.get_config(variant)
  model = get_model(config)
  assert isinstance(model, VideoDiT)
  assert model.hidden_size == {"tiny": 48, "S": 384, "XL": 1152}[variant]
  with pytest.raises(ValueError, match="XXL"):
    bouncing_shapes_dit.get_config("XXL")


def test_train_a_causal_dit_then_sample_chunks_from_the_workdir(tmp_path):
  from jvdm.sampling import sample_from_workdir  # pylint: disable=g-import-not-at-top
  from jvdm.training.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top

  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.causal = True
    config.diffusion.context_frames = 2
    config.train.num_steps = 2
    config.sample.chunk_frames = 2
    config.sample.cache_frames = 4
  train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  summary = sample_from_workdir(
    str(tmp_path / "run"), num_samples=2, steps=2, chunks=3, progress=False
  )
  assert summary["num_frames"] == 6
  videos = np.load(tmp_path / "run" / "samples" / "sample_seed0" / "samples.npz")["videos"]
  assert videos.shape == (2, 6, 16, 16, 3) and videos.dtype == np.uint8


def test_cross_attention_to_a_condition_and_batched_guidance():
  from jvdm.samplers import classifier_free_guidance, make_denoiser  # pylint: disable=g-import-not-at-top

  model = _model(causal=False, cond_dim=8, depth=1)
  x, t = _inputs()
  cond = jax.random.normal(jax.random.key(5), (2, 3, 8))
  variables = jax.jit(model.init)(jax.random.key(1), x, t, cond=cond)
  leaves, tree = jax.tree.flatten(variables["params"])
  params = jax.tree.unflatten(
    tree,
    [
      leaf + 0.05 * jax.random.normal(jax.random.key(i), leaf.shape)
      for i, leaf in enumerate(leaves)
    ],
  )
  apply = jax.jit(model.apply)
  conditional = apply({"params": params}, x, t, cond=cond)
  other = apply({"params": params}, x, t, cond=-cond)
  assert np.abs(conditional - other).max() > 1e-3  # the condition is used
  denoise = jax.jit(make_denoiser(model.apply, params, VPProcess(get_schedule("cosine")), "x0"))
  null = jnp.zeros_like(cond)
  guided = jax.jit(classifier_free_guidance(denoise, null, 3.0))(x, t, cond)
  plain = denoise(x, t, null)
  np.testing.assert_allclose(guided, plain + 3.0 * (denoise(x, t, cond) - plain), atol=1e-4)
  with pytest.raises(ShapeError, match=r"\[B, L, 8\]"):
    apply({"params": params}, x, t)
  with pytest.raises(ConfigError, match="unconditional"):
    _model().init(jax.random.key(0), x, t, cond=cond)
