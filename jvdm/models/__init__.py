"""Video diffusion backbones (the 3D UNet, the video DiT) and the video autoencoder; built from a
config by `jvdm.builders.get_model`."""

from jvdm.models.dit import VideoDiT
from jvdm.models.unet3d import UNet3D
from jvdm.models.vae.autoencoder import VideoAutoencoder

__all__ = ["UNet3D", "VideoAutoencoder", "VideoDiT"]
