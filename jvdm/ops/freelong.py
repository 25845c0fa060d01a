"""FreeLong's array operations (Lu et al. 2024, sec. 3.2): the local attention mask and
SpectralBlend, the 3D low-pass mix of global and local attention outputs. The layers that use
them and how they differ from the authors' code: `jvdm.models.layers.long_attention`.
"""

import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError

LOCAL_MASKS = ("adjusted", "strict")  # FreeLong's local attention masks (band_mask)
LOW_PASSES = ("gaussian", "box")  # FreeLong's SpectralBlend filters (low_pass_filter)


def band_mask(
  num_frames: int, window: int, tokens_per_frame: int = 1, kind: str = "adjusted"
) -> np.ndarray:
  """FreeLong's local attention mask: `[T * S, T * S]`, True where a token of frame i may attend
  to a token of frame j. Tokens are frame-major (S tokens of frame 0 first).

  Frame i sees frames [i - window // 2, i + window // 2] cut to the video; with kind="adjusted"
  (the authors' `get_adjusted_local_mask`) a row left with fewer than `window` frames is shifted
  inwards to `window` frames (or the whole video, if shorter), with kind="strict" (their
  `get_local_mask`) it stays cut.
  """
  if kind not in LOCAL_MASKS:
    raise ConfigError(f"Unknown FreeLong local mask {kind!r}; expected one of {LOCAL_MASKS}.")
  frame = np.arange(num_frames)
  start = np.maximum(0, frame - window // 2)
  end = np.minimum(num_frames, frame + window // 2 + 1)  # exclusive
  if kind == "adjusted":
    short = end - start < window
    # A row cut at the start grows to the right; one cut at the end grows to the left.
    end = np.where(short & (start == 0), np.minimum(num_frames, window), end)
    start = np.where(short & (start > 0), np.maximum(0, end - window), start)
  frames = np.repeat(frame, tokens_per_frame)
  return (frames[None, :] >= start[frames][:, None]) & (frames[None, :] < end[frames][:, None])


def low_pass_filter(
  shape: tuple[int, int, int], temporal_cutoff: float, spatial_cutoff: float, kind: str = "gaussian"
) -> np.ndarray:
  """`[T, H, W]` low-pass filter in numpy's (unshifted) FFT order; a cutoff of 0 along any axis
  gives the zero filter (FreeInit's and FreeLong's convention).

  "gaussian": FreeLong's (FreeInit's `gaussian_low_pass_filter`):
    exp(-((f_t / temporal_cutoff)^2 + (f_h / spatial_cutoff)^2 + (f_w / spatial_cutoff)^2) / 2),
  with f = 2 i / n - 1 at position i of the fftshifted n-point spectrum: the frequency as a
  fraction of Nyquist for an even n (half a bin lower for an odd n, as in their code).
  "box": 1 where the frequency's magnitude is at most `temporal_cutoff` of Nyquist along time
  and `spatial_cutoff` along rows and columns, so a cutoff of 1 passes every frequency.
  """
  if kind not in LOW_PASSES:
    raise ConfigError(f"Unknown FreeLong low-pass filter {kind!r}; expected one of {LOW_PASSES}.")
  if temporal_cutoff == 0 or spatial_cutoff == 0:
    return np.zeros(shape, np.float32)
  cutoffs = (temporal_cutoff, spatial_cutoff, spatial_cutoff)
  if kind == "gaussian":
    # The integer frequency k sits at position k + n // 2 of the fftshifted spectrum.
    grids = [
      (2.0 * (np.fft.fftfreq(n, 1 / n) + n // 2) / n - 1.0) / cutoff
      for n, cutoff in zip(shape, cutoffs)
    ]
    square = (
      grids[0][:, None, None] ** 2 + grids[1][None, :, None] ** 2 + grids[2][None, None, :] ** 2
    )
    return np.exp(-0.5 * square).astype(np.float32)

  def passes(n, cutoff):
    # |k| / (n / 2) <= cutoff, for the integer frequencies k of an n-point DFT.
    return 2 * np.abs(np.fft.fftfreq(n, 1 / n)) <= cutoff * n

  time, rows, cols = (passes(n, c) for n, c in zip(shape, cutoffs))
  return (time[:, None, None] & rows[None, :, None] & cols[None, None, :]).astype(np.float32)


def spectral_blend(
  global_x: jnp.ndarray,
  local_x: jnp.ndarray,
  temporal_cutoff: float,
  spatial_cutoff: float,
  low_pass: str = "gaussian",
) -> jnp.ndarray:
  """FreeLong's SpectralBlend (sec. 3.2) of `[B, T, H, W, C]` features, over (T, H, W):
  `Re IFFT3D(FFT3D(global) * LP + FFT3D(local) * (1 - LP))` with LP = `low_pass_filter`.

  Computed as `local + Re IFFT3D(FFT3D(global - local) * LP)` (the same by linearity; one
  transform pair), in float32, returned in global_x's dtype.
  """
  if global_x.shape != local_x.shape or global_x.ndim != 5:
    raise ConfigError(
      f"spectral_blend takes two [B, T, H, W, C] arrays of one shape, got "
      f"{global_x.shape} and {local_x.shape}."
    )
  axes = (1, 2, 3)
  pass_band = low_pass_filter(global_x.shape[1:4], temporal_cutoff, spatial_cutoff, low_pass)
  local_x32 = local_x.astype(jnp.float32)
  spectrum = jnp.fft.fftn(global_x.astype(jnp.float32) - local_x32, axes=axes)
  low = jnp.fft.ifftn(spectrum * pass_band[None, ..., None], axes=axes).real
  return (local_x32 + low).astype(global_x.dtype)
