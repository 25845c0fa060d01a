"""Latent video diffusion: the 3D UNet on the latents of a trained video VAE
(configs/bouncing_shapes_vae.py); data, optimizer and sampler settings are those of
configs/bouncing_shapes_unet.py.

Run, after training the VAE:
  python train.py --config configs/bouncing_shapes_vae.py --workdir runs/bouncing_shapes_vae
  python train.py --config configs/bouncing_shapes_latent.py --workdir runs/bouncing_shapes_latent
  python sample.py --workdir runs/bouncing_shapes_latent   # decodes latents to pixels
Variants (`--config configs/bouncing_shapes_latent.py:VARIANT`):
  default  17 frames of 32x32 -> 5 x 8 x 8 x 4 latents; the UNet runs at 8x8 and 4x4.
  dit      the same latents for the video DiT of configs/bouncing_shapes_dit.py, with 1x2x2
           latent patches (80 tokens); the other DiT variants' sizes go through --config.model.
  tiny     a few-second smoke config used by the tests (with the tiny VAE).
The VAE's latent statistics (latent_statistics.json in its workdir) normalize the latents.
"""

import ml_collections

from configs import bouncing_shapes_dit, bouncing_shapes_unet, bouncing_shapes_vae

VARIANTS = ("default", "dit", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the config for `variant` (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
  if variant == "dit":
    config = bouncing_shapes_dit.get_config("default")
    with config.unlocked():
      config.model.patch_size = (1, 2, 2)  # latent frames x rows x columns per token
  else:
    config = bouncing_shapes_unet.get_config(variant)
  vae = bouncing_shapes_vae.get_config("tiny" if variant == "tiny" else "default")
  with config.unlocked():
    config.data.num_frames = vae.data.num_frames  # 1 + 4k: what the VAE encodes
    config.latent = ml_collections.ConfigDict(
      dict(
        vae_workdir="runs/bouncing_shapes_vae",  # a workdir of train.py with a VAE config
        channels=vae.model.latent_channels,  # must equal the VAE's (checked)
        sample_posterior=True,  # train on posterior samples (LDM) rather than the mean
        decode_chunk_frames=0,  # latent frames decoded at a time (0 = all)
        decode_tile=0,  # latent pixels per spatial tile when decoding (0 = whole frames)
        decode_tile_overlap=0,  # latent pixels; 0 = twice the decoder's receptive radius
        decode_row_slices=1,  # decoder convs in bands of rows (feature slicing; exact)
      )
    )
    config.diffusion.prediction = "v"
    if variant != "dit":
      config.model.patch_size = 1  # latents are already 4x smaller than the frames
      config.model.pixel_head_channels = 0  # no patch stem, so nothing to undo
    if variant == "default":  # the budget measured in docs/vaes.md
      config.train.num_steps = 1000
      config.train.sample_every = 500
      config.model.base_channels = 64
      config.model.head_dim = 32
    if variant == "tiny":
      config.model.base_channels = 16
      config.latent.vae_workdir = "runs/bouncing_shapes_vae_tiny"
  config.lock()
  return config
