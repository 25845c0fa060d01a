"""A trained VAE as the latent space of a diffusion model: pixels <-> normalized latents.

Latents are normalized as `(z - shift) * scale` with the mean and inverse standard deviation
of the VAE's latents over data, so that the diffusion model sees roughly unit-variance inputs
(LDM's scale factor, Rombach et al. 2022, Sec. 4.3.2 and Appendix G; SD3's shift). The
statistics are computed when the VAE is evaluated and written beside its checkpoints as
`latent_statistics.json`, so a latent diffusion run needs only the VAE's workdir.
"""

import fractions
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jvdm.data.transforms import to_network_input
from jvdm.errors import ConfigError
from jvdm.models.vae.autoencoder import VideoAutoencoder
from jvdm.ops.gaussian import sample_posterior
from jvdm.models.vae.chunked import decode_in_chunks
from jvdm.models.vae.tiling import tiled_apply


def check_latent_channels(
  model: VideoAutoencoder, latent_config: ml_collections.ConfigDict
) -> None:
  if model.latent_channels != latent_config.channels:
    raise ConfigError(
      f"config.latent.channels={latent_config.channels}, but the VAE in "
      f"{latent_config.vae_workdir} has {model.latent_channels} latent channels. A latent "
      "diffusion model works only with the VAE whose latents it was trained on."
    )


@flax.struct.dataclass
class LatentSpace:
  """Encodes pixel videos to normalized latents and decodes them back.

  A pytree whose leaves are the params and the statistics, so `jax.jit(LatentSpace.to_latents)`
  takes the params as arguments rather than baking them into the program.

  Attributes:
    model, params: the VAE and its (EMA) params.
    shift, scale: latent normalization, `(z - shift) * scale`.
    decode_chunk_frames: latent frames decoded at a time (0 = all at once).
    decode_tile: latent pixels per spatial tile when decoding (0 = whole frames); tiles
      overlap by `decode_tile_overlap` (0 = twice the decoder's receptive radius) and are
      cross-faded past that radius (`tiling.tiled_apply`): exact for a VAE with norm="rms"
      and no middle attention, approximate otherwise.
    decode_row_slices: the decoder's convs run in this many bands of rows
      (`VideoAutoencoder.decoder_row_slices`; exact; at 32x32 it did not lower XLA's planned
      temporaries, see benchmarks/vae.py).
    sample_posterior: encode to a posterior sample (as the LDM trains) rather than its mean.
  """

  model: VideoAutoencoder = flax.struct.field(pytree_node=False)
  params: Any
  shift: float
  scale: float
  decode_chunk_frames: int = flax.struct.field(pytree_node=False, default=0)
  decode_tile: int = flax.struct.field(pytree_node=False, default=0)
  decode_tile_overlap: int = flax.struct.field(pytree_node=False, default=0)
  decode_row_slices: int = flax.struct.field(pytree_node=False, default=1)
  sample_posterior: bool = flax.struct.field(pytree_node=False, default=True)

  def normalize(self, latents: jnp.ndarray) -> jnp.ndarray:
    return (latents - self.shift) * self.scale

  def encode(self, videos: jnp.ndarray, key: jax.Array | None = None) -> jnp.ndarray:
    """Traceable: `[B, T, H, W, C]` pixels (uint8, or floats in [-1, 1]) -> normalized latents,
    a posterior sample when `key` is given and `sample_posterior` is set, else the mean."""
    videos = to_network_input(videos)
    mean, logvar = self.model.apply({"params": self.params}, videos, method=self.model.encode)
    z = sample_posterior(key, mean, logvar) if key is not None and self.sample_posterior else mean
    return self.normalize(z)

  def encode_tiled(
    self, videos: jnp.ndarray, tile: int, overlap: int = 0, progress: bool = False
  ) -> np.ndarray:
    """`encode` (posterior means) over spatial tiles of `tile` pixels overlapping by `overlap`
    (0 = twice the encoder's receptive radius), one tile at a time (`tiling.tiled_apply`):
    for large frames. Exact for a VAE with norm="rms" and no middle attention."""
    radius = self.model.encoder_receptive_radius
    overlap = overlap or 2 * radius
    s = self.model.spatial_compression
    overlap = -(-overlap // s) * s  # whole latent pixels
    if tile < 2 * overlap:
      raise ConfigError(
        f"An encode tile of {tile} pixels is smaller than twice the tile overlap "
        f"{overlap}, which must cover twice the encoder's receptive overlap of "
        f"{radius} pixels: use tile >= {2 * overlap}."
      )
    encode = jitted_encode(self.model)
    fn = lambda x: self.normalize(encode(self.params, x))
    return tiled_apply(
      fn,
      to_network_input(jnp.asarray(videos)),
      tile=tile,
      overlap=overlap,
      scale=fractions.Fraction(1, s),
      margin=radius,
      progress=progress,
    )

  def to_latents(self, videos: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """Traceable: a training batch -> normalized latents: uint8 pixels are encoded, float
    batches are latents prepared with this VAE (`python -m jvdm.data.prepare --vae_workdir`)
    and are only normalized."""
    return self.encode(videos, key) if videos.dtype == jnp.uint8 else self.normalize(videos)

  def decode(self, latents: jnp.ndarray, progress: bool = False) -> np.ndarray:
    """Normalized `[B, t, h, w, c]` latents -> float32 `[B, T, H, W, C]` pixels in about [-1, 1],
    in chunks of frames and spatial tiles as configured (memory bounded by one chunk of one
    tile)."""
    latents = jnp.asarray(latents, jnp.float32)
    if latents.ndim != 5 or latents.shape[-1] != self.model.latent_channels:
      raise ConfigError(
        f"These latents have shape {latents.shape}, but the VAE decodes "
        f"[B, t, h, w, {self.model.latent_channels}] latents: was the diffusion "
        "model trained on another VAE's latents?"
      )
    decode = _jitted_decode(
      self.model.clone(decoder_row_slices=self.decode_row_slices), self.decode_chunk_frames
    )
    fn = lambda z: decode(self.params, z / self.scale + self.shift)
    if self.decode_tile and self.decode_tile < max(latents.shape[2:4]):
      radius = self.model.decoder_receptive_radius
      overlap = self.decode_tile_overlap or 2 * radius
      if self.decode_tile < 2 * overlap:
        raise ConfigError(
          f"A decode tile of {self.decode_tile} latent pixels is smaller than twice the tile "
          f"overlap {overlap}, which must cover twice the decoder's receptive overlap of "
          f"{radius} latent pixels: use decode_tile >= {4 * radius}, or 0 to decode whole "
          "frames."
        )
      return tiled_apply(
        fn,
        latents,
        tile=self.decode_tile,
        overlap=overlap,
        scale=self.model.spatial_compression,
        margin=radius,
        progress=progress,
      )
    return np.asarray(fn(latents))


@functools.cache
def jitted_encode(model: VideoAutoencoder):
  """The posterior mean, jitted once per VAE: `(params, pixels in [-1, 1]) -> mean`."""
  return jax.jit(lambda params, x: model.apply({"params": params}, x, method=model.encode)[0])


@functools.cache
def _jitted_decode(model: VideoAutoencoder, chunk_frames: int):
  """One jitted decoder per (VAE, chunking), reused across calls."""
  if chunk_frames:
    return jax.jit(lambda params, z: decode_in_chunks(model, params, z, chunk_frames))
  return jax.jit(lambda params, z: model.apply({"params": params}, z, method=model.decode))
