"""Spatially tiled application of a local function (a VAE decoder or encoder) to a video.

`tiled_apply(fn, x, tile=..., overlap=..., scale=...)` cuts x [B, T, H, W, C] into tiles of
`tile` x `tile` pixels along H and W, neighbours sharing `overlap` pixels (stride tile -
overlap), runs fn on one tile at a time in a Python loop, so that only one tile's activations
are live on the device, and blends the outputs on the host.

Tiles. Along an axis of size N > tile the tiles start at 0, stride, 2 stride, ... while a
start is below N - tile, and one more tile starts at N - tile: the last tile is aligned to
the edge, so every tile has the same shape and a jitted fn compiles once. An axis with
N <= tile is not split.

Blending. The nominal tiles [i stride, i stride + tile), cut at the edge, cover the axis
with neighbours overlapping by exactly `overlap`; the edge-aligned last tile contributes
only on its nominal window (the rows it shares beyond that with the tile before are
dropped). Each tile's output is weighted by a separable linear cross-fade over the
O = overlap * scale output pixels it shares with each neighbour: (d + 1) / (O + 1) at
distance d from its leading edge and (O - d) / (O + 1) across its trailing overlap, 1 in
between. Neighbouring ramps sum to 1, so the weights are a partition of unity and the
output is sum_tiles weight * fn(tile), no normalization needed. This is the linear blend of
diffusers' AutoencoderKL.tiled_decode (blend_v / blend_h, which cross-fade over the
overlap and crop each tile to the stride), with a symmetric ramp and the edge-aligned last
tile fitted in.

Margin. With `margin` = r, the ramp is instead 0 over the c = ceil(r * scale) output pixels
next to the cut edge, linear over the middle O - 2c, and 1 over the last c: neighbouring ramps
still sum to 1, and no output pixel comes from a tile within c of its cut edge. For a local fn
(below) with overlap >= 2r, the output then equals fn(x) everywhere.

Guarantee without margin. Let fn be local: each output pixel depends only on the input pixels within r of
the pixel (decoder) or block of pixels (encoder) it stands for, and fn pads a tile edge on
the image border as it pads the image. A tile's output then equals fn(x) except within
c = ceil(r * scale) output pixels of an edge it does not share with the image (its cut
zone). So:
  O >= c:  the output equals fn(x) outside the overlap bands (their pixels lie at least O
           output pixels inside their only tile);
  O >= 2c: in a band at most one of the two tiles is cut, and there its weight is at most
           rho = c / (O + 1); so |output - fn(x)| <= rho E along a seam and
           <= (1 - (1 - rho)^2) E where two seams cross, E being the largest error of a
           tile's output against fn(x).
For a decoder (scale s whole) O >= 2c reads overlap >= 2r. A VAE with GroupNorm or attention
over the whole frame is not local; tiling then approximates, as in diffusers.
"""

from collections.abc import Callable
import fractions

import jax
import numpy as np
import tqdm

from jvdm.errors import ConfigError, ShapeError


def _scaled(value: int, scale: fractions.Fraction, what: str, error: type[Exception]) -> int:
  """value * scale as an int, or `error` saying which size is not a whole number."""
  scaled = value * scale
  if scaled.denominator != 1:
    raise error(
      f"{what}={value} times scale={scale} is {scaled}, expected a whole number of output pixels."
    )
  return int(scaled)


def _axis_tiles(
  size: int, tile: int, overlap: int, scale: fractions.Fraction, margin: int = 0
) -> list[tuple[int, int, int, np.ndarray]]:
  """Per tile along one axis: (input start, output window start, output window end, weights
  over the window), for tiles of min(tile, size) input pixels (module docstring)."""
  out_size = int(size * scale)
  if size <= tile:
    return [(0, 0, out_size, np.ones(out_size))]
  stride = tile - overlap
  starts = list(range(0, size - tile, stride))
  ramp_width, out_tile = int(overlap * scale), int(tile * scale)
  # Zero over the `margin` output pixels next to the tile's cut edge, then linear, then one.
  out_margin = int(np.ceil(margin * scale))
  ramp = np.clip(
    (np.arange(ramp_width) - out_margin + 1) / (ramp_width - 2 * out_margin + 1), 0.0, 1.0
  )
  result = []
  for i, nominal in enumerate(starts + [len(starts) * stride]):
    window_start = int(nominal * scale)
    window_end = min(window_start + out_tile, out_size)
    weight = np.ones(window_end - window_start)
    if i > 0:
      weight[:ramp_width] = ramp
    if window_end < out_size:
      weight[len(weight) - ramp_width :] = ramp[::-1]
    result.append((min(nominal, size - tile), window_start, window_end, weight))
  return result


def tiled_apply(
  fn: Callable,
  x,
  *,
  tile: int,
  overlap: int,
  scale: int | fractions.Fraction,
  margin: int = 0,
  progress: bool = False,
) -> np.ndarray:
  """fn(x) computed tile by tile over H and W and blended (module docstring).

  Args:
    fn: a JAX function mapping [B, T, h, w, c] to [B, T', h * scale, w * scale, C], local
      (a VAE decoder or encoder), best jitted: every call gets the same tile shape.
    x: [B, T, H, W, C].
    tile: tile side in input pixels.
    overlap: pixels shared by neighbouring tiles; tile >= 2 * overlap, so that a pixel lies
      in at most two tiles along each axis.
    scale: output pixels per input pixel (8 for a decoder, Fraction(1, 8) for an encoder);
      tile, overlap, H and W times scale must be whole numbers.
    margin: fn's receptive radius r in input pixels: a tile's outputs within r of a cut
      edge get weight 0, and the cross-fade runs over the rest of the overlap, which must
      be >= 2 * margin. A local fn is then reproduced exactly (module docstring).
    progress: show a tqdm bar over the tiles.

  Returns:
    numpy [B, T', H * scale, W * scale, C] in fn's output dtype, assembled on the host.
  """
  scale = fractions.Fraction(scale)
  if scale <= 0:
    raise ConfigError(
      f"scale={scale}, expected a positive number of output pixels per input pixel."
    )
  if overlap < 0 or tile <= overlap or tile < 2 * overlap:
    raise ConfigError(
      f"tile={tile}, overlap={overlap}: expected 0 <= overlap, tile > overlap "
      f"and tile >= 2 * overlap (a pixel in at most two tiles per axis)."
    )
  if overlap < 2 * margin:
    raise ConfigError(
      f"overlap={overlap} is a tile overlap smaller than the decoder's "
      f"receptive overlap: expected overlap >= 2 * margin = {2 * margin} (the "
      f"receptive radius is {margin} input pixels)."
    )
  _scaled(tile, scale, "tile", ConfigError)
  _scaled(overlap, scale, "overlap", ConfigError)
  if np.ndim(x) != 5:
    raise ShapeError(f"x has shape {np.shape(x)}, expected a video [B, T, H, W, C].")
  height, width = x.shape[2:4]
  out_hw = (_scaled(height, scale, "H", ShapeError), _scaled(width, scale, "W", ShapeError))
  tile_hw = (min(tile, height), min(tile, width))
  expected = tuple(int(n * scale) for n in tile_hw)
  piece_shape = jax.eval_shape(
    fn, jax.ShapeDtypeStruct(x.shape[:2] + tile_hw + x.shape[4:], x.dtype)
  )
  if len(piece_shape.shape) != 5 or piece_shape.shape[2:4] != expected:
    raise ShapeError(
      f"fn maps a tile {tile_hw} to shape {piece_shape.shape}, expected "
      f"[B, T', {expected[0]}, {expected[1]}, C] for scale={scale}."
    )
  out = np.zeros(
    piece_shape.shape[:2] + out_hw + piece_shape.shape[4:],
    np.result_type(piece_shape.dtype, np.float32),
  )
  rows = _axis_tiles(height, tile, overlap, scale, margin)
  cols = _axis_tiles(width, tile, overlap, scale, margin)
  with tqdm.tqdm(
    total=len(rows) * len(cols), desc="tiles", unit="tile", disable=not progress
  ) as bar:
    for y, y0, y1, wy in rows:
      for x_start, x0, x1, wx in cols:
        piece = np.asarray(fn(x[:, :, y : y + tile_hw[0], x_start : x_start + tile_hw[1]]))
        # The window's offset inside the tile: nonzero only for an edge-aligned last tile.
        oy, ox = y0 - int(y * scale), x0 - int(x_start * scale)
        weight = (wy[:, None] * wx[None, :])[..., None].astype(out.dtype)
        out[:, :, y0:y1, x0:x1] += piece[:, :, oy : oy + y1 - y0, ox : ox + x1 - x0] * weight
        bar.update()
  return out.astype(piece_shape.dtype)
