"""Generates scikit-image's PSNR and SSIM of a few small video pairs for jvdm's metric tests.

Writes tests/fixtures/reconstruction_metric_references.npz. Regenerate with:

  pip install "scikit-image==0.26.*" && python scripts/make_reconstruction_metric_references.py

The test suite reads only the npz file; scikit-image is not a dependency of jvdm.

Each case NAME holds a pair of videos a, b [T, H, W, C] (float32 in [-1, 1], or uint8), the
lowest pixel value L (-1 or 0) and the span R (2 or 255), and for each frame, on the frames
upcast to float64, skimage.metrics.peak_signal_noise_ratio(a_t, b_t, data_range=R) and
SSIM(a_t - L, b_t - L), where SSIM(x, y) is skimage.metrics.structural_similarity(x, y,
data_range=R, channel_axis=-1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False):
  NAME/a, NAME/b          [T, H, W, C]
  NAME/data_range         float64 scalar R
  NAME/low                float64 scalar L
  NAME/psnr               float64 [T]
  NAME/ssim               float64 [T], SSIM(a_t - L, b_t - L): intensities in [0, R]
  NAME/ssim_as_given      float64 [T], SSIM(a_t, b_t): float cases only
and globally: versions (json str).
"""

import json
import pathlib

import numpy as np
import scipy
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

OUT = (
  pathlib.Path(__file__).resolve().parents[1]
  / "tests"
  / "fixtures"
  / "reconstruction_metric_references.npz"
)


def _smooth(rng, shape, factor):
  """Random frames with structure: low-resolution noise upsampled by `factor`, in [-1, 1]."""
  t, h, w, c = shape
  low = rng.uniform(-1, 1, (t, -(-h // factor), -(-w // factor), c))
  return np.repeat(np.repeat(low, factor, axis=1), factor, axis=2)[:, :h, :w]


def _cases(rng):
  """(name, a, b, data_range, low): float pairs at several noise levels, a uint8 pair and the
  smallest frame SSIM takes (11 x 11 gives one window position)."""
  a = _smooth(rng, (3, 16, 16, 1), 4)
  yield "gray_float", a, np.clip(a + 0.1 * rng.standard_normal(a.shape), -1, 1), 2.0, -1.0
  a = _smooth(rng, (2, 24, 20, 3), 3)
  yield "rgb_float_noisy", a, np.clip(a + 0.4 * rng.standard_normal(a.shape), -1, 1), 2.0, -1.0
  a = rng.uniform(-1, 1, (2, 11, 13, 3))
  yield "rgb_float_smallest", a, np.clip(a + 0.05 * rng.standard_normal(a.shape), -1, 1), 2.0, -1.0
  a = _smooth(rng, (2, 32, 28, 3), 2)
  b = np.clip(a + 0.2 * rng.standard_normal(a.shape), -1, 1)
  to_uint8 = lambda v: np.round((v + 1) * 127.5).astype(np.uint8)
  yield "rgb_uint8", to_uint8(a), to_uint8(b), 255.0, 0.0


def _ssim(x, y, data_range):
  return structural_similarity(
    x,
    y,
    data_range=data_range,
    channel_axis=-1,
    gaussian_weights=True,
    sigma=1.5,
    use_sample_covariance=False,
  )


def main():
  rng = np.random.default_rng(0)
  arrays = {
    "versions": json.dumps(
      {"scikit-image": skimage.__version__, "numpy": np.__version__, "scipy": scipy.__version__}
    )
  }
  for name, a, b, data_range, low in _cases(rng):
    if a.dtype != np.uint8:
      a, b = a.astype(np.float32), b.astype(np.float32)
    frames = [(x.astype(np.float64), y.astype(np.float64)) for x, y in zip(a, b)]
    arrays[f"{name}/a"], arrays[f"{name}/b"] = a, b
    arrays[f"{name}/data_range"], arrays[f"{name}/low"] = np.float64(data_range), np.float64(low)
    arrays[f"{name}/psnr"] = np.array(
      [peak_signal_noise_ratio(x, y, data_range=data_range) for x, y in frames]
    )
    arrays[f"{name}/ssim"] = np.array([_ssim(x - low, y - low, data_range) for x, y in frames])
    if low != 0:
      arrays[f"{name}/ssim_as_given"] = np.array([_ssim(x, y, data_range) for x, y in frames])
    print(f"{name}: psnr {arrays[f'{name}/psnr']}, ssim {arrays[f'{name}/ssim']}")
  OUT.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(OUT, **arrays)
  print(f"wrote {OUT}")


if __name__ == "__main__":
  main()
