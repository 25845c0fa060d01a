"""Video diffusion backbones; `get_model(config)` builds the one named by `config.model.name`."""

from typing import Callable

import flax.linen as nn
import ml_collections

from jvdm.errors import ConfigError
from jvdm.models import dit, unet3d
from jvdm.models.dit import VideoDiT
from jvdm.models.unet3d import UNet3D
from jvdm.models.vae import autoencoder
from jvdm.models.vae.autoencoder import VideoAutoencoder

_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], nn.Module]] = {
  "unet3d": unet3d.from_config,
  "dit": dit.from_config,
  "vae": autoencoder.from_config,
}


def get_model(config: ml_collections.ConfigDict) -> nn.Module:
  """Returns the flax Module named by `config.model.name`, built from `config.model`/`data`.

  The module is called as `model.apply({"params": p}, x, t, train=False, rngs=...)` with
  `x` `[B, T, H, W, C]` and `t` `[B]` or `[B, T]` in [0, 1], and returns float32
  `[B, T, H, W, C]`. The video autoencoder ("vae", `jvdm.models.vae`) is called as
  `model.apply({"params": p}, x)` and has `encode` and `decode` methods.
  """
  name = config.model.name
  if name not in _BUILDERS:
    raise ConfigError(f"unknown model.name {name!r}; valid names: {sorted(_BUILDERS)}")
  return _BUILDERS[name](config)


__all__ = ["UNet3D", "VideoAutoencoder", "VideoDiT", "get_model"]
