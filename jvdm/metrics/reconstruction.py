"""Reconstruction metrics for videos: PSNR and SSIM, per frame and averaged per video.

Both take two videos [..., T, H, W, C] of one shape, both float (jvdm's [-1, 1], with the
default data_range=2) or both integer (uint8 with data_range=255), score each frame
[H, W, C], and return the mean over the T frames: [B] for [B, T, H, W, C] (a scalar for one
video [T, H, W, C]; score images as one-frame videos [B, 1, H, W, C]). They are jax.numpy
and run under jit, with data_range and low Python numbers.

PSNR = 10 log10(data_range^2 / MSE), the MSE over the frame's pixels and channels
(skimage.metrics.peak_signal_noise_ratio). An exact frame has MSE 0 and PSNR inf, so a video
with one exact frame scores inf; there is no cap.

SSIM is Wang et al. 2004, "Image quality assessment: from error visibility to structural
similarity", eq. 13: local means, variances and covariance under an 11 x 11 Gaussian window
of sigma 1.5 (normalized), K1 = 0.01, K2 = 0.03, C_i = (K_i data_range)^2, the SSIM map
averaged over the 'valid' window positions (those inside the frame) and over channels. This
is skimage.metrics.structural_similarity with gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=-1 and data_range given (whose reflect-padded
filter is cropped to the same valid positions), run on the intensities x - low in
[0, data_range]: Wang et al.'s luminance term compares nonnegative intensities and is not
shift invariant, so a [-1, 1] video and its uint8 version score alike only when both are
measured from their range's low end (-1, 0). skimage and torchmetrics take the values as
given; low=0 reproduces them on [-1, 1] floats. tests/fixtures holds skimage's values.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError, ShapeError

_SIGMA, _RADIUS = 1.5, 5  # skimage: radius int(3.5 sigma + 0.5), an 11-tap window
_K1, _K2 = 0.01, 0.03


def _frames(a, b, data_range: float, low: float, min_side: int = 1):
  """(a - low) / data_range and (b - low) / data_range as floats, after checking shapes,
  dtypes and the range."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.shape != b.shape or a.ndim < 4 or min(a.shape[-3:-1]) < min_side:
    raise ShapeError(
      f"Got videos of shapes {a.shape} and {b.shape}, expected one shape "
      f"[..., T, H, W, C] with H, W >= {min_side}."
    )
  if jnp.issubdtype(a.dtype, jnp.integer) != jnp.issubdtype(b.dtype, jnp.integer):
    raise ConfigError(
      f"Got videos of dtypes {a.dtype} and {b.dtype}, expected both integer or both float."
    )
  if data_range <= 0:
    raise ConfigError(
      f"data_range={data_range}, expected the positive span of pixel values "
      f"(2 for [-1, 1], 255 for uint8)."
    )
  if jnp.issubdtype(a.dtype, jnp.integer):
    span = int(jnp.iinfo(a.dtype).max) - int(jnp.iinfo(a.dtype).min)
    if data_range != span:
      raise ConfigError(
        f"data_range={data_range} for {a.dtype} videos, expected the dtype's span {span}."
      )
  dtype = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
  return (a.astype(dtype) - low) / data_range, (b.astype(dtype) - low) / data_range


def psnr(a, b, data_range: float = 2.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB per video [...] of videos [..., T, H, W, C] (module
  docstring); inf where every frame is exact."""
  a, b = _frames(a, b, data_range, low=0.0)
  mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
  return jnp.mean(-10 * jnp.log10(mse), axis=-1)


def _gaussian_blur_valid(z: jax.Array) -> jax.Array:
  """Each channel of z [N, H, W, K] filtered by the normalized 11 x 11 Gaussian, valid only:
  [N, H - 10, W - 10, K] (separable: one pass per axis)."""
  taps = np.exp(-(np.arange(-_RADIUS, _RADIUS + 1) ** 2) / (2 * _SIGMA**2))
  taps = jnp.asarray(taps / taps.sum(), z.dtype)
  channels = z.shape[-1]
  for kernel_shape in [(2 * _RADIUS + 1, 1, 1, 1), (1, 2 * _RADIUS + 1, 1, 1)]:
    kernel = jnp.broadcast_to(taps.reshape(kernel_shape), kernel_shape[:3] + (channels,))
    z = jax.lax.conv_general_dilated(
      z,
      kernel,
      (1, 1),
      "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=channels,
      precision=jax.lax.Precision.HIGHEST,
    )
  return z


def ssim(a, b, data_range: float = 2.0, *, low: float | None = None) -> jax.Array:
  """Mean structural similarity per video [...] of videos [..., T, H, W, C] with H, W >= 11
  (module docstring); 1 for identical videos.

  low: the lowest pixel value, from which intensities are measured; None for 0 with integer
  videos and -1 with float videos (jvdm's [-1, 1]).
  """
  if low is None:
    low = 0.0 if jnp.issubdtype(jnp.asarray(a).dtype, jnp.integer) else -1.0
  a, b = _frames(a, b, data_range, low, min_side=2 * _RADIUS + 1)
  lead, (height, width, channels) = a.shape[:-3], a.shape[-3:]
  x, y = a.reshape((-1, height, width, channels)), b.reshape((-1, height, width, channels))
  # Intensities are divided by data_range, so C_i = K_i^2 (SSIM is unchanged by a common
  # scale).
  c1, c2 = _K1**2, _K2**2
  moments = _gaussian_blur_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1))
  mu_x, mu_y, xx, yy, xy = jnp.split(moments, 5, axis=-1)
  var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
  ssim_map = (
    (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
  )
  per_frame = jnp.mean(ssim_map, axis=(-3, -2, -1)).reshape(lead)
  return jnp.mean(per_frame, axis=-1)
