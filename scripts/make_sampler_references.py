"""Generates diffusers DDIM reference trajectories for jvdm's sampler tests.

Runs diffusers' `DDIMScheduler` (eta = 0, epsilon prediction) on an analytic
problem: data x ~ N(MEAN, STD**2) per element, for which the exact posterior
mean E[x | z] is known in closed form and serves as the "model". Every sample
along each trajectory is written to `tests/fixtures/diffusers_ddim_references.npz`.

Regenerate with:

  pip install torch==2.13.0 "diffusers==0.42.*" && python scripts/make_sampler_references.py

The test suite reads only the npz; it never imports torch or diffusers, and
neither is a dependency of jvdm.

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
"""

import argparse
import json
import pathlib
import sys

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "diffusers_ddim_references.npz"
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
    "ddim_cosine_linspace": (dict(_COMMON, beta_schedule="squaredcos_cap_v2",
                                  timestep_spacing="linspace", set_alpha_to_one=True), 10),
    "ddim_scaled_linear_trailing_zsnr": (dict(_COMMON, **_SCALED_LINEAR, timestep_spacing="trailing",
                                              rescale_betas_zero_snr=True, set_alpha_to_one=True), 10),
    "ddim_linear_leading_50": (dict(_COMMON, **_LINEAR, **_LEADING), 50),
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
  scheduler.final_alpha_cumprod = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64)
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                      help="npz to write (default: %(default)s)")
  args = parser.parse_args()

  try:
    import diffusers
    import torch
    from diffusers import DDIMScheduler
  except ImportError as e:
    sys.exit(f"make_sampler_references.py needs torch and diffusers ({e}); run: {INSTALL_HINT}")

  x_init = np.random.default_rng(SEED).standard_normal(SHAPE)
  arrays = {
      "x_init": x_init,
      "mean": np.float64(MEAN),
      "std": np.float64(STD),
      "versions": np.array(json.dumps({"torch": torch.__version__, "diffusers": diffusers.__version__,
                                       "numpy": np.__version__}, sort_keys=True)),
  }
  for name, (kwargs, num_steps) in CASES.items():
    entries = run_case(torch, DDIMScheduler, kwargs, num_steps, x_init)
    if not np.all(np.isfinite(entries["trajectory"])):
      first_bad = int(np.argmax(~np.isfinite(entries["trajectory"]).reshape(num_steps + 1, -1).all(axis=1)))
      print(f"skipping {name}: diffusers gives non-finite samples from step {first_bad} "
            f"(t = {entries['timesteps'][first_bad - 1]})", file=sys.stderr)
      continue
    arrays.update({f"{name}/{key}": value for key, value in entries.items()})
    print(f"{name}: timesteps {entries['timesteps'].tolist()}")

  args.out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(args.out, **arrays)
  print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
  main()
