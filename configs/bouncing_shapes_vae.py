"""Causal 3D video VAE on the embedded bouncing-shapes videos (the latent space of
configs/bouncing_shapes_latent.py); data, optimizer and mesh settings are those of
configs/bouncing_shapes_unet.py.

Run:
  python train.py --config configs/bouncing_shapes_vae.py --workdir runs/bouncing_shapes_vae
Variants (`--config configs/bouncing_shapes_vae.py:VARIANT`):
  default          causal 3D VAE (CV-VAE / Wan style): 17 frames of 32x32 -> 5 x 8 x 8 x 4
                   latents (4x temporal, 4x spatial compression).
  temporal_decoder an image VAE with a temporal decoder (Video LDM / SVD): 17 x 8 x 8 x 4.
  tiny             a few-second smoke config used by the tests.
Every evaluation (train.sample_every, and the end) reconstructs held-out clips, logs their
PSNR/SSIM to metrics.jsonl, writes originals | reconstructions to samples/, and stores the
latent statistics (latent_statistics.json) that latent diffusion normalizes with.
"""

import ml_collections

from configs import bouncing_shapes_unet

VARIANTS = ("default", "temporal_decoder", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the config for `variant` (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
  config = bouncing_shapes_unet.get_config("tiny" if variant == "tiny" else "default")
  with config.unlocked():
    del config["diffusion"]
    config.data.num_frames = 17  # 1 + 4k: frame 0 is encoded alone (an image)
    config.model = ml_collections.ConfigDict(
      dict(
        name="vae",
        architecture="causal_3d",  # causal_3d | temporal_decoder (jvdm.models.vae.autoencoder)
        latent_channels=4,
        base_channels=16,
        channel_mults=(1, 2, 4),
        spatial_downsample=(True, True),  # per level transition: 4x spatial compression
        temporal_downsample=(True, True),  # 4x temporal compression (causal_3d only)
        num_res_blocks=1,
        norm="rms",  # rms (per position, Wan 2.1: exact spatial tiles) | group (LDM, SVD)
        num_groups=8,
        middle_attention=True,  # per-frame spatial attention in the middle
        head_dim=32,
        dtype="float32",
        param_dtype="float32",
      )
    )
    config.vae_loss = ml_collections.ConfigDict(
      dict(
        # l2 | l1, mean over pixels. L1 collapsed to an all-black decoder on these mostly black
        # frames (held-out PSNR 12.3 dB at steps 200 and 400: the median pixel is black).
        reconstruction="l2",
        kl_weight=1e-6,  # on KL summed over latents / pixels per video (LDM's weight)
      )
    )
    # Only what writing reconstructions needs of the sampling section.
    config.sample = ml_collections.ConfigDict(
      dict(fps=config.sample.fps, video_scale=config.sample.video_scale)
    )
    config.optim.learning_rate = 1e-3
    config.optim.ema_decay = 0.99
    if variant != "tiny":
      config.data.batch_size = 4
      config.optim.warmup_steps = 50
      config.train.num_steps = 600
      config.train.sample_every = 200
      config.train.num_sample_videos = 8  # held-out clips reconstructed at each evaluation
    if variant == "temporal_decoder":
      config.model.architecture = "temporal_decoder"
      config.model.temporal_downsample = (False, False)
    if variant == "tiny":
      config.data.num_frames = 5
      config.model.base_channels = 8
      config.model.channel_mults = (1, 2, 2)
      config.model.num_groups = 4
      config.model.head_dim = 16
      config.train.num_sample_videos = 2
  config.lock()
  return config
