"""Generates diffusers reference trajectories for jvdm's sampler tests.

Runs diffusers schedulers on an analytic problem: data x ~ N(MEAN, STD**2) per
element, for which the exact posterior mean E[x | z] of a noisy sample
z = a x + s eps is known in closed form,

  x0_hat = MEAN + a STD**2 (z - a MEAN) / (a**2 STD**2 + s**2),

and serves as the "model": it returns the epsilon (z - a x0_hat) / s, or for
flow matching (a = 1 - sigma, s = sigma) the velocity eps_hat - x0_hat. One run
writes two files:

  tests/fixtures/diffusers_ddim_references.npz       DDIMScheduler (eta = 0)
  tests/fixtures/diffusers_scheduler_references.npz  DDPM, Euler, EulerAncestral,
      Heun, DPM-Solver++ (2M, 2M SDE), UniPC, LCM, FlowMatchEuler; and a
      guidance-rescale reference

Regenerate with:

  pip install torch==2.13.0 "diffusers==0.42.*" && python scripts/make_sampler_references.py

The test suite reads only the npz files; it never imports torch or diffusers,
and neither is a dependency of jvdm.

== diffusers_ddim_references.npz ==

diffusers builds its beta and alphas_cumprod tables in float32. They are
upcast to float64 (values unchanged) before sampling, so every step runs in
float64; the stored `alphas_cumprod` are exactly the tables the steps used.

npz layout, for each case NAME:
  NAME/alphas_cumprod        float64 [1000]
  NAME/final_alpha_cumprod   float64 scalar
  NAME/timesteps             int64 [S], scheduler.timesteps
  NAME/trajectory            float64 [S + 1, *SHAPE], x_T then x after each step
  NAME/config                str, json of the scheduler kwargs, steps and eta
and globally: x_init, mean, std, versions (json str).

A case whose trajectory is not finite is skipped with a message. The zero
terminal SNR case is skipped this way: at t = 999 alphas_cumprod is 0, and
diffusers' epsilon step computes x0 = (z - 1 * eps) / 0 = 0 / 0.

== diffusers_scheduler_references.npz ==

Global keys: x_init float64 [2, 3, 2, 2, 1] (np.random.default_rng(1)
standard normals), mean, std, versions (json str), and the guidance-rescale
reference below. For each case NAME (S = num_inference_steps, K = number of
solver steps = S):
  NAME/config          str, json {"scheduler": class name, "kwargs": {...},
                       "num_inference_steps": S}
  NAME/timesteps       float64 [S], scheduler.timesteps after set_timesteps
                       (Heun: [2S - 1], interleaved [t_0, t_1, t_1, ...,
                       t_S-1, t_S-1] as diffusers has it)
  NAME/sigmas          float64 [S + 1], scheduler.sigmas after set_timesteps,
                       final 0 included (Heun: [2S], interleaved [s_0, s_1,
                       s_1, ..., s_S-1, s_S-1, 0]); VE sigmas sqrt((1 - ab) /
                       ab) for Euler, EulerAncestral, Heun and for the VP
                       schedulers that have them (DPMSolverMultistep, UniPC),
                       the flow sigma for FlowMatchEuler; absent for DDPM and
                       LCM
  NAME/alphas_cumprod  float64 [1000] (absent for FlowMatchEuler)
  NAME/trajectory      float64 [K + 1, *SHAPE], in VP space (below): z_0 =
                       x_init, then the sample after each solver step
  NAME/noise           float64 [K, *SHAPE], only for the cases that draw
                       noise (ddpm_*, euler_ancestral_*, dpmpp_2m_sde_*,
                       lcm_*): the standard normal drawn during step k, zeros
                       where step k drew none
  NAME/model_inputs_t  float64 [number of model calls: S, Heun 2S - 1], the
                       `timestep` passed to the model at each call

Float64. After set_timesteps every floating table of the scheduler (betas,
alphas, alphas_cumprod, sigmas, alpha_t, sigma_t, lambda_t, one,
final_alpha_cumprod: whichever it has) is upcast from float32 to float64,
values unchanged; the stored tables are the ones the steps used. While
stepping, (i) torch's default dtype is float64 (LCM computes c_skip and c_out
from int timestep * python float), (ii) the name `torch` inside the
scheduler's module is a proxy whose `torch.float32` is torch.float64: Euler,
EulerAncestral, DPMSolverMultistep and FlowMatchEuler cast the sample
`.to(torch.float32)` inside `step`, which would otherwise run the update in
float32. The samples are float64 throughout (asserted).

VP space. jvdm's state is z = alpha x + sigma eps with alpha**2 + sigma**2 = 1,
or z = (1 - s) x + s eps for flow matching. DDPM, DPMSolverMultistep, UniPC,
LCM and FlowMatchEuler carry z itself. Euler, EulerAncestral and Heun carry
the VE sample x_ve = x + s eps = z sqrt(s**2 + 1) (their scale_model_input
divides by sqrt(s**2 + 1) and feeds the model z). Every case starts from z_0 =
x_init at its first noise level: x_ve_0 = x_init sqrt(s_0**2 + 1), s_0 =
sigmas[0]. Note that this is NOT x_init * init_noise_sigma for the default
"linspace" spacing or karras sigmas, where diffusers' init_noise_sigma is
s_0 itself (pure-noise latents times s_0); for "leading" spacing
init_noise_sigma = sqrt(max(sigmas)**2 + 1) = sqrt(s_0**2 + 1) does agree.
Recorded VE samples are converted back: z_k = x_ve_k / sqrt(s**2 + 1), s =
sigmas[step_index] after the step (0 after the last step, so z = x).

Driver, as diffusers pipelines do it: for i, t in enumerate(timesteps):
model_input = scheduler.scale_model_input(sample, t) (not for FlowMatchEuler,
which has none; SD3-style pipelines feed the sample directly); model output
from model_input at the noise level the scheduler assigns to call i:
sigmas[i] where the scheduler has sigmas, (sqrt(ab[t]), sqrt(1 - ab[t])) for
DDPM and LCM. (For Euler/Heun karras the timesteps are fractional, for
DPM-Solver++/UniPC karras they are rounded, so sigmas[i] is not exactly the
sigma of alphas_cumprod[t] there; the model uses sigmas[i].) Then sample =
scheduler.step(output, t, sample).prev_sample.

Trajectory points: one per solver step. Heun calls `step` twice per interval
(first-order predictor, then the trapezoidal corrector); a point is recorded
when the scheduler is back in first-order state, and after its last call:
the last interval (to sigma = 0) is a single Euler step (no corrector: it
would need the model at sigma = 0), so K = len(unique sigmas) - 1 = S.
UniPC's returned sample is the predictor output; the corrector for it runs at
the start of the next `step` (with the model evaluated at the uncorrected
sample), so intermediate points are uncorrected and the last one never is.

Noise. `randn_tensor`, imported into each scheduler module, is replaced by a
draw of float64 standard normals of the requested shape from
np.random.default_rng(2), fresh per case; at most one draw per step
(asserted). Which steps draw (diffusers 0.42.1 source):
  DDPM: every step with t > 0, none at t = 0 (the last step).
  EulerAncestral: every step, the last included, where sigma_up = 0
    multiplies it.
  DPM-Solver++ SDE (sde-dpmsolver++): every step, the last included, where
    sigma_t = 0 multiplies it.
  LCM: every step except the last (step_index == num_inference_steps - 1).
  Euler and FlowMatchEuler draw only with s_churn > 0 / stochastic_sampling,
  off here; Heun, UniPC and DPM-Solver++ (ODE) never do.

Guidance rescale: diffusers' rescale_noise_cfg (taken from
diffusers.guiders.guider_utils; the copy in pipeline_stable_diffusion is
identical but its module needs transformers), on float64 tensors:
  guidance_rescale/noise_cfg        float64 [2, 3, 2, 2, 1], rng seed 3, first
  guidance_rescale/noise_pred_text  float64 [2, 3, 2, 2, 1], same rng, second
  guidance_rescale/phi              float64 scalar, 0.7
  guidance_rescale/out              phi * noise_cfg * std_text / std_cfg
                                    + (1 - phi) * noise_cfg
where std is torch.std over every axis but the batch axis 0 (here axes
1..4, keepdim), per batch element, with Bessel's correction (divides by
N - 1 = 11; the correction cancels in the ratio std_text / std_cfg).

A case whose trajectory is not finite is skipped with a message. UniPC with
solver_type="bh1" is skipped this way: its last step (to sigma = 0, lambda =
inf) has B(h) = -h = -inf, and the predictor subtracts alpha_t * B(h) * 0,
which is NaN (bh2 has B(h) = expm1(-h) = -1 there).
"""

import argparse
import contextlib
import json
import pathlib
import sys
from unittest import mock

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "diffusers_ddim_references.npz"
DEFAULT_SCHEDULER_OUT = REPO_ROOT / "tests" / "fixtures" / "diffusers_scheduler_references.npz"
INSTALL_HINT = 'pip install torch==2.13.0 "diffusers==0.42.*"'

MEAN = 0.3
STD = 0.5
SHAPE = (2, 3, 4, 4, 1)
SEED = 0
ETA = 0.0

_COMMON = dict(num_train_timesteps=1000, prediction_type="epsilon", clip_sample=False)
_LINEAR = dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
_SCALED_LINEAR = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
_LEADING = dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False)

# name -> (scheduler kwargs, num_inference_steps)
CASES = {
  "ddim_linear_leading": (dict(_COMMON, **_LINEAR, **_LEADING), 10),
  "ddim_scaled_linear_leading": (dict(_COMMON, **_SCALED_LINEAR, **_LEADING), 10),
  "ddim_cosine_linspace": (
    dict(
      _COMMON, beta_schedule="squaredcos_cap_v2", timestep_spacing="linspace", set_alpha_to_one=True
    ),
    10,
  ),
  "ddim_scaled_linear_trailing_zsnr": (
    dict(
      _COMMON,
      **_SCALED_LINEAR,
      timestep_spacing="trailing",
      rescale_betas_zero_snr=True,
      set_alpha_to_one=True,
    ),
    10,
  ),
  "ddim_linear_leading_50": (dict(_COMMON, **_LINEAR, **_LEADING), 50),
}

SCHEDULER_SHAPE = (2, 3, 2, 2, 1)
SCHEDULER_SEED = 1
NOISE_SEED = 2
RESCALE_SEED = 3
GUIDANCE_RESCALE = 0.7

# How each scheduler class carries its state (see the module docstring):
#   vp_discrete: z, noise level from alphas_cumprod[t];  vp_sigma: z, noise level from VE sigmas[i];
#   ve: z * sqrt(sigmas[i]**2 + 1);  flow: z = (1 - sigmas[i]) x + sigmas[i] eps, velocity output.
KINDS = {
  "DDPMScheduler": "vp_discrete",
  "LCMScheduler": "vp_discrete",
  "DPMSolverMultistepScheduler": "vp_sigma",
  "UniPCMultistepScheduler": "vp_sigma",
  "EulerDiscreteScheduler": "ve",
  "EulerAncestralDiscreteScheduler": "ve",
  "HeunDiscreteScheduler": "ve",
  "FlowMatchEulerDiscreteScheduler": "flow",
}

_EPS = dict(num_train_timesteps=1000, prediction_type="epsilon")
_SL = dict(_EPS, **_SCALED_LINEAR)
_KARRAS = dict(use_karras_sigmas=True)
_HEUN = dict(_SL, clip_sample=False)
# The solver settings below are diffusers' defaults, spelled out so that each case's config records them.
_DPMPP_2M = dict(
  _SL,
  thresholding=False,
  solver_order=2,
  algorithm_type="dpmsolver++",
  solver_type="midpoint",
  lower_order_final=True,
  final_sigmas_type="zero",
)
_UNIPC = dict(
  _SL,
  thresholding=False,
  solver_order=2,
  solver_type="bh2",
  predict_x0=True,
  lower_order_final=True,
)
_DDPM = dict(
  _EPS,
  **_LINEAR,
  clip_sample=False,
  thresholding=False,
  timestep_spacing="leading",
  steps_offset=0,
  variance_type="fixed_small",
)
_LCM = dict(
  _SL, clip_sample=False, thresholding=False, original_inference_steps=50, timestep_scaling=10.0
)

# name -> (scheduler class name, kwargs, num_inference_steps)
SCHEDULER_CASES = {
  "ddpm_linear_leading": ("DDPMScheduler", _DDPM, 10),
  "euler_scaled_linear_linspace": ("EulerDiscreteScheduler", _SL, 10),
  "euler_scaled_linear_leading": (
    "EulerDiscreteScheduler",
    dict(_SL, timestep_spacing="leading", steps_offset=1),
    10,
  ),
  "euler_scaled_linear_karras": ("EulerDiscreteScheduler", dict(_SL, **_KARRAS), 10),
  "euler_ancestral_scaled_linear_linspace": ("EulerAncestralDiscreteScheduler", _SL, 10),
  "heun_scaled_linear_linspace": ("HeunDiscreteScheduler", _HEUN, 10),
  "heun_scaled_linear_karras": ("HeunDiscreteScheduler", dict(_HEUN, **_KARRAS), 10),
  "dpmpp_2m_scaled_linear": ("DPMSolverMultistepScheduler", _DPMPP_2M, 10),
  "dpmpp_2m_scaled_linear_20": ("DPMSolverMultistepScheduler", _DPMPP_2M, 20),
  "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", dict(_DPMPP_2M, **_KARRAS), 10),
  "dpmpp_2m_sde_scaled_linear": (
    "DPMSolverMultistepScheduler",
    dict(_DPMPP_2M, algorithm_type="sde-dpmsolver++"),
    10,
  ),
  "unipc_scaled_linear": ("UniPCMultistepScheduler", _UNIPC, 10),
  "unipc_scaled_linear_20": ("UniPCMultistepScheduler", _UNIPC, 20),
  "unipc_bh1_scaled_linear": ("UniPCMultistepScheduler", dict(_UNIPC, solver_type="bh1"), 10),
  "flow_euler_shift1": (
    "FlowMatchEulerDiscreteScheduler",
    dict(num_train_timesteps=1000, shift=1.0),
    10,
  ),
  "flow_euler_shift3": (
    "FlowMatchEulerDiscreteScheduler",
    dict(num_train_timesteps=1000, shift=3.0),
    10,
  ),
  "lcm_scaled_linear": ("LCMScheduler", _LCM, 4),
  # Wan 2.1's scheduler: UniPC on flow sigmas with its shift (3 at 480p), velocity prediction.
  "unipc_flow_shift3": (
    "UniPCMultistepScheduler",
    dict(
      num_train_timesteps=1000,
      prediction_type="flow_prediction",
      use_flow_sigmas=True,
      flow_shift=3.0,
      solver_order=2,
      solver_type="bh2",
      predict_x0=True,
      lower_order_final=True,
      thresholding=False,
      final_sigmas_type="zero",
    ),
    10,
  ),
}


def posterior_eps(z, alpha_bar):
  """Epsilon implied by the exact posterior mean E[x | z] under N(MEAN, STD**2) data.

  Args:
    z: noisy sample sqrt(ab) x + sqrt(1 - ab) eps, float64 tensor.
    alpha_bar: alphas_cumprod at the current timestep, float64 0-d tensor.

  Returns:
    The epsilon prediction (z - sqrt(ab) E[x | z]) / sqrt(1 - ab).
  """
  sqrt_ab = alpha_bar.sqrt()
  x0_hat = MEAN + sqrt_ab * STD**2 * (z - sqrt_ab * MEAN) / (alpha_bar * STD**2 + (1 - alpha_bar))
  return (z - sqrt_ab * x0_hat) / (1 - alpha_bar).sqrt()


def run_case(torch, scheduler_cls, kwargs, num_steps, x_init):
  """Runs one DDIM case and returns its npz entries, keyed without the case prefix."""
  scheduler = scheduler_cls(**kwargs)
  scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
  scheduler.final_alpha_cumprod = torch.as_tensor(
    scheduler.final_alpha_cumprod, dtype=torch.float64
  )
  scheduler.set_timesteps(num_steps)
  assert scheduler.init_noise_sigma == 1.0

  x = torch.from_numpy(x_init.copy())
  trajectory = [x.numpy().copy()]
  for t in scheduler.timesteps:
    eps = posterior_eps(x, scheduler.alphas_cumprod[t])
    x = scheduler.step(eps, t, x, eta=ETA).prev_sample
    assert x.dtype == torch.float64
    trajectory.append(x.numpy().copy())

  config = dict(kwargs, num_inference_steps=num_steps, eta=ETA)
  return {
    "alphas_cumprod": scheduler.alphas_cumprod.numpy().astype(np.float64),
    "final_alpha_cumprod": np.float64(scheduler.final_alpha_cumprod.item()),
    "timesteps": scheduler.timesteps.numpy().astype(np.int64),
    "trajectory": np.stack(trajectory).astype(np.float64),
    "config": np.array(json.dumps(config, sort_keys=True)),
  }


def ddim_arrays(torch, scheduler_cls, versions):
  """The DDIM npz: every finite case of CASES, plus the global keys."""
  x_init = np.random.default_rng(SEED).standard_normal(SHAPE)
  arrays = {
    "x_init": x_init,
    "mean": np.float64(MEAN),
    "std": np.float64(STD),
    "versions": versions,
  }
  for name, (kwargs, num_steps) in CASES.items():
    entries = run_case(torch, scheduler_cls, kwargs, num_steps, x_init)
    if not np.all(np.isfinite(entries["trajectory"])):
      first_bad = int(
        np.argmax(~np.isfinite(entries["trajectory"]).reshape(num_steps + 1, -1).all(axis=1))
      )
      print(
        f"skipping {name}: diffusers gives non-finite samples from step {first_bad} "
        f"(t = {entries['timesteps'][first_bad - 1]})",
        file=sys.stderr,
      )
      continue
    arrays.update({f"{name}/{key}": value for key, value in entries.items()})
    print(f"{name}: timesteps {entries['timesteps'].tolist()}")
  return arrays


def posterior_mean(z, alpha, sigma):
  """E[x | z] for z = alpha x + sigma eps, x ~ N(MEAN, STD**2) per element."""
  return MEAN + alpha * STD**2 * (z - alpha * MEAN) / (alpha**2 * STD**2 + sigma**2)


def model_output(kind, z, alpha, sigma):
  """What the scheduler's model predicts at z: epsilon, or for flow matching the velocity eps - x."""
  x0_hat = posterior_mean(z, alpha, sigma)
  eps_hat = (z - alpha * x0_hat) / sigma
  return eps_hat - x0_hat if kind == "flow" else eps_hat


def noise_level(scheduler, kind, call_index, t):
  """(alpha, sigma) of the VP or flow state z = alpha x + sigma eps that model call `call_index` sees."""
  if kind == "vp_discrete":
    alpha_bar = scheduler.alphas_cumprod[t]
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
  level = scheduler.sigmas[call_index]
  if kind == "flow":
    return 1 - level, level
  alpha = (level**2 + 1) ** -0.5
  return alpha, level * alpha


def ve_factor(scheduler, kind, sigma_index):
  """x_ve / z at sigmas[sigma_index]: sqrt(sigma**2 + 1) for the VE schedulers, else 1."""
  return (scheduler.sigmas[sigma_index] ** 2 + 1).sqrt() if kind == "ve" else 1.0


def upcast_tables(torch, scheduler):
  """Upcasts every floating tensor the scheduler holds, timesteps aside, to float64 (values unchanged)."""
  for name, value in vars(scheduler).items():
    if name != "timesteps" and isinstance(value, torch.Tensor) and value.is_floating_point():
      setattr(scheduler, name, value.to(torch.float64))


class _TorchFloat32IsFloat64:
  """Stands in for `torch` inside a scheduler module: torch.float32 is torch.float64, all else is torch."""

  def __init__(self, torch):
    self._torch = torch

  def __getattr__(self, name):
    return self._torch.float64 if name == "float32" else getattr(self._torch, name)


class NoiseRecorder:
  """Replaces diffusers' randn_tensor: float64 standard normals from a numpy Generator, recorded per step."""

  def __init__(self, torch, seed):
    self._torch = torch
    self._rng = np.random.default_rng(seed)
    self._draws = []

  def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
    del generator, device, dtype, layout
    noise = self._rng.standard_normal(tuple(shape))
    self._draws.append(noise)
    return self._torch.from_numpy(noise.copy())

  def take(self, shape):
    """The noise drawn since the last call (zeros if none); at most one draw is allowed."""
    assert len(self._draws) <= 1, f"{len(self._draws)} noise draws in one step"
    return self._draws.pop() if self._draws else np.zeros(shape)


@contextlib.contextmanager
def float64_stepping(torch, scheduler, recorder):
  """Float64 arithmetic and recorded noise inside the scheduler's `step` (see the module docstring)."""
  module = sys.modules[type(scheduler).__module__]
  default_dtype = torch.get_default_dtype()
  torch.set_default_dtype(torch.float64)
  try:
    # create=True: Heun and UniPC draw no noise and do not import randn_tensor.
    with (
      mock.patch.object(module, "randn_tensor", recorder, create=True),
      mock.patch.object(module, "torch", _TorchFloat32IsFloat64(torch)),
    ):
      yield
  finally:
    torch.set_default_dtype(default_dtype)


def sample_trajectory(torch, scheduler, kind, x_init):
  """The generic driver loop, as diffusers pipelines run it, from z_0 = x_init.

  Returns:
    trajectory [K + 1, *SHAPE] (VP space), noise [K, *SHAPE], the timestep of each model call, and
    (alpha, sigma) of the first model call.
  """
  timesteps = scheduler.timesteps
  has_scaling = hasattr(scheduler, "scale_model_input")  # FlowMatchEuler has none
  recorder = NoiseRecorder(torch, NOISE_SEED)
  sample = torch.from_numpy(x_init.copy()) * ve_factor(scheduler, kind, 0)
  trajectory, noise, model_inputs_t = [x_init.copy()], [], []
  with float64_stepping(torch, scheduler, recorder):
    for i, t in enumerate(timesteps):
      model_input = scheduler.scale_model_input(sample, t) if has_scaling else sample
      alpha, sigma = noise_level(scheduler, kind, i, t)
      if i == 0:
        start_level = (alpha.item(), sigma.item())
        np.testing.assert_allclose(model_input.numpy(), x_init, rtol=0, atol=1e-14)
      model_inputs_t.append(float(t))
      sample = scheduler.step(model_output(kind, model_input, alpha, sigma), t, sample).prev_sample
      assert sample.dtype == torch.float64
      # Heun: a step is complete when the scheduler is back in first-order state, or after its last call.
      if getattr(scheduler, "state_in_first_order", True) or i == len(timesteps) - 1:
        z = sample / ve_factor(scheduler, kind, getattr(scheduler, "step_index", None))
        trajectory.append(z.numpy().copy())
        noise.append(recorder.take(x_init.shape))
  return (
    np.stack(trajectory),
    np.stack(noise),
    np.array(model_inputs_t, dtype=np.float64),
    start_level,
  )


def run_scheduler_case(torch, scheduler_cls, kwargs, num_steps, x_init):
  """Runs one case of SCHEDULER_CASES.

  Returns:
    Its npz entries, keyed without the case prefix, and (alpha, sigma) of the first model call.
  """
  kind = "flow" if kwargs.get("use_flow_sigmas") else KINDS[scheduler_cls.__name__]
  scheduler = scheduler_cls(**kwargs)
  scheduler.set_timesteps(num_steps)
  upcast_tables(torch, scheduler)
  if kind == "ve":
    assert scheduler.init_noise_sigma != 1.0
  trajectory, noise, model_inputs_t, start_level = sample_trajectory(torch, scheduler, kind, x_init)

  config = {"scheduler": scheduler_cls.__name__, "kwargs": kwargs, "num_inference_steps": num_steps}
  entries = {
    "config": np.array(json.dumps(config, sort_keys=True)),
    "timesteps": scheduler.timesteps.numpy().astype(np.float64),
    "trajectory": trajectory,
    "model_inputs_t": model_inputs_t,
  }
  if hasattr(scheduler, "sigmas"):
    entries["sigmas"] = scheduler.sigmas.numpy().astype(np.float64)
  if hasattr(scheduler, "alphas_cumprod"):
    entries["alphas_cumprod"] = scheduler.alphas_cumprod.numpy().astype(np.float64)
  if noise.any():
    entries["noise"] = noise
  return entries, start_level


def exact_ode_endpoint(z0, alpha0, sigma0):
  """Where the probability-flow ODE takes z0 at noise level (alpha0, sigma0), for N(MEAN, STD**2) data."""
  return MEAN + STD * (z0 - alpha0 * MEAN) / np.sqrt(alpha0**2 * STD**2 + sigma0**2)


def _ends(values):
  """The first and last 3 values, as text."""
  if len(values) <= 6:
    return f"[{_join(values)}]"
  return f"[{_join(values[:3])} ... {_join(values[-3:])}]"


def _join(values):
  return ", ".join(f"{v:.6g}" for v in values)


def describe_case(name, entries, start_level, x_init):
  """One line per case: K, the ends of its grids, noise or the error to the exact ODE endpoint."""
  line = f"{name}: K = {len(entries['trajectory']) - 1}, timesteps {_ends(entries['timesteps'])}"
  if "sigmas" in entries:
    line += f", sigmas {_ends(entries['sigmas'])}"
  if "noise" in entries:
    drew = [k for k, n in enumerate(entries["noise"]) if n.any()]
    line += f", stochastic (noise drawn in steps {drew})"
  else:
    error = np.abs(entries["trajectory"][-1] - exact_ode_endpoint(x_init, *start_level)).max()
    line += f", max |x - exact ODE endpoint| = {error:.3e}"
  print(line)


def guidance_rescale_arrays(torch):
  """diffusers' rescale_noise_cfg on seeded float64 inputs."""
  from diffusers.guiders.guider_utils import (
    rescale_noise_cfg,
  )  # same code as pipeline_stable_diffusion's

  rng = np.random.default_rng(RESCALE_SEED)
  noise_cfg = rng.standard_normal(SCHEDULER_SHAPE)
  noise_pred_text = rng.standard_normal(SCHEDULER_SHAPE)
  out = rescale_noise_cfg(
    torch.from_numpy(noise_cfg),
    torch.from_numpy(noise_pred_text),
    guidance_rescale=GUIDANCE_RESCALE,
  )
  assert out.dtype == torch.float64
  return {
    "guidance_rescale/noise_cfg": noise_cfg,
    "guidance_rescale/noise_pred_text": noise_pred_text,
    "guidance_rescale/phi": np.float64(GUIDANCE_RESCALE),
    "guidance_rescale/out": out.numpy(),
  }


def scheduler_arrays(torch, diffusers, versions):
  """The scheduler npz: every finite case of SCHEDULER_CASES, the guidance-rescale reference, the globals."""
  x_init = np.random.default_rng(SCHEDULER_SEED).standard_normal(SCHEDULER_SHAPE)
  arrays = {
    "x_init": x_init,
    "mean": np.float64(MEAN),
    "std": np.float64(STD),
    "versions": versions,
  }
  for name, (class_name, kwargs, num_steps) in SCHEDULER_CASES.items():
    scheduler_cls = getattr(diffusers, class_name)
    entries, start_level = run_scheduler_case(torch, scheduler_cls, kwargs, num_steps, x_init)
    finite = np.isfinite(entries["trajectory"]).reshape(len(entries["trajectory"]), -1).all(axis=1)
    if not finite.all():
      first_bad = int(np.argmax(~finite))
      print(
        f"skipping {name}: diffusers gives non-finite samples from step {first_bad} of {len(finite) - 1}",
        file=sys.stderr,
      )
      continue
    arrays.update({f"{name}/{key}": value for key, value in entries.items()})
    describe_case(name, entries, start_level, x_init)
  arrays.update(guidance_rescale_arrays(torch))
  return arrays


def save(path, arrays):
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(path, **arrays)
  print(f"wrote {path} ({path.stat().st_size} bytes)")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--out", type=pathlib.Path, default=DEFAULT_OUT, help="DDIM npz to write (default: %(default)s)"
  )
  parser.add_argument(
    "--scheduler-out",
    type=pathlib.Path,
    default=DEFAULT_SCHEDULER_OUT,
    help="npz of the other schedulers to write (default: %(default)s)",
  )
  args = parser.parse_args()

  try:
    import diffusers
    import torch
    from diffusers import DDIMScheduler
  except ImportError as e:
    sys.exit(f"make_sampler_references.py needs torch and diffusers ({e}); run: {INSTALL_HINT}")

  versions = np.array(
    json.dumps(
      {"torch": torch.__version__, "diffusers": diffusers.__version__, "numpy": np.__version__},
      sort_keys=True,
    )
  )
  save(args.out, ddim_arrays(torch, DDIMScheduler, versions))
  save(args.scheduler_out, scheduler_arrays(torch, diffusers, versions))


if __name__ == "__main__":
  main()
