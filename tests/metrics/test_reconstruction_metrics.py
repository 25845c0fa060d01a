"""Tests for PSNR and SSIM (jvdm/metrics/reconstruction.py).

The fixture comes from scripts/make_reconstruction_metric_references.py: scikit-image 0.26's
per-frame values on small random video pairs; this file needs only numpy to read it.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.errors import ConfigError, ShapeError
from jvdm.metrics.reconstruction import psnr, ssim

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "reconstruction_metric_references.npz"


def _cases():
  with np.load(FIXTURE) as data:
    names = sorted({key.split("/")[0] for key in data.files if key.endswith("/a")})
    return [
      (name, {key.split("/")[1]: data[key] for key in data.files if key.startswith(name + "/")})
      for name in names
    ]


@pytest.mark.parametrize("name, case", _cases(), ids=[name for name, _ in _cases()])
def test_matches_skimage(name, case):
  """Per frame (each frame scored as a one-frame video) and per video (the frames' mean);
  SSIM on intensities above the default low end (-1 for floats, 0 for uint8) and, for
  floats, with low=0 on the values as given."""
  a, b, data_range = case["a"], case["b"], float(case["data_range"])
  assert a.dtype == (np.uint8 if "uint8" in name else np.float32)
  assert float(case["low"]) == (0.0 if "uint8" in name else -1.0)
  checks = [(psnr, {}, "psnr", 1e-4), (ssim, {}, "ssim", 1e-5)]
  if "ssim_as_given" in case:
    checks.append((ssim, {"low": 0.0}, "ssim_as_given", 1e-5))
  for metric, kwargs, key, tolerance in checks:
    per_frame = metric(a[:, None], b[:, None], data_range=data_range, **kwargs)
    np.testing.assert_allclose(per_frame, case[key], rtol=0, atol=tolerance)
    per_video = metric(np.stack([a, a]), np.stack([b, a]), data_range=data_range, **kwargs)
    assert per_video.shape == (2,)
    np.testing.assert_allclose(per_video[0], case[key].mean(), rtol=0, atol=tolerance)


def test_identical_and_noisy_videos():
  """Identical: SSIM 1, PSNR inf. More noise lowers both, monotonically; under jit."""
  videos = jax.random.uniform(jax.random.key(0), (2, 3, 16, 16, 3), minval=-1, maxval=1)
  np.testing.assert_allclose(ssim(videos, videos), [1.0, 1.0], rtol=0, atol=1e-6)
  assert np.all(np.isinf(psnr(videos, videos))) and np.all(psnr(videos, videos) > 0)
  noise = jax.random.normal(jax.random.key(1), videos.shape)
  scores = [
    jax.jit(lambda x, y: (psnr(x, y), ssim(x, y)))(videos, videos + level * noise)
    for level in (0.01, 0.05, 0.2)
  ]
  for (psnr_less, ssim_less), (psnr_more, ssim_more) in zip(scores, scores[1:]):
    assert np.all(psnr_more < psnr_less) and np.all(ssim_more < ssim_less)
  np.testing.assert_allclose(scores[0][0], 10 * np.log10(4 / 0.01**2), atol=0.2)


def test_uint8_matches_the_same_video_in_floats():
  """The uint8 video with data_range=255 scores as its [-1, 1] floats with data_range=2 (SSIM
  measures both from the low end of their range)."""
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (1, 2, 12, 14, 3), dtype=np.uint8)
  b = np.clip(a + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
  as_float = lambda v: v.astype(np.float32) / 127.5 - 1
  for metric in (psnr, ssim):
    np.testing.assert_allclose(
      metric(a, b, data_range=255), metric(as_float(a), as_float(b)), rtol=1e-5
    )


def test_one_video_gives_a_scalar():
  video = jnp.zeros((2, 11, 11, 1))
  assert psnr(video, video + 0.1).shape == () and ssim(video, video + 0.1).shape == ()


@pytest.mark.parametrize(
  "a_shape, b_shape, message",
  [
    ((1, 2, 16, 16, 3), (1, 2, 16, 15, 3), r"shapes \(1, 2, 16, 16, 3\) and \(1, 2, 16, 15, 3\)"),
    ((16, 16, 3), (16, 16, 3), r"expected one shape \[..., T, H, W, C\]"),
  ],
)
def test_bad_shapes_raise(a_shape, b_shape, message):
  for metric in (psnr, ssim):
    with pytest.raises(ShapeError, match=message):
      metric(jnp.zeros(a_shape), jnp.zeros(b_shape))


def test_ssim_needs_an_11_pixel_frame():
  with pytest.raises(ShapeError, match="with H, W >= 11"):
    ssim(jnp.zeros((1, 1, 10, 16, 3)), jnp.zeros((1, 1, 10, 16, 3)))


def test_bad_data_range_and_dtypes_raise():
  video = np.zeros((1, 1, 16, 16, 3), np.uint8)
  with pytest.raises(
    ConfigError, match="data_range=2.0 for uint8 videos, expected the dtype's span 255"
  ):
    psnr(video, video)
  with pytest.raises(ConfigError, match="data_range=0, expected the positive span"):
    ssim(video.astype(np.float32), video.astype(np.float32), data_range=0)
  with pytest.raises(
    ConfigError, match="dtypes uint8 and float32, expected both integer or both float"
  ):
    ssim(video, video.astype(np.float32), data_range=255)
