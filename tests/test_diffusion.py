"""The VP process, the cosine schedule, predictions and the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvdm.diffusion import (
  PREDICTIONS,
  VPProcess,
  broadcast_to_video,
  diffusion_loss,
  get_schedule,
  target_for_prediction,
  x0_from_prediction,
)
from jvdm.diffusion.loss import sample_timesteps
from jvdm.errors import ConfigError, ShapeError


def _process():
  return VPProcess(get_schedule("cosine", logsnr_min=-15.0, logsnr_max=15.0))


def test_cosine_schedule_is_cos_pi_t_over_2_and_clipped_at_the_ends():
  process = _process()
  t = jnp.linspace(0.0, 1.0, 101)
  alpha, sigma = process.alpha_sigma(t)
  np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
  # Away from the clipped ends it is Nichol & Dhariwal's alpha(t) = cos(pi t / 2).
  np.testing.assert_allclose(alpha, jnp.cos(jnp.pi * t / 2), atol=1e-3)
  logsnr = get_schedule("cosine", logsnr_min=-15.0, logsnr_max=15.0)(t)
  assert np.all(np.diff(np.asarray(logsnr)) < 0)
  np.testing.assert_allclose([logsnr[0], logsnr[-1]], [15.0, -15.0], atol=1e-3)


def test_shifted_cosine_adds_the_shift_and_keeps_the_range():
  t = jnp.linspace(0.05, 0.95, 19)
  plain = get_schedule("cosine", logsnr_min=-30.0, logsnr_max=30.0)
  shifted = get_schedule("cosine", logsnr_min=-30.0, logsnr_max=30.0, logsnr_shift=-4.0)
  # Far from the clipped ends the shift is exactly additive (simple diffusion, sec. 3.1).
  np.testing.assert_allclose(shifted(t), plain(t) - 4.0, atol=1e-3)
  clipped = get_schedule("cosine", logsnr_min=-15.0, logsnr_max=15.0, logsnr_shift=-4.0)
  np.testing.assert_allclose(clipped(jnp.array([0.0, 1.0])), [15.0, -15.0], atol=1e-3)


def test_unknown_schedule_and_prediction_list_the_valid_ones():
  with pytest.raises(ConfigError, match="cosine"):
    get_schedule("linear_typo")
  with pytest.raises(ConfigError, match="eps"):
    target_for_prediction("score", *([jnp.zeros(1)] * 4))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_prediction_target_converts_back_to_x0(prediction):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 3, 4, 4, 1)), jnp.float32)
  noise = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  t = jnp.asarray([[0.1, 0.5, 0.9], [0.3, 0.3, 0.7]])
  alpha, sigma = (broadcast_to_video(c, x) for c in _process().alpha_sigma(t))
  z = alpha * x + sigma * noise
  target = target_for_prediction(prediction, x, noise, alpha, sigma)
  np.testing.assert_allclose(x0_from_prediction(prediction, target, z, alpha, sigma), x, atol=1e-4)


def test_prediction_targets_have_the_published_values():
  # At alpha = sigma = 1/sqrt(2): v = (eps - x) / sqrt(2) (Salimans & Ho 2022, eq. 9).
  x, noise = jnp.asarray([0.5]), jnp.asarray([-1.0])
  half = jnp.asarray([2**-0.5])
  np.testing.assert_allclose(
    target_for_prediction("v", x, noise, half, half), [-1.5 * 2**-0.5], rtol=1e-6
  )
  np.testing.assert_allclose(target_for_prediction("eps", x, noise, half, half), noise)
  np.testing.assert_allclose(target_for_prediction("x0", x, noise, half, half), x)


def test_broadcast_rejects_timesteps_of_the_wrong_shape():
  video = jnp.zeros((2, 3, 4, 4, 1))
  assert broadcast_to_video(jnp.zeros(2), video).shape == (2, 1, 1, 1, 1)
  assert broadcast_to_video(jnp.zeros((2, 3)), video).shape == (2, 3, 1, 1, 1)
  with pytest.raises(ShapeError, match=r"\[B, T\]"):
    broadcast_to_video(jnp.zeros((2, 4)), video)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_loss_is_zero_for_an_oracle_network(prediction):
  process = _process()
  x = jax.random.uniform(jax.random.key(0), (2, 3, 4, 4, 1), minval=-1, maxval=1)

  def oracle(z, t):  # knows the clean x, so can output the exact target
    alpha, sigma = (broadcast_to_video(c, z) for c in process.alpha_sigma(t))
    noise = (z - alpha * x) / sigma
    return target_for_prediction(prediction, x, noise, alpha, sigma)

  loss = jax.jit(diffusion_loss, static_argnums=(0, 1, 2))(
    oracle, process, prediction, x, jax.random.key(1)
  )
  assert float(loss) < 1e-6
  wrong = diffusion_loss(lambda z, t: jnp.zeros_like(z), process, prediction, x, jax.random.key(1))
  assert float(wrong) > 1e-2


def test_per_frame_noise_gives_the_network_one_time_per_frame():
  seen = {}

  def network(z, t):
    seen["t"] = t
    return z

  x = jnp.zeros((2, 5, 4, 4, 1))
  diffusion_loss(network, _process(), "v", x, jax.random.key(0), per_frame_noise=1.0)
  assert seen["t"].shape == (2, 5)
  assert len(np.unique(np.asarray(seen["t"]))) == 10  # independent levels
  diffusion_loss(network, _process(), "v", x, jax.random.key(0), per_frame_noise=0.0)
  assert seen["t"].shape == (2,)


def test_per_frame_noise_probability_mixes_synchronized_and_independent_videos():
  t = np.asarray(sample_timesteps(jax.random.key(0), 2000, 4, per_frame_noise=0.3))
  independent = np.ptp(t, axis=1) > 0  # a synchronized video has one level in every frame
  assert t.shape == (2000, 4)
  assert abs(independent.mean() - 0.3) < 0.04  # binomial std ~0.01
  assert 0.45 < t.mean() < 0.55  # still uniform levels
  with pytest.raises(ConfigError, match="probability"):
    sample_timesteps(jax.random.key(0), 2, 4, per_frame_noise=1.5)


def test_staggered_noise_gives_the_pyramid_pattern_of_staggered_sampling():
  keys = jax.random.key(1)
  t = np.asarray(sample_timesteps(keys, 4000, 8, per_frame_noise=1.0, staggered_noise=0.25))
  # A staggered video never has an earlier frame noisier than a later one; independent per-frame
  # levels almost always do.
  lagging = np.all(np.diff(t, axis=1) >= 0, axis=1)
  assert abs(lagging.mean() - 0.25) < 0.03  # 0.25 staggered + 1/8! ordered by chance
  staggered = t[lagging]
  assert staggered.min() == 0.0 and staggered.max() == 1.0  # clean past, pure-noise future
  # Frame-by-frame situations: a clean first frame beside a pure-noise last frame, which needs
  # 1 - s <= u <= s: probability E_s[max(0, 2s - 1)] = 1/4 for s, u ~ U(0, 1).
  assert abs(np.mean((staggered[:, 0] == 0.0) & (staggered[:, -1] == 1.0)) - 0.25) < 0.04
  # Off (the default), the random stream of per-frame training is unchanged.
  np.testing.assert_array_equal(
    sample_timesteps(keys, 8, 8, per_frame_noise=1.0),
    sample_timesteps(keys, 8, 8, per_frame_noise=1.0, staggered_noise=0.0),
  )
  with pytest.raises(ConfigError, match="staggered_noise"):
    sample_timesteps(keys, 2, 4, staggered_noise=-0.1)
