"""Wan 2.1 image-to-video from a diffusers-format folder, sampled as diffusers'
`WanImageToVideoPipeline` samples it, on `WanPipeline`'s prompts, scheduler, sampler and VAE.

  pipeline = jvdm.pretrained.load("Wan2.1-I2V-14B-480P-Diffusers")
  videos = pipeline("a red fox runs", image, num_frames=81)  # [1, 81, 480, 832, 3]

What the image adds to text-to-video (Wan Team 2025, "Wan: Open and Advanced Large-Scale Video
Generative Models"), as diffusers does it:
- CLIP features: the image through the folder's `CLIPImageProcessor` and `CLIPVisionModel`,
  the penultimate layer's hidden states (`hidden_states[-2]`), cross-attended by every DiT
  block beside the text (`jvdm.pretrained.clip_vision`);
- the conditioning video: the image resized to the video's size (Lanczos) as frame 0, zeros
  after it, through the VAE (the posterior mean), normalized with Wan's latent statistics;
- a mask of 4 channels per latent frame (frame 0 given: latent frame 0 all ones, the others
  zeros: diffusers repeats frame 0's mask 4 times, one per frame a latent frame holds);
- the DiT's input: `[latents, mask, condition latents]` along channels (2 z + 4 channels).
Classifier-free guidance changes only the text: the negative branch sees the same image
features, mask and condition latents. Deviations, named: those of `WanPipeline`; one image per
video or one for all (diffusers: one for all); no long-video methods; Wan's first-last-frame
model (`last_image`) and Wan 2.2's `expand_timesteps` and two experts (`boundary_ratio`,
`transformer_2`) are refused.
"""

import dataclasses
import functools
import pathlib
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jvdm.errors import CheckpointError, ConfigError, ShapeError
from jvdm.models.vae.chunked import encode_in_chunks
from jvdm.parallel.axes import DEFAULT_RULES
from jvdm.pretrained.clip_vision import ImageEncoder
from jvdm.pretrained.diffusers_folder import load_image_encoder, pipeline_options, read_model_index
from jvdm.pretrained.images import image_to_video_frame
from jvdm.pretrained.wan_pipeline import TEMPORAL_FACTOR, WanPipeline
from jvdm.pretrained.wan_pipeline import load as load_text_to_video
from jvdm.pretrained.wan_prompts import WAN_MAX_LENGTH

PIPELINE_CLASS = "WanImageToVideoPipeline"
MASK_CHANNELS = TEMPORAL_FACTOR  # one mask channel per frame a latent frame holds


class ImageCondition(NamedTuple):
  """What the I2V DiT takes besides the noisy latents, one row per video."""

  text: jnp.ndarray  # [N, L, text_dim] UMT5 embeddings
  image: jnp.ndarray  # [N, 1 + patches, image_dim] CLIP features
  channels: jnp.ndarray  # [N, F, h, w, 4 + z]: the mask, then the condition latents


def first_frame_mask(shape: tuple[int, int, int]) -> np.ndarray:
  """float32 `[F, h, w, 4]`: diffusers' mask for a given first frame (`prepare_latents`:
  frame 0 is 1, repeated 4 times, the rest 0, regrouped 4 frames per latent frame)."""
  mask = np.zeros(shape + (MASK_CHANNELS,), np.float32)
  mask[0] = 1.0
  return mask


def _with_negative_text(negative: np.ndarray):
  """The null condition of guidance: the negative prompt's embeddings with the same image,
  mask and condition latents (diffusers' unconditional branch)."""
  return lambda cond: cond._replace(
    text=jnp.broadcast_to(jnp.asarray(negative, cond.text.dtype), cond.text.shape)
  )


@dataclasses.dataclass(frozen=True)
class WanImageToVideoPipeline:
  """Wan 2.1 image-to-video (module docstring). Build it with `jvdm.pretrained.load(folder)`."""

  base: WanPipeline  # prompts, DiT (2 z + 4 input channels), scheduler, VAE, mesh
  images: ImageEncoder

  @functools.cached_property
  def network_apply(self):
    """The DiT's apply on `cond`, an `ImageCondition`: the channels are concatenated to the
    latents and the CLIP features cross-attended (diffusers' `encoder_hidden_states_image`)."""
    network = self.base.network

    def apply(variables, x, t, cond: ImageCondition):
      x = jnp.concatenate([x, cond.channels.astype(x.dtype)], axis=-1)
      return network.apply(variables, x, t, cond=cond.text, image=cond.image)

    return apply

  @functools.cached_property
  def _encode_video(self):
    """One conditioning video `[1, T, H, W, 3]` -> its VAE posterior mean, 4 frames at a time
    after frame 0 through the causal caches (diffusers' `_encode`), jitted."""
    vae = self.base.vae
    return jax.jit(lambda params, video: encode_in_chunks(vae.model, params, video, 4)[0])

  def condition_channels(self, image, num_frames: int, height: int, width: int) -> np.ndarray:
    """float32 `[F, h, w, 4 + z]`: the mask and the normalized latents of `[image, zeros...]`
    (`WanImageToVideoPipeline.prepare_latents`)."""
    video = np.zeros((1, num_frames, height, width, 3), np.float32)
    video[0, 0] = image_to_video_frame(image, height, width)
    with self.base._placement():  # pylint: disable=protected-access
      mean = self._encode_video(self.base.vae.params, jnp.asarray(video))[0]
    latents = np.asarray(self.base.vae.normalize(mean), np.float32)
    return np.concatenate([first_frame_mask(latents.shape[:3]), latents], axis=-1)

  def latents(
    self,
    prompt: str | Sequence[str],
    image: Any = None,
    negative_prompt: str = "",
    *,
    num_frames: int = 81,
    height: int = 480,
    width: int = 832,
    num_steps: int = 50,
    guidance_scale: float = 5.0,
    seed: int = 0,
    latents: np.ndarray | None = None,
    batch_size: int = 1,
    progress: bool = True,
    last_image: Any = None,
  ) -> np.ndarray:
    """Denoised latents `[N, F, h, w, z]`, normalized as the DiT sees them.

    Args:
      prompt: one prompt, or one per video.
      image: the first frame: a PIL image or a uint8 `[H, W, 3]` array for all videos, or a
        list of them, one per prompt; resized to `height x width` for the VAE.
      negative_prompt, num_frames, height, width, num_steps, guidance_scale, seed, latents,
        batch_size, progress: as `WanPipeline.latents`.
      last_image: Wan's first-last-frame model; not built (an error).
    """
    if last_image is not None:
      raise ConfigError(
        "last_image: Wan's first-last-frame-to-video (FLF2V) is not built; this pipeline "
        "takes a first frame only."
      )
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if image is None:
      raise ConfigError("Wan image-to-video needs an image (the first frame); got image=None.")
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    if len(images) not in (1, len(prompts)):
      raise ShapeError(
        f"Give one image for all prompts or one per prompt; got {len(images)} images for "
        f"{len(prompts)} prompts."
      )
    shape = self.base.latent_shape(num_frames, height, width)
    text = np.asarray(self.base.prompts(prompts))
    features = self.images(images)  # [1 or N, L, D]
    channels = np.stack([self.condition_channels(i, num_frames, height, width) for i in images])
    per_video = lambda a: np.broadcast_to(a, (len(prompts),) + a.shape[1:])
    condition = ImageCondition(text, per_video(features), per_video(channels))
    sampler = self.base.video_sampler(
      num_steps, guidance_scale, negative_prompt, self.network_apply, _with_negative_text
    )
    return self.base.sample(sampler, condition, shape, seed, latents, batch_size, progress)

  def decode(self, latents: np.ndarray, progress: bool = True) -> np.ndarray:
    """Videos `[N, T, H, W, 3]` in [-1, 1] (`WanPipeline.decode`)."""
    return self.base.decode(latents, progress=progress)

  def __call__(self, prompt: str | Sequence[str], image: Any = None, negative_prompt="", **kw):
    """Videos `[N, T, H, W, 3]` in [-1, 1]: `latents(...)` (same arguments), decoded."""
    progress = kw.get("progress", True)
    return self.decode(self.latents(prompt, image, negative_prompt, **kw), progress=progress)


def check_image_to_video_folder(folder: str | pathlib.Path) -> None:
  """ConfigError for what jvdm does not build of a `WanImageToVideoPipeline` folder (Wan 2.2's
  two experts and expanded timesteps); CheckpointError for a missing image encoder."""
  options = pipeline_options(folder)
  components = read_model_index(folder)
  if options.get("boundary_ratio") is not None or "transformer_2" in components:
    raise ConfigError(
      f"{folder}: boundary_ratio={options.get('boundary_ratio')} with a transformer_2 is Wan "
      "2.2's two-expert sampling; jvdm builds Wan 2.1's single transformer."
    )
  if options.get("expand_timesteps"):
    raise ConfigError(
      f"{folder}: expand_timesteps=true (Wan 2.2 TI2V: the first frame held at t = 0 per "
      "token) is not built; jvdm builds Wan 2.1's mask and condition channels."
    )
  for name in ("image_encoder", "image_processor"):
    if name not in components:
      raise CheckpointError(
        f"{folder}: model_index.json lists no {name!r}; Wan 2.1 image-to-video takes CLIP "
        "features of the image (image_encoder/ and image_processor/)."
      )


def load(
  folder: str | pathlib.Path,
  *,
  dtype: Any = None,
  compute_dtype: Any = jnp.float32,
  mesh: Mesh | None = None,
  rules=DEFAULT_RULES,
  max_length: int = WAN_MAX_LENGTH,
  transformer_weights: str | pathlib.Path | None = None,
  **dit_settings,
) -> WanImageToVideoPipeline:
  """A diffusers-format Wan 2.1 image-to-video folder as a `WanImageToVideoPipeline`: the
  components of `wan_pipeline.load` (arguments as there; the VAE always) plus
  `image_encoder/` and `image_processor/`."""
  check_image_to_video_folder(folder)
  base = load_text_to_video(
    folder,
    dtype=dtype,
    compute_dtype=compute_dtype,
    mesh=mesh,
    rules=rules,
    max_length=max_length,
    transformer_weights=transformer_weights,
    pipeline_class=PIPELINE_CLASS,
    **dit_settings,
  )
  z_dim = len(base.vae.latents_mean)
  if not base.dit.image_dim or base.dit.in_channels != 2 * z_dim + MASK_CHANNELS:
    raise ConfigError(
      f"{folder}: the transformer takes {base.dit.in_channels} channels and image_dim="
      f"{base.dit.image_dim}; Wan 2.1 image-to-video takes 2 x {z_dim} + {MASK_CHANNELS} "
      "channels (latents, mask, condition latents) and CLIP features."
    )
  images = load_image_encoder(folder)
  if images.model.width != base.dit.image_dim:
    raise ConfigError(
      f"{folder}: the image encoder gives {images.model.width} features; the transformer "
      f"takes image_dim={base.dit.image_dim}."
    )
  return WanImageToVideoPipeline(base, images)
