"""Rotary position embedding (RoFormer, Su et al. 2021).

Rotating queries and keys by their positions makes attention logits depend only on the
relative offset between positions, so a layer trained on T frames accepts any T, and a
window shifted along the video (long-video sampling) sees the same geometry.
"""

import jax.numpy as jnp


PAIRS = ("halves", "interleaved")


def apply_rope(
  x: jnp.ndarray,
  positions: jnp.ndarray,
  max_wavelength: float = 10_000.0,
  pairs: str = "halves",
) -> jnp.ndarray:
  """Rotates feature pairs by angle `position * f_i`, f_i = max_wavelength^(-2i / D).

  Args:
    x: queries or keys `[B, L, N, D]` (D even).
    positions: `[L]` or `[B, L]`, integer or float token positions.
    max_wavelength: longest wavelength of the rotation frequencies.
    pairs: which features rotate together: "halves", `(x_i, x_{i + D/2})` (jvdm's own
      networks), or "interleaved", `(x_{2i}, x_{2i + 1})` (Wan 2.1 and diffusers'
      `repeat_interleave_real`, for imported weights).

  Returns:
    `[B, L, N, D]` in `x.dtype`; the rotation is computed in float32.
  """
  half = x.shape[-1] // 2
  frequencies = max_wavelength ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [D / 2]
  angles = positions.astype(jnp.float32)[..., None] * frequencies  # [(B,) L, D / 2]
  angles = angles[..., None, :]  # [(B,) L, 1, D / 2], broadcast over heads
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  x32 = x.astype(jnp.float32)
  if pairs == "interleaved":
    first, second = x32[..., 0::2], x32[..., 1::2]
    rotated = jnp.stack([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)
  if pairs != "halves":
    raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}.")
  first, second = jnp.split(x32, 2, axis=-1)
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return rotated.astype(x.dtype)


def rope_3d(
  x: jnp.ndarray, frame: jnp.ndarray, row: jnp.ndarray, col: jnp.ndarray, pairs: str = "halves"
) -> jnp.ndarray:
  """3D RoPE: the head dimension split into (frame, row, column) parts, each rotated by its
  own coordinate, with Wan 2.1's split (row and column parts 2 * (D // 6) each, the frame part
  the rest). x `[B, L, N, D]`; coordinates `[L]`; `pairs` as `apply_rope`."""
  spatial = 2 * (x.shape[-1] // 6)
  temporal = x.shape[-1] - 2 * spatial
  parts = jnp.split(x, [temporal, temporal + spatial], axis=-1)
  return jnp.concatenate(
    [
      apply_rope(part, coordinate, pairs=pairs)
      for part, coordinate in zip(parts, (frame, row, col))
    ],
    axis=-1,
  )


def video_rope(
  x: jnp.ndarray,
  frames: jnp.ndarray,
  rows: jnp.ndarray,
  cols: jnp.ndarray,
  pairs: str = "halves",
) -> jnp.ndarray:
  """`rope_3d` of a frame-major token grid: x `[B, F, P, N, D]`, `frames [F]`, the P tokens of
  every frame at `rows [P]`, `cols [P]`."""
  num_frames = frames.shape[0]
  flat = x.reshape((x.shape[0], -1) + x.shape[3:])
  rotated = rope_3d(
    flat,
    jnp.repeat(frames, rows.shape[0]),
    jnp.tile(rows, num_frames),
    jnp.tile(cols, num_frames),
    pairs,
  )
  return rotated.reshape(x.shape)
