"""Tests for benchmarks/motion_continuation.py: given frames are held, the rest is sampled."""

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.motion_continuation import bright_iou, continue_videos
from jvdm.diffusion import VPProcess, get_schedule
from jvdm.pipelines import VideoSampler


def test_bright_iou():
  frame = np.zeros((1, 2, 4, 4, 3), np.uint8)
  left, right = frame.copy(), frame.copy()
  left[..., :2, :] = 255  # columns 0-1 bright
  right[..., 1:3, :] = 255  # columns 1-2 bright
  np.testing.assert_allclose(bright_iou(left, left), 1.0)
  np.testing.assert_allclose(bright_iou(left, right), 1 / 3)  # 4 shared of 12 bright pixels
  np.testing.assert_allclose(bright_iou(frame, frame), 1.0)  # both empty
  np.testing.assert_allclose(bright_iou(left, frame), 0.0)


@pytest.mark.parametrize("stagger", [0.0, 0.5])
def test_given_frames_are_held_and_the_rest_is_sampled(stagger):
  # A network that predicts x0 = 0.5 everywhere: the sampled frames end at 0.5.
  network = lambda variables, z, t: jnp.full_like(z, 0.5)
  sampler = VideoSampler(
    network,
    VPProcess(get_schedule("cosine")),
    "x0",
    sampler="ddim",
    num_steps=4,
    frame_stagger=stagger,
    clip_x0=False,
  )
  real = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 5, 3, 3, 3)), jnp.float32)
  out = continue_videos(sampler, {}, real, 2, seed=0)
  np.testing.assert_array_equal(out[:, :2], real[:, :2])
  # VP cosine ends at t = 0 with sigma ~ 1e-3 of noise left, as any VP sample does.
  np.testing.assert_allclose(out[:, 2:], 0.5, atol=5e-3)
