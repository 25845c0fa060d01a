"""Tests for the spatially tiled apply (jvdm/models/vae/tiling.py).

The functions tiled are hand-written conv stacks with a known receptive radius r (input
pixels), so the module docstring's guarantee can be checked as stated: exact outside the
overlap bands, and within rho E (rho (2 - rho) E where seams cross) inside them.
"""

import fractions
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.errors import ConfigError, ShapeError
from jvdm.models.vae.tiling import tiled_apply

HALF = fractions.Fraction(1, 2)


def _conv(z, kernel):
  """3x3 'SAME' (zero-padded) conv on [N, H, W, C]."""
  return jax.lax.conv_general_dilated(
    z,
    kernel,
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )


def _kernels(seed, channels):
  keys = jax.random.split(jax.random.key(seed), len(channels) - 1)
  return [
    jax.random.normal(k, (3, 3, cin, cout)) / math.sqrt(9 * cin)
    for k, cin, cout in zip(keys, channels[:-1], channels[1:])
  ]


def _frames(fn):
  """fn on [N, H, W, C] lifted to videos [B, T, H, W, C]."""

  def video_fn(x):
    b, t = x.shape[:2]
    y = fn(x.reshape((b * t,) + x.shape[2:]))
    return y.reshape((b, t) + y.shape[1:])

  return video_fn


def _decoder(seed=0):
  """Three 3x3 convs (r = 3 input pixels), then nearest upsampling x2: scale 2."""
  kernels = _kernels(seed, [4, 8, 8, 3])

  def fn(z):
    for kernel in kernels:
      z = jnp.tanh(_conv(z, kernel))
    return jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)

  return _frames(fn)


def _encoder(seed=1):
  """3x3 conv, 2x2 mean pool, 3x3 conv: an output pixel depends on the inputs within r = 3
  of its 2x2 block; scale 1/2."""
  first, second = _kernels(seed, [3, 8, 4])

  def fn(z):
    z = jnp.tanh(_conv(z, first))
    n, h, w, c = z.shape
    z = z.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
    return _conv(z, second)

  return _frames(fn)


def _starts(size, tile, overlap):
  """The tiles' input starts along an axis, the last one edge-aligned."""
  return list(range(0, size - tile, tile - overlap)) + [max(size - tile, 0)]


def _band_mask(size, tile, overlap, scale):
  """Output pixels in an overlap band along an axis: nominal starts i * stride, i >= 1."""
  mask = np.zeros(int(size * scale), bool)
  for i in range(1, len(_starts(size, tile, overlap))):
    start = int(i * (tile - overlap) * scale)
    mask[start : start + int(overlap * scale)] = True
  return mask


def _largest_tile_error(fn, x, whole, tile, overlap, scale):
  """E: the largest deviation of any tile's own output from fn(x) over that tile."""
  error = 0.0
  for y in _starts(x.shape[2], tile, overlap):
    for x0 in _starts(x.shape[3], tile, overlap):
      piece = np.asarray(fn(x[:, :, y : y + tile, x0 : x0 + tile]))
      oy, ox = int(y * scale), int(x0 * scale)
      region = whole[:, :, oy : oy + piece.shape[2], ox : ox + piece.shape[3]]
      error = max(error, float(np.abs(piece - region).max()))
  return error


def _check_guarantee(fn, x, tile, overlap, scale, radius):
  """The module docstring's guarantee for fn of receptive radius `radius` input pixels."""
  whole = np.asarray(fn(x))
  tiled = tiled_apply(fn, x, tile=tile, overlap=overlap, scale=scale)
  assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
  rows = _band_mask(x.shape[2], tile, overlap, scale)[:, None]
  cols = _band_mask(x.shape[3], tile, overlap, scale)[None, :]
  error = np.abs(tiled - whole).max(axis=(0, 1, 4))
  np.testing.assert_array_less(error[~(rows | cols)], 1e-5)
  cut, ramp = math.ceil(radius * scale), int(overlap * scale)
  if ramp >= 2 * cut:
    rho = cut / (ramp + 1)
    largest = _largest_tile_error(fn, x, whole, tile, overlap, scale)
    assert largest > 0.05  # the tiles' own outputs are wrong near their cut edges
    seam = error[rows ^ cols].max()
    assert seam <= rho * largest + 1e-5
    assert error[rows & cols].max(initial=0) <= (1 - (1 - rho) ** 2) * largest + 1e-5
    assert seam < 0.5 * largest


@pytest.mark.parametrize("overlap", [0, 4])
def test_pointwise_fn_is_exact_everywhere(overlap):
  """Radius 0: upsample x2 in space and time, mix channels 4 -> 3. The output takes its frame
  count and channels from fn; 23 x 30 is not a multiple of the stride."""
  mix = jax.random.normal(jax.random.key(0), (4, 3))

  def fn(x):
    x = jnp.repeat(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), 2, axis=3)
    return jnp.tanh(x @ mix)

  x = jax.random.normal(jax.random.key(1), (2, 3, 23, 30, 4))
  tiled = tiled_apply(fn, x, tile=10, overlap=overlap, scale=2)
  assert tiled.shape == (2, 6, 46, 60, 3)
  np.testing.assert_allclose(tiled, fn(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("overlap", [3, 6])
def test_conv_decoder_matches_whole_output(overlap):
  """r = 3, scale 2: overlap 3 is exact off the bands; overlap 6 = 2r also bounds the seams.
  41 x 37 is not a multiple of the stride, so the last tiles are edge-aligned."""
  x = jax.random.normal(jax.random.key(2), (1, 2, 41, 37, 4))
  _check_guarantee(_decoder(), x, tile=16, overlap=overlap, scale=2, radius=3)


@pytest.mark.parametrize("overlap", [6, 8])
def test_margin_makes_a_local_fn_exact_everywhere(overlap):
  """With margin = r = 3 no output comes from within r of a tile's cut edge, so with overlap
  >= 2r the tiled output equals the whole one at the seams too (the same decoder as above,
  whose plain blend is only bounded there)."""
  x = jax.random.normal(jax.random.key(2), (1, 2, 41, 37, 4))
  fn = _decoder()
  tiled = tiled_apply(fn, x, tile=16, overlap=overlap, scale=2, margin=3)
  np.testing.assert_allclose(tiled, fn(x), rtol=0, atol=1e-5)
  plain = tiled_apply(fn, x, tile=16, overlap=overlap, scale=2)
  assert np.abs(plain - fn(x)).max() > 1e-2  # without the margin the seams differ


def test_conv_encoder_with_fractional_scale():
  """r = 3, scale 1/2: c = ceil(3 / 2) = 2 output pixels cut, overlap 8 gives O = 4 = 2c."""
  x = jax.random.normal(jax.random.key(3), (2, 1, 40, 34, 3))
  _check_guarantee(_encoder(), x, tile=16, overlap=8, scale=HALF, radius=3)


def test_untiled_dimension_and_one_compile():
  """H <= tile is not split; edge-aligned tiles share one shape, so a jitted fn traces once
  for all tiles (and once more for the whole input in the comparison)."""
  traces = []

  @jax.jit
  def fn(x):
    traces.append(x.shape)
    return _decoder()(x)

  x = jax.random.normal(jax.random.key(4), (1, 1, 12, 45, 4))
  assert tiled_apply(fn, x, tile=16, overlap=6, scale=2, progress=True).shape == (1, 1, 24, 90, 3)
  assert traces == [(1, 1, 12, 16, 4)]
  _check_guarantee(fn, x, tile=16, overlap=6, scale=2, radius=3)
  assert traces == [(1, 1, 12, 16, 4), (1, 1, 12, 45, 4)]


def test_no_split_is_fn():
  x = jax.random.normal(jax.random.key(5), (1, 2, 9, 11, 4))
  np.testing.assert_array_equal(
    tiled_apply(_decoder(), x, tile=16, overlap=6, scale=2), _decoder()(x)
  )


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    (dict(tile=8, overlap=8, scale=2), ConfigError, "expected 0 <= overlap, tile > overlap"),
    (dict(tile=10, overlap=6, scale=2), ConfigError, "tile >= 2 \\* overlap"),
    (dict(tile=16, overlap=-1, scale=2), ConfigError, "expected 0 <= overlap"),
    (
      dict(tile=16, overlap=4, scale=2, margin=3),
      ConfigError,
      "overlap=4 is a tile overlap smaller than the decoder's receptive overlap",
    ),
    (dict(tile=15, overlap=4, scale=HALF), ConfigError, "tile=15 times scale=1/2"),
    (dict(tile=16, overlap=5, scale=HALF), ConfigError, "overlap=5 times scale=1/2"),
    (dict(tile=16, overlap=4, scale=0), ConfigError, "scale=0"),
  ],
)
def test_bad_tiling_raises(kwargs, error, message):
  x = jnp.zeros((1, 1, 20, 20, 3))
  with pytest.raises(error, match=message):
    tiled_apply(_encoder(), x, **kwargs)


def test_bad_shapes_raise():
  with pytest.raises(ShapeError, match=r"x has shape \(1, 20, 20, 3\), expected a video"):
    tiled_apply(_decoder(), jnp.zeros((1, 20, 20, 3)), tile=8, overlap=2, scale=2)
  with pytest.raises(ShapeError, match="H=21 times scale=1/2 is 21/2"):
    tiled_apply(_encoder(), jnp.zeros((1, 1, 21, 20, 3)), tile=8, overlap=2, scale=HALF)
  with pytest.raises(
    ShapeError,
    match=r"fn maps a tile \(8, 8\) to shape \(1, 1, 16, 16, 3\), "
    r"expected \[B, T', 32, 32, C\] for scale=4",
  ):
    tiled_apply(_decoder(), jnp.zeros((1, 1, 20, 20, 4)), tile=8, overlap=2, scale=4)
