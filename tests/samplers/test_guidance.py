"""Classifier-free, dual-condition and per-frame guidance; guidance rescale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import VPProcess, get_schedule
from jvdm.errors import ShapeError
from jvdm.samplers import (
  classifier_free_guidance,
  dual_guidance,
  frame_guidance_ramp,
  rescale_guidance,
)
from jvdm.samplers.denoiser import alpha_sigma_like

PROCESS = VPProcess(get_schedule("cosine"))


def _conditional_denoiser(calls):
  """x0 = cond_scale * z + cond_shift per video, counting its calls (each trace = one call)."""

  def denoise(z, t, cond):
    calls.append(z.shape[0])
    per_video = lambda a: a.reshape(-1, 1, 1, 1, 1)
    return per_video(cond["scale"]) * z + per_video(cond["shift"]) + 0 * per_video(t)

  return denoise


def _inputs():
  z = jax.random.normal(jax.random.key(0), (2, 3, 2, 2, 1))
  t = jnp.array([0.4, 0.7])
  cond = {"scale": jnp.array([0.5, 0.8]), "shift": jnp.array([0.3, -0.2])}
  uncond = {"scale": jnp.array([0.1, 0.1]), "shift": jnp.array([0.0, 0.0])}
  return z, t, cond, uncond


def test_cfg_is_one_batched_call_with_the_published_combination():
  calls = []
  denoise = _conditional_denoiser(calls)
  z, t, cond, uncond = _inputs()
  guided = classifier_free_guidance(denoise, uncond, 4.0)(z, t, cond)
  assert calls == [4]  # conditional and unconditional in one forward pass of twice the batch
  conditional, plain = denoise(z, t, cond), denoise(z, t, uncond)
  np.testing.assert_allclose(guided, plain + 4.0 * (conditional - plain), rtol=1e-6)
  np.testing.assert_allclose(
    classifier_free_guidance(denoise, uncond, 1.0)(z, t, cond), conditional, rtol=1e-6
  )


def test_per_frame_guidance_ramp():
  ramp = frame_guidance_ramp(1.0, 3.0, 3, 2)
  np.testing.assert_allclose(ramp, [[1.0, 2.0, 3.0]] * 2)  # SVD: linspace(min, max, frames)
  denoise = _conditional_denoiser([])
  z, t, cond, uncond = _inputs()
  guided = classifier_free_guidance(denoise, uncond, ramp)(z, t, cond)
  for frame, scale in enumerate([1.0, 2.0, 3.0]):
    np.testing.assert_allclose(
      guided[:, frame],
      classifier_free_guidance(denoise, uncond, scale)(z, t, cond)[:, frame],
      rtol=1e-6,
    )
  with pytest.raises(ShapeError, match=r"\[B, T\]"):
    classifier_free_guidance(denoise, uncond, jnp.ones((2, 4)))(z, t, cond)


def test_dual_guidance_combines_image_and_text_scales():
  calls = []
  denoise = _conditional_denoiser(calls)
  z, t, full, none = _inputs()
  image_only = {"scale": jnp.array([0.3, 0.4]), "shift": jnp.array([0.1, 0.1])}
  guided = dual_guidance(denoise, image_only, none, image_scale=1.5, text_scale=7.0)(z, t, full)
  assert calls == [6]
  x_full, x_image, x_none = (denoise(z, t, c) for c in (full, image_only, none))
  np.testing.assert_allclose(
    guided, x_none + 1.5 * (x_image - x_none) + 7.0 * (x_full - x_image), rtol=1e-5
  )
  # Equal scales reduce to plain CFG between the full and the empty condition.
  same = dual_guidance(denoise, image_only, none, 3.0, 3.0)(z, t, full)
  np.testing.assert_allclose(
    same, classifier_free_guidance(denoise, none, 3.0)(z, t, full), rtol=1e-5
  )


def test_guidance_rescale_matches_the_conditional_std():
  rng = np.random.default_rng(0)
  guided, conditional = (jnp.asarray(rng.normal(scale=s, size=(2, 3, 2, 2, 1))) for s in (3.0, 1.0))
  full = rescale_guidance(guided, conditional, 1.0)
  np.testing.assert_allclose(
    jnp.std(full, axis=(1, 2, 3, 4)), jnp.std(conditional, axis=(1, 2, 3, 4)), rtol=1e-5
  )
  np.testing.assert_allclose(rescale_guidance(guided, conditional, 0.0), guided)
  # Inside CFG it acts on eps: the guided eps gets the conditional eps's std.
  denoise = _conditional_denoiser([])
  z, t, cond, uncond = _inputs()
  x0 = classifier_free_guidance(denoise, uncond, 5.0, rescale=1.0, process=PROCESS)(z, t, cond)
  alpha, sigma = alpha_sigma_like(PROCESS, t, z)
  eps = (z - alpha * x0) / sigma
  eps_cond = (z - alpha * denoise(z, t, cond)) / sigma
  np.testing.assert_allclose(
    jnp.std(eps, axis=(1, 2, 3, 4)), jnp.std(eps_cond, axis=(1, 2, 3, 4)), rtol=1e-4
  )
