"""Training-free long-video attention in the backbones: FreeNoise window fusion, FreeLong
SpectralBlend (jvdm.models.layers.long_attention)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.builders import get_model
from jvdm.errors import ConfigError
from jvdm.models import VideoDiT
from jvdm.models.layers.kv_cache import KVCache
from jvdm.models.layers.long_attention import LongAttention, window_fused_attention
from jvdm.ops.freelong import band_mask, low_pass_filter, spectral_blend
from jvdm.models.layers.rope import apply_rope
from jvdm.ops.windows import window_weights

FRAMES = 8  # twice the long-attention window below
WINDOW = 4
FREENOISE = LongAttention("freenoise", window=WINDOW, stride=2)
FREELONG = LongAttention("freelong", window=WINDOW)


def _unet():
  config = bouncing_shapes_unet.get_config("tiny")
  config.model.middle_attention = "joint"  # temporal layers at level 1, a joint middle layer
  return get_model(config)


def _dit(**overrides):
  config = bouncing_shapes_dit.get_config("tiny")
  config.model.update(overrides)
  return get_model(config)


def _video(num_frames=FRAMES):
  return jax.random.normal(jax.random.key(0), (1, num_frames, 16, 16, 3))


def _live_params(model):
  """Initialized params, perturbed so that zero-initialized layers are not zero."""
  variables = jax.jit(model.init)(jax.random.key(1), _video(4), jnp.zeros((1,)))
  leaves, tree = jax.tree.flatten(jax.tree.map(np.asarray, variables["params"]))
  keys = jax.random.split(jax.random.key(2), len(leaves))
  return jax.tree.unflatten(
    tree, [leaf + 0.1 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
  )


@functools.lru_cache(maxsize=None)
def _params(name):
  return _live_params(_unet() if name == "unet" else _dit())


def _run(model, params, num_frames=FRAMES):
  out = jax.jit(model.apply)({"params": params}, _video(num_frames), jnp.full((1,), 0.5))
  return np.asarray(out)


@functools.lru_cache(maxsize=None)
def _plain(name):
  return _run(_unet() if name == "unet" else _dit(), _params(name))


def _long(name, spec):
  model = _unet() if name == "unet" else _dit()
  return _run(model.clone(long_attention=spec), _params(name))


# -- The spec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "fields,message",
  [
    (dict(method="freeinit"), "Unknown long-attention method"),
    (dict(method="freenoise", window=0), "window must be >= 1"),
    (dict(method="freenoise", window=4, stride=5), r"stride must be in \[1, window=4\]"),
    (dict(method="freenoise", stride=0), "stride must be in"),
    (dict(method="freenoise", weighting="gaussian"), "Unknown window weighting"),
    (dict(method="freelong", temporal_cutoff=1.5), r"temporal_cutoff must be in \[0, 1\]"),
    (dict(method="freelong", spatial_cutoff=-0.1), r"spatial_cutoff must be in \[0, 1\]"),
    (dict(method="freelong", local_mask="centred"), "Unknown FreeLong local mask"),
    (dict(method="freelong", low_pass="ideal"), "Unknown FreeLong low-pass filter"),
  ],
)
def test_bad_fields_raise(fields, message):
  with pytest.raises(ConfigError, match=message):
    LongAttention(**fields)


def test_spec_is_hashable_and_a_model_field():
  assert hash(FREENOISE) == hash(LongAttention("freenoise", window=WINDOW, stride=2))
  assert _dit().clone(long_attention=FREELONG).long_attention is FREELONG
  with pytest.raises(ConfigError, match="must be a LongAttention"):
    _unet().clone(long_attention="freenoise")


@pytest.mark.parametrize("name", ["unet", "dit"])
@pytest.mark.parametrize("spec", [FREENOISE, FREELONG], ids=["freenoise", "freelong"])
def test_params_tree_is_unchanged(name, spec):
  model = _unet() if name == "unet" else _dit(layout="factorized")
  init = lambda m: jax.eval_shape(m.init, jax.random.key(0), _video(), jnp.zeros((1,)))
  plain, long = init(model), init(model.clone(long_attention=spec))
  assert jax.tree.structure(plain) == jax.tree.structure(long)
  assert jax.tree.map(lambda a: a.shape, plain) == jax.tree.map(lambda a: a.shape, long)


def test_kv_cache_with_long_attention_raises():
  model = _dit(causal=True).clone(long_attention=FREENOISE)
  cache = KVCache.create(
    num_layers=2, batch=1, capacity=8, tokens_per_frame=16, num_heads=4, head_dim=12
  )
  with pytest.raises(ConfigError, match="does not work with a KV cache"):
    model.init(jax.random.key(0), _video(2), jnp.zeros((1,)), cache, 0, method=VideoDiT.with_cache)


# -- FreeNoise window fusion -------------------------------------------------------------------


def _qkv(shape, seed=0):
  return [jax.random.normal(k, shape) for k in jax.random.split(jax.random.key(seed), 3)]


def _rope(a, frames):  # a [B', window, S, N, D]: frame positions only
  return apply_rope(a.reshape(a.shape[:2] + (-1, a.shape[-1])), frames).reshape(a.shape)


def test_one_window_is_plain_attention():
  query, key, value = _qkv((2, 5, 3, 2, 8))  # B, T, S, N, D
  fused = window_fused_attention(query, key, value, window=5, stride=2, rotate=_rope)
  frames = jnp.repeat(jnp.arange(5), 3)
  flat = lambda a: a.reshape(2, 15, 2, 8)
  plain = jax.nn.dot_product_attention(
    apply_rope(flat(query), frames), apply_rope(flat(key), frames), flat(value)
  )
  np.testing.assert_allclose(fused, plain.reshape(fused.shape), atol=1e-5)


@pytest.mark.parametrize("per_position", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_frames_are_weighted_means_of_their_windows(per_position, causal):
  """Against an independent reference: each window sliced by hand, attended with positions
  0..window-1, and each frame's output accumulated with the pyramid weights."""
  batch, frames, tokens, heads, dim, window, stride = 2, 11, 3, 2, 8, 4, 3
  query, key, value = _qkv((batch, frames, tokens, heads, dim), seed=1)
  causal_mask = np.tril(np.ones((window, window), bool))
  fused = window_fused_attention(
    query,
    key,
    value,
    window,
    stride,
    "pyramid",
    per_position=per_position,
    rotate=_rope,
    frame_mask=causal_mask if causal else None,
  )

  weights = window_weights(window, "pyramid")
  total = np.zeros((batch, frames, tokens, heads, dim))
  norm = np.zeros(frames)
  for start in (0, 3, 6, 7):  # every `stride` frames, then one aligned with the end
    q, k, v = (np.asarray(a[:, start : start + window]) for a in (query, key, value))
    positions = np.arange(window)
    if per_position:  # each token position attends along the window's frames on its own
      out = np.stack(
        [
          np.asarray(
            jax.nn.dot_product_attention(
              apply_rope(q[:, :, s], positions),
              apply_rope(k[:, :, s], positions),
              v[:, :, s],
              mask=causal_mask[None, None] if causal else None,
            )
          )
          for s in range(tokens)
        ],
        axis=2,
      )
    else:  # all window tokens attend to each other
      token_frames = np.repeat(positions, tokens)
      flat = lambda a: a.reshape(batch, window * tokens, heads, dim)
      mask = token_frames[:, None] >= token_frames[None, :]
      out = np.asarray(
        jax.nn.dot_product_attention(
          apply_rope(flat(q), token_frames),
          apply_rope(flat(k), token_frames),
          flat(v),
          mask=mask[None, None] if causal else None,
        )
      ).reshape(q.shape)
    for i in range(window):
      total[:, start + i] += weights[i] * out[:, i]
      norm[start + i] += weights[i]
  np.testing.assert_allclose(fused, total / norm[:, None, None, None], atol=1e-5)


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_freenoise_window_covering_the_video_is_the_plain_model(name):
  out = _long(name, LongAttention("freenoise", window=FRAMES, stride=2))
  np.testing.assert_array_equal(out, _plain(name))


@pytest.mark.parametrize("name", ["unet", "dit"])
@pytest.mark.parametrize("spec", [FREENOISE, FREELONG], ids=["freenoise", "freelong"])
def test_long_video_output(name, spec):
  out = _long(name, spec)
  assert out.shape == (1, FRAMES, 16, 16, 3)
  assert np.isfinite(out).all()
  assert np.abs(out - _plain(name)).max() > 1e-3


# -- FreeLong SpectralBlend --------------------------------------------------------------------


def test_band_mask_is_freelong_adjusted_window_by_default():
  """The authors' LaVie mask (`get_adjusted_local_mask`): |i - j| <= window // 2, and a row cut
  by the video's ends shifted inwards to `window` frames."""
  mask = band_mask(6, 4)
  expected = [
    [1, 1, 1, 1, 0, 0],  # frames 0-2, grown to the right to 4 frames
    [1, 1, 1, 1, 0, 0],
    [1, 1, 1, 1, 1, 0],  # frames 0-4: 5 = window + 1 inside the video
    [0, 1, 1, 1, 1, 1],
    [0, 0, 1, 1, 1, 1],  # frames 2-5: already 4
    [0, 0, 1, 1, 1, 1],
  ]  # frames 3-5, grown to the left to 4 frames
  np.testing.assert_array_equal(mask, expected)
  # Every frame sees at least the training window, the ends exactly it; 16 of 128 frames as
  # in the authors' code.
  rows = band_mask(128, 16).sum(axis=1)
  assert rows.min() == 16 and rows[0] == rows[-1] == 16 and rows.max() == 17
  assert band_mask(3, 8).all()  # a video shorter than the window: every frame sees all
  np.testing.assert_array_equal(
    band_mask(3, 2, tokens_per_frame=2), np.kron(band_mask(3, 2), np.ones((2, 2)))
  )


def test_band_mask_strict_is_cut_at_the_ends():
  """The authors' VideoCrafter2 mask (`get_local_mask`), jvdm's earlier default."""
  mask = band_mask(6, 4, kind="strict")  # |i - j| <= 2
  np.testing.assert_array_equal(mask[0], [1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(mask[3], [0, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(band_mask(6, 5, kind="strict"), mask)  # odd: 5 frames centred
  with pytest.raises(ConfigError, match="Unknown FreeLong local mask"):
    band_mask(6, 4, kind="causal")


def test_low_pass_filter_limits():
  for shape in [(8, 4, 4), (7, 5, 3)]:
    assert low_pass_filter(shape, 1.0, 1.0, "box").min() == 1.0  # every frequency passes
    for kind in ("gaussian", "box"):
      assert low_pass_filter(shape, 0.0, 0.5, kind).max() == 0.0
      assert low_pass_filter(shape, 0.5, 0.0, kind).max() == 0.0
  # Box cutoff 0.25 of Nyquist on 16 frames: |k| <= 2.
  np.testing.assert_array_equal(
    np.nonzero(low_pass_filter((16, 1, 1), 0.25, 1.0, "box")[:, 0, 0])[0], [0, 1, 2, 14, 15]
  )


def test_gaussian_low_pass_is_freelongs_filter():
  """FreeLong's `gaussian_low_pass_filter` (d_s = d_t = 0.25), built on the fftshifted grid
  2 i / n - 1 and moved to numpy's FFT order, on a small even and odd grid."""
  # Along time alone (one row and column, whose coordinate is -1: a constant factor).
  along_time = low_pass_filter((8, 1, 1), 0.25, 0.5)[:, 0, 0] / np.exp(-0.5 * 2 * 4.0)
  # Frequencies k = 0, 1, 2, 3, -4, -3, -2, -1 at f = k / 4 of Nyquist: exp(-8 f^2).
  np.testing.assert_allclose(
    along_time, np.exp(-8.0 * (np.fft.fftfreq(8, 1 / 8) / 4) ** 2), rtol=1e-6
  )
  assert low_pass_filter((8, 6, 4), 0.25, 0.25)[0, 0, 0] == 1.0  # DC passes whole
  for shape, d_t, d_s in [((8, 6, 4), 0.25, 0.25), ((5, 3, 7), 0.4, 0.3)]:
    t, h, w = np.meshgrid(*(np.arange(n) * 2 / n - 1 for n in shape), indexing="ij")
    official = np.exp(-0.5 * ((t / d_t) ** 2 + (h / d_s) ** 2 + (w / d_s) ** 2))  # shifted order
    np.testing.assert_allclose(
      low_pass_filter(shape, d_t, d_s), np.fft.ifftshift(official), rtol=1e-6
    )
  with pytest.raises(ConfigError, match="Unknown FreeLong low-pass filter"):
    low_pass_filter((4, 4, 4), 0.25, 0.25, "butterworth")


def test_spectral_blend_bands():
  shape = (2, 8, 6, 6, 3)
  constant = jnp.full(shape, 0.7)
  np.testing.assert_allclose(
    spectral_blend(constant, jnp.zeros(shape), 0.25, 0.25), constant, atol=1e-6
  )  # the low pass passes a constant field
  # The box: the highest frequencies (alternating signs along T, H and W) come from `local`
  # only; the Gaussian lets a little of `global` through.
  signs = np.indices(shape[1:4]).sum(axis=0) % 2 * 2 - 1.0
  high = jnp.asarray(np.broadcast_to(signs[None, ..., None], shape))
  np.testing.assert_allclose(
    spectral_blend(jnp.zeros(shape), high, 0.5, 0.5, "box"), high, atol=1e-6
  )
  np.testing.assert_allclose(
    spectral_blend(high, jnp.zeros(shape), 0.5, 0.5, "box"), 0.0, atol=1e-6
  )
  np.testing.assert_allclose(
    spectral_blend(high, jnp.zeros(shape), 0.5, 0.5), np.exp(-6) * high, rtol=1e-3
  )  # exp(-(1 / 0.5)^2 * 3 / 2) at Nyquist on every axis
  # LP + HP = 1: the blend of a field with itself is the field.
  x = jax.random.normal(jax.random.key(0), shape)
  np.testing.assert_allclose(spectral_blend(x, x, 0.3, 0.6), x, atol=1e-5)


def test_spectral_blend_is_the_paper_formula():
  global_x, local_x = (
    jax.random.normal(k, (2, 8, 6, 4, 3)) for k in jax.random.split(jax.random.key(0), 2)
  )
  low_pass = low_pass_filter((8, 6, 4), 0.25, 0.5)[None, ..., None]
  spectrum = lambda a: np.fft.fftn(np.asarray(a), axes=(1, 2, 3))
  expected = np.fft.ifftn(
    spectrum(global_x) * low_pass + spectrum(local_x) * (1 - low_pass), axes=(1, 2, 3)
  ).real
  np.testing.assert_allclose(spectral_blend(global_x, local_x, 0.25, 0.5), expected, atol=1e-5)


def test_blend_of_global_and_local_attention_limits():
  """Cutoffs 0: the band-masked (local) attention; box cutoffs 1: the plain (global) one."""
  query, key, value = _qkv((2, 12, 16, 2, 8))  # B, T, (4 x 4 pixels), N, D
  sequence = lambda a: a.reshape(2, 12, 32, 8)  # frames are the sequence, (pixel, head) heads
  attend = lambda mask: jax.nn.dot_product_attention(
    *(sequence(a) for a in (query, key, value)), mask=None if mask is None else mask[None, None]
  ).reshape(2, 12, 4, 4, 16)
  global_x, local_x = attend(None), attend(band_mask(12, 4))
  np.testing.assert_array_equal(spectral_blend(global_x, local_x, 0.0, 0.0), local_x)
  np.testing.assert_allclose(
    spectral_blend(global_x, local_x, 1.0, 1.0, "box"), global_x, atol=1e-5
  )
  assert np.abs(global_x - local_x).max() > 1e-2


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_freelong_fully_global_is_the_plain_model(name):
  out = _long(
    name,
    LongAttention(
      "freelong", window=WINDOW, temporal_cutoff=1.0, spatial_cutoff=1.0, low_pass="box"
    ),
  )
  np.testing.assert_allclose(out, _plain(name), atol=1e-4)


def test_freelong_fully_local_is_the_windowed_model():
  """The full-layout DiT with cutoffs 0 and the strict band is the windowed-layout DiT whose
  window is the band (|i - j| <= window // 2, i.e. temporal_window = window // 2 + 1), with the
  same params; the default (adjusted) band differs from it at the video's ends only."""
  full = _long(
    "dit",
    LongAttention(
      "freelong", window=WINDOW, temporal_cutoff=0.0, spatial_cutoff=0.0, local_mask="strict"
    ),
  )
  windowed = _dit(layout="windowed", temporal_window=WINDOW // 2 + 1)
  rename = lambda tree: {
    k.replace("attention_full", "attention_windowed"): rename(v) if isinstance(v, dict) else v
    for k, v in tree.items()
  }
  np.testing.assert_allclose(full, _run(windowed, rename(_params("dit"))), atol=1e-5)
  assert np.abs(full - _plain("dit")).max() > 1e-3
  adjusted = _long(
    "dit", LongAttention("freelong", window=WINDOW, temporal_cutoff=0.0, spatial_cutoff=0.0)
  )
  assert np.abs(adjusted - full).max() > 1e-4
