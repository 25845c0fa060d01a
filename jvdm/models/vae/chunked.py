"""Encoding and decoding over time in chunks, so memory does not grow with the video's length.

Causal VAE: frame 0 (latent frame 0) goes alone, then a `lax.scan` runs fixed-size chunks,
carrying every causal conv's last input frames (the "cache" collection of
`jvdm.models.vae.causal_conv`) from chunk to chunk. The result equals the whole-video pass up to
float rounding, and only one chunk's activations are live at a time.

Temporal-decoder VAE: its decoder's temporal convs are centred, so chunks are decoded
independently (SVD's `decode_chunk_size`): cheaper, not identical to the whole pass at the
chunk borders. Its encoder is per frame, so chunks there are exact.

Wan 2.1's VAE (`jvdm.models.vae.wan_vae`) runs the causal path too: decoding one latent frame
per chunk and encoding 4 frames per chunk are diffusers' `AutoencoderKLWan._decode`/`_encode`.

Both functions are traceable; wrap them in `jax.jit` with the chunk size static.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError
from jvdm.models.vae.autoencoder import VideoAutoencoder
from jvdm.models.vae.causal_conv import CACHE
from jvdm.models.vae.wan_vae import WanVAE

# Both run chunk by chunk through the causal convs' cache (`causal`, `temporal_compression`,
# `check_num_frames`, and `encode`/`decode` taking `first_chunk`).
ChunkableVAE = VideoAutoencoder | WanVAE


def _check_chunk(chunk_frames: int, multiple: int, what: str) -> None:
  if not isinstance(chunk_frames, int) or chunk_frames < 1 or chunk_frames % multiple:
    raise ConfigError(
      f"The {what} chunk size must be a positive multiple of {multiple}, got {chunk_frames!r}."
    )


def _split_time(x: jnp.ndarray, chunk: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`[B, T, ...]` -> (`[N, B, chunk, ...]` full chunks, `[B, T - N chunk, ...]` the rest)."""
  num = x.shape[1] // chunk
  full = x[:, : num * chunk].reshape((x.shape[0], num, chunk) + x.shape[2:]).swapaxes(0, 1)
  return full, x[:, num * chunk :]


def _merge_time(chunks: Any) -> Any:
  """`[N, B, c, ...]` -> `[B, N c, ...]` for every leaf."""
  return jax.tree.map(lambda a: a.swapaxes(0, 1).reshape((a.shape[1], -1) + a.shape[3:]), chunks)


def _concat_time(*parts: Any) -> Any:
  return jax.tree.map(lambda *a: jnp.concatenate(a, axis=1), *parts)


def _run_causal(apply: Callable, x: jnp.ndarray, chunk: int) -> Any:
  """`apply(x_chunk, cache, first_chunk) -> (out, cache)` over x's frame 0 alone, then chunks."""
  first, cache = apply(x[:, :1], None, True)
  full, rest = _split_time(x[:, 1:], chunk)
  parts = [first]
  if full.shape[0]:
    cache, outs = jax.lax.scan(lambda c, xc: apply(xc, c, False)[::-1], cache, full)
    parts.append(_merge_time(outs))
  if rest.shape[1]:
    parts.append(apply(rest, cache, False)[0])
  return _concat_time(*parts)


def _run_independent(apply: Callable, x: jnp.ndarray, chunk: int) -> Any:
  """`apply(x_chunk)` over independent chunks of x's frames (a `lax.map`), then the rest."""
  full, rest = _split_time(x, chunk)
  parts = [_merge_time(jax.lax.map(apply, full))] if full.shape[0] else []
  if rest.shape[1]:
    parts.append(apply(rest))
  return _concat_time(*parts)


def _apply_with_cache(model: ChunkableVAE, params: Any, method: Callable) -> Callable:
  def apply(x, cache, first_chunk):
    variables = {"params": params} if cache is None else {"params": params, CACHE: cache}
    out, state = model.apply(variables, x, first_chunk, method=method, mutable=[CACHE])
    return out, state[CACHE]

  return apply


def decode_in_chunks(
  model: ChunkableVAE, params: Any, latents: jnp.ndarray, chunk_frames: int
) -> jnp.ndarray:
  """`[B, t, h, w, c]` latents -> `[B, T, H, W, C]` pixels, `chunk_frames` latent frames at a time."""
  _check_chunk(chunk_frames, 1, "decode")
  if model.causal:
    return _run_causal(_apply_with_cache(model, params, model.decode), latents, chunk_frames)
  decode = lambda z: model.apply({"params": params}, z, method=model.decode)
  return _run_independent(decode, latents, chunk_frames)


def encode_in_chunks(
  model: ChunkableVAE, params: Any, videos: jnp.ndarray, chunk_frames: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`[B, T, H, W, C]` -> posterior `(mean, logvar)`, `chunk_frames` frames at a time after
  frame 0 (a multiple of the temporal compression)."""
  _check_chunk(chunk_frames, model.temporal_compression, "encode")
  model.check_num_frames(videos.shape[1])
  if model.causal:
    return _run_causal(_apply_with_cache(model, params, model.encode), videos, chunk_frames)
  encode = lambda x: model.apply({"params": params}, x, method=model.encode)
  return _run_independent(encode, videos, chunk_frames)
