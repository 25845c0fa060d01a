"""Processes (VP, EDM, flow), the cosine schedule, their inverses, predictions, the loss, loss
weightings and time sampling."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jvdm.builders import make_process
from jvdm.diffusion import (
  EDMProcess,
  FlowProcess,
  PREDICTIONS,
  VPProcess,
  broadcast_to_video,
  diffusion_loss,
  get_schedule,
  target_for_prediction,
  x0_from_prediction,
)
from jvdm.diffusion.discrete import discrete_schedule
from jvdm.diffusion.loss import sample_timesteps
from jvdm.diffusion.parameterization import SIGMA_DATA, x0_per_output
from jvdm.diffusion.weighting import draw_times, output_loss_weight
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


PROCESSES = {
  "vp_cosine": VPProcess(get_schedule("cosine")),
  "vp_shifted_cosine": VPProcess(get_schedule("cosine", logsnr_shift=-3.0)),
  "vp_interpolated_cosine": VPProcess(get_schedule("interpolated_cosine", shift_end=-3.0)),
  "vp_discrete_linear": VPProcess(discrete_schedule("linear")),
  "vp_discrete_cosine": VPProcess(discrete_schedule("squaredcos_cap_v2")),
  "edm": EDMProcess(),
  "flow": FlowProcess(),
  "flow_shift3": FlowProcess(shift=3.0),
}


def test_edm_and_flow_coefficients():
  t = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float32)
  alpha, sigma = EDMProcess(sigma_max=80.0, rho=7.0).alpha_sigma(t)
  np.testing.assert_allclose(alpha, 1.0)
  np.testing.assert_allclose(sigma, 80.0 * np.asarray(t) ** 7, rtol=1e-5)
  alpha, sigma = FlowProcess(shift=1.0).alpha_sigma(t)
  np.testing.assert_allclose(sigma, t, atol=1e-7)
  np.testing.assert_allclose(alpha + sigma, 1.0, atol=1e-7)
  # SD3's shift: s = 3t / (1 + 2t); at t = 1/2, s = 3/4.
  _, sigma = FlowProcess(shift=3.0).alpha_sigma(jnp.array([0.5]))
  np.testing.assert_allclose(sigma, [0.75], rtol=1e-6)


def test_edm_scales_the_model_input_by_c_in():
  z = jnp.ones((1, 2, 1, 1, 1))
  t = jnp.array([[0.5, 1.0]])
  scaled = EDMProcess().scale_model_input(z, t)
  sigma = 80.0 * np.array([0.5**7, 1.0])
  np.testing.assert_allclose(
    scaled[0, :, 0, 0, 0], 1.0 / np.sqrt(sigma**2 + SIGMA_DATA**2), rtol=1e-5
  )


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_time_at_noise_ratio_inverts_the_process(name):
  process = PROCESSES[name]
  with jax.enable_x64(True):
    t = np.linspace(0.02, 0.98, 25)
    alpha, sigma = process.alpha_sigma(jnp.asarray(t))
    recovered = process.time_at_noise_ratio(np.asarray(sigma / alpha))
  tolerance = 1e-5 if name == "vp_interpolated_cosine" else 1e-9  # bisection vs closed forms
  np.testing.assert_allclose(recovered, t, atol=tolerance)


def test_interpolated_cosine_runs_between_its_two_shifts():
  plain = get_schedule("cosine", logsnr_min=-30.0, logsnr_max=30.0)
  shifted = get_schedule("cosine", logsnr_min=-30.0, logsnr_max=30.0, logsnr_shift=-4.0)
  interpolated = get_schedule(
    "interpolated_cosine", logsnr_min=-30.0, logsnr_max=30.0, shift_start=0.0, shift_end=-4.0
  )
  t = jnp.linspace(0.05, 0.95, 19)
  np.testing.assert_allclose(interpolated(t), (1 - t) * plain(t) + t * shifted(t), rtol=1e-6)
  # SiD2: the shift grows from 0 at low noise to the full shift at high noise.
  difference = np.asarray(plain(t) - interpolated(t))
  np.testing.assert_allclose(difference, 4.0 * np.asarray(t), atol=2e-3)
  assert np.all(np.diff(np.asarray(interpolated(t))) < 0)


@pytest.mark.parametrize("name", ["vp_cosine", "edm", "flow_shift3"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_every_prediction_converts_back_to_x0_on_every_process(name, prediction):
  process = PROCESSES[name]
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.uniform(-1, 1, size=(2, 3, 2, 2, 1)))
    noise = jnp.asarray(rng.normal(size=x.shape))
    t = jnp.asarray([[0.1, 0.5, 0.9], [0.3, 0.3, 0.7]], jnp.float64)
    alpha, sigma = (broadcast_to_video(c, x) for c in process.alpha_sigma(t))
    z = alpha * x + sigma * noise
    target = target_for_prediction(prediction, x, noise, alpha, sigma)
    np.testing.assert_allclose(
      x0_from_prediction(prediction, target, z, alpha, sigma), x, rtol=1e-9, atol=1e-9
    )
    # x0_per_output is the derivative of the conversion with respect to the output.
    derivative = jax.jvp(
      lambda out: x0_from_prediction(prediction, out, z, alpha, sigma),
      (target,),
      (jnp.ones_like(target),),
    )[1]
    np.testing.assert_allclose(
      jnp.abs(derivative),
      jnp.broadcast_to(x0_per_output(prediction, alpha, sigma), x.shape),
      rtol=1e-9,
    )


def test_flow_velocity_and_edm_targets_have_the_published_forms():
  x, noise = jnp.array([0.5]), jnp.array([2.0])
  # Rectified flow: u = eps - x (Liu et al. 2023).
  np.testing.assert_allclose(target_for_prediction("flow", x, noise, 0.6, 0.4), [1.5])
  # EDM with sigma = 1: c_skip = 0.25 / 1.25, c_out = 0.5 / sqrt(1.25); F = (x - c_skip z) / c_out.
  z = x + noise
  expected = (x - 0.2 * z) / (0.5 / np.sqrt(1.25))
  np.testing.assert_allclose(target_for_prediction("edm", x, noise, 1.0, 1.0), expected, rtol=1e-6)


def test_loss_weightings_match_their_papers():
  alpha = jnp.sqrt(jnp.array([0.999, 0.9, 0.5, 0.1]))
  sigma = jnp.sqrt(1.0 - alpha**2)
  snr = alpha**2 / sigma**2
  # Min-SNR-5 as the diffusers training scripts write it for eps and v models.
  np.testing.assert_allclose(
    output_loss_weight("min_snr", "eps", alpha, sigma, 5.0), jnp.minimum(snr, 5.0) / snr, rtol=1e-5
  )
  np.testing.assert_allclose(
    output_loss_weight("min_snr", "v", alpha, sigma, 5.0),
    jnp.minimum(snr, 5.0) / (snr + 1.0),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    output_loss_weight("min_snr", "x0", alpha, sigma, 5.0), jnp.minimum(snr, 5.0), rtol=1e-5
  )
  # SNR weighting of the x0 error is the plain eps-MSE.
  np.testing.assert_allclose(output_loss_weight("snr", "eps", alpha, sigma), 1.0, rtol=1e-5)
  # EDM's lambda(sigma) makes the effective weight of F's error 1 (Karras et al. 2022, sec. 5).
  edm_sigma = jnp.array([0.01, 0.5, 5.0, 80.0])
  np.testing.assert_allclose(
    output_loss_weight("edm", "edm", jnp.ones(4), edm_sigma), 1.0, rtol=1e-5
  )
  with pytest.raises(ConfigError, match="min_snr"):
    output_loss_weight("p2", "eps", alpha, sigma)


def test_logit_normal_times():
  t = np.asarray(draw_times(jax.random.key(0), (20000,), "logit_normal", 0.5, 1.5))
  logit = np.log(t / (1 - t))
  assert abs(logit.mean() - 0.5) < 0.05 and abs(logit.std() - 1.5) < 0.05
  uniform = np.asarray(draw_times(jax.random.key(0), (20000,)))
  assert abs(uniform.mean() - 0.5) < 0.01 and 0 <= uniform.min() and uniform.max() < 1
  with pytest.raises(ConfigError, match="logit_normal"):
    draw_times(jax.random.key(0), (3,), "lognormal")


@pytest.mark.parametrize(
  "process_name,prediction", [("flow", "flow"), ("edm", "edm"), ("vp_discrete_linear", "eps")]
)
@pytest.mark.parametrize("weighting", ["uniform", "min_snr"])
def test_an_oracle_network_has_zero_loss_on_every_process(process_name, prediction, weighting):
  process = PROCESSES[process_name]
  x = jax.random.uniform(jax.random.key(0), (2, 3, 4, 4, 1), minval=-1, maxval=1)
  rng = jax.random.key(1)
  # The oracle knows the noise the loss will draw: it inverts the model input.
  # Each video's (time, noise, context) keys come from its own key of split(rng, B).
  keys = [jax.random.split(key, 3) for key in jax.random.split(rng, 2)]
  t_expected = jnp.concatenate([sample_timesteps(k[0], 1, 3, 1.0, "logit_normal") for k in keys])
  noise = jnp.stack([jax.random.normal(k[1], x.shape[1:]) for k in keys])

  def oracle(model_input, t):
    np.testing.assert_allclose(t, t_expected)
    alpha, sigma = (broadcast_to_video(c, x) for c in process.alpha_sigma(t))
    return target_for_prediction(prediction, x, noise, alpha, sigma)

  loss = diffusion_loss(
    oracle,
    process,
    prediction,
    x,
    rng,
    per_frame_noise=1.0,
    weighting=weighting,
    time_sampling="logit_normal",
  )
  assert float(loss) < 1e-8
  wrong = diffusion_loss(
    lambda z, t: jnp.zeros_like(z),
    process,
    prediction,
    x,
    rng,
    per_frame_noise=1.0,
    weighting=weighting,
    time_sampling="logit_normal",
  )
  assert float(wrong) > 1e-3


def test_make_process_from_config_and_unknown_names():
  config = ml_collections.ConfigDict(
    dict(process="flow", flow=dict(shift=3.0), edm=dict(sigma_min=0.002, sigma_max=80.0, rho=7.0))
  )
  assert make_process(config) == FlowProcess(3.0)
  config.process = "edm"
  assert make_process(config) == EDMProcess()
  config.process = "ve"
  with pytest.raises(ConfigError, match="'vp', 'edm', 'flow'"):
    make_process(config)
  with pytest.raises(ConfigError, match="sigma_min"):
    EDMProcess(sigma_min=1.0, sigma_max=0.5)
  with pytest.raises(ConfigError, match="shift"):
    FlowProcess(shift=0.0)


def test_context_frames_stay_clean_and_unscored():
  """Frame-as-prompt: an oracle that is right only on the scored frames has zero loss, and the
  network sees the context frames at t = 0."""
  process = PROCESSES["vp_discrete_linear"]
  x = jax.random.uniform(jax.random.key(0), (8, 6, 2, 2, 1), minval=-1, maxval=1)
  rng = jax.random.key(1)
  seen = {}

  def network(model_input, t):
    seen["t"] = t
    return jnp.zeros_like(model_input)  # "x0 = 0": wrong on every frame

  loss = diffusion_loss(network, process, "x0", x, rng, per_frame_noise=1.0, context_frames=3)
  t = np.asarray(seen["t"])
  context = t == 0.0
  counts = context.sum(axis=1)
  assert set(counts.tolist()) <= {0, 1, 2, 3} and len(set(counts.tolist())) > 1
  for row, count in zip(context, counts):  # the clean frames lead the clip
    assert row[:count].all() and not row[count:].any()
  scored = ~context
  expected = np.sum(np.square(np.asarray(x)) * scored[:, :, None, None, None]) / (scored.sum() * 4)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  with pytest.raises(ConfigError, match="context_frames=6"):
    diffusion_loss(network, process, "x0", x, rng, context_frames=6)
