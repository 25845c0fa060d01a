"""Classifier-free guidance (Ho & Salimans 2022) over denoisers, one batched forward pass.

A guided denoiser is again a denoiser `(z, t, cond) -> x0`, so every solver and long-video
method uses it unchanged. Guidance combines the x0 estimates; as x0 is affine in eps and v at
a fixed z, this equals guiding eps or v with the same scale.
"""

from typing import Any

import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError, ShapeError
from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like


def _batched(denoise: Denoiser, z, t, conds):
  """Calls `denoise` once on len(conds) copies of (z, t), each with its cond; returns the list."""
  count = len(conds)
  stacked = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *conds)
  out = denoise(jnp.concatenate([z] * count), jnp.concatenate([t] * count), stacked)
  return jnp.split(out, count)


def _scale_like(scale, x):
  """A scalar, `[B]` or `[B, T]` guidance scale broadcast over the video x."""
  scale = jnp.asarray(scale, x.dtype)
  if scale.ndim == 0:
    return scale
  if scale.shape not in (x.shape[:1], x.shape[:2]):
    raise ShapeError(
      f"A guidance scale must be a scalar, [B]={x.shape[:1]} or [B, T]="
      f"{x.shape[:2]}; got {scale.shape}."
    )
  return scale.reshape(scale.shape + (1,) * (x.ndim - scale.ndim))


def rescale_guidance(guided, conditional, phi: float, axes=None):
  """Guidance rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
  Flawed", sec. 3.4, eq. 15-16): match the guided prediction's standard deviation to the
  conditional one's, blended by phi. Standard deviations over all but the batch axis, as
  diffusers' `rescale_noise_cfg`."""
  axes = tuple(range(1, guided.ndim)) if axes is None else axes
  std_guided = jnp.std(guided, axis=axes, keepdims=True, ddof=1)
  std_conditional = jnp.std(conditional, axis=axes, keepdims=True, ddof=1)
  rescaled = guided * (std_conditional / std_guided)
  return phi * rescaled + (1.0 - phi) * guided


def classifier_free_guidance(
  denoise: Denoiser, unconditional: Any, scale, rescale: float = 0.0, process=None
) -> Denoiser:
  """x0 = x0(z, t, uncond) + scale * (x0(z, t, cond) - x0(z, t, uncond)), both in one call.

  Args:
    denoise: a conditional denoiser; `cond` and `unconditional` are pytrees batched like z
      (e.g. text embeddings and the empty prompt's, or class labels and the null label).
    unconditional: the unconditional input, batched like the cond passed at call time.
    scale: a scalar, `[B]`, or `[B, T]` per-frame scale (`frame_guidance_ramp`).
    rescale: phi of `rescale_guidance`, applied to the implied eps (as diffusers does for an
      eps-predicting model); needs `process`.
  """
  if rescale and process is None:
    raise ConfigError("Guidance rescale works on eps and needs the process.")

  def guided(z, t, cond):
    conditional, plain = _batched(denoise, z, t, [cond, unconditional])
    x0 = plain + _scale_like(scale, z) * (conditional - plain)
    if rescale:
      alpha, sigma = alpha_sigma_like(process, t, z)
      to_eps = lambda x0_hat: (z - alpha * x0_hat) / sigma
      eps = rescale_guidance(to_eps(x0), to_eps(conditional), rescale)
      x0 = (z - sigma * eps) / alpha
    return x0

  return guided


def dual_guidance(
  denoise: Denoiser, image_only: Any, unconditional: Any, image_scale, text_scale
) -> Denoiser:
  """Guidance with separate image and text scales (InstructPix2Pix, Brooks et al. 2023, eq. 3;
  used by SVD-style image-to-video and DreamVideo):
    x0 = x0(none) + s_image (x0(image) - x0(none)) + s_text (x0(image, text) - x0(image)),
  three conditions in one batched call. `cond` at call time is the full (image, text) input;
  `image_only` drops the text, `unconditional` drops both."""

  def guided(z, t, cond):
    full, image, plain = _batched(denoise, z, t, [cond, image_only, unconditional])
    return (
      plain
      + _scale_like(image_scale, z) * (image - plain)
      + _scale_like(text_scale, z) * (full - image)
    )

  return guided


def frame_guidance_ramp(
  min_scale: float, max_scale: float, num_frames: int, batch: int
) -> jnp.ndarray:
  """`[B, T]` scales rising linearly from the first frame to the last (SVD's
  min_guidance_scale / max_guidance_scale, Blattmann et al. 2023)."""
  return jnp.broadcast_to(jnp.linspace(min_scale, max_scale, num_frames), (batch, num_frames))
