"""The shape of what a config's network sees: pixels, or the latents of a trained VAE.

Latent diffusion (`config.latent.vae_workdir` set) trains the UNet or DiT on the latents of the
video autoencoder trained in that workdir (LDM, Rombach et al. 2022; Video LDM, Blattmann et
al. 2023); `config.data` still describes the pixel videos.
"""

import ml_collections


def is_latent(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` diffuses in a VAE's latent space."""
  return "latent" in config and bool(config.latent.vae_workdir)


def model_channels(config: ml_collections.ConfigDict) -> int:
  """Channels of the network's input and output: the latent's, or the pixels'."""
  return int(config.latent.channels) if is_latent(config) else int(config.data.channels)


def pixel_video_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  data = config.data
  return (int(data.num_frames), int(data.height), int(data.width), int(data.channels))
