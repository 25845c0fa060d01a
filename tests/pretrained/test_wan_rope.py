"""Wan 2.1's rotary positions: jvdm's 3D RoPE with interleaved pairs rotates each feature pair by
the angles of diffusers' `WanRotaryPosEmbed` (the shipped tables, scripts/
make_pretrained_references.py), and is the halves layout up to a feature permutation."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jvdm.models.layers.rope import video_rope

TABLES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pretrained" / "wan_rope.npz"
FRAMES, ROWS, COLS, HEAD = 3, 4, 5, 12


def _grid():
  rows = jnp.repeat(jnp.arange(ROWS), COLS)
  cols = jnp.tile(jnp.arange(COLS), ROWS)
  return jnp.arange(FRAMES), rows, cols


def test_interleaved_pairs_turn_by_diffusers_angles():
  tables = np.load(TABLES)  # cos, sin [F * R * C, HEAD], frame-major tokens
  # "Head" n holds the basis vector e_2n: its pair (2n, 2n + 1) becomes (cos, sin) of its angle.
  basis = jnp.eye(HEAD)[0::2]  # [HEAD / 2, HEAD]
  x = jnp.broadcast_to(basis, (1, FRAMES, ROWS * COLS) + basis.shape)
  out = np.asarray(video_rope(x, *_grid(), pairs="interleaved")).reshape(-1, HEAD // 2, HEAD)
  pairs = np.arange(HEAD // 2)
  np.testing.assert_allclose(out[:, pairs, 2 * pairs], tables["cos"][:, 0::2], atol=1e-6)
  np.testing.assert_allclose(out[:, pairs, 2 * pairs + 1], tables["sin"][:, 1::2], atol=1e-6)


def test_interleaved_is_the_halves_layout_permuted():
  x = jax.random.normal(jax.random.key(0), (2, FRAMES, ROWS * COLS, 3, HEAD))
  spatial = 2 * (HEAD // 6)
  sizes = [HEAD - 2 * spatial, spatial, spatial]
  # Within each part, interleaved feature 2i pairs with 2i + 1, halves feature i with i + d / 2.
  order, start = [], 0
  for size in sizes:
    order += [start + 2 * i for i in range(size // 2)] + [
      start + 2 * i + 1 for i in range(size // 2)
    ]
    start += size
  order = np.array(order)
  interleaved = video_rope(x, *_grid(), pairs="interleaved")
  halves = video_rope(x[..., order], *_grid(), pairs="halves")
  np.testing.assert_allclose(interleaved[..., order], halves, atol=1e-6)
