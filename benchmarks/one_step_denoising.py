"""How well a trained denoiser recovers real videos from one noise level: validity and MSE of
its x0 estimates of generator videos noised to each t (no sampler involved).

  python -m benchmarks.one_step_denoising --workdir runs/bouncing_shapes_unet

A model whose estimates of nearly clean videos (small t) are not valid cannot end a sampler on
valid videos, whatever the sampler. This is how the blur behind the UNet's 4x4 patch stem was
found: the old default's estimates had the same error at sigma 0.04 as at sigma 0.33.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from jvdm.data.synthetic import BouncingShapes
from jvdm.data.transforms import to_model_range, to_uint8
from jvdm.builders import make_process
from jvdm.metrics import synthetic_video_validity
from jvdm.samplers.denoiser import make_denoiser
from jvdm.workdir import load_trained_run


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a trained workdir of train.py")
  parser.add_argument("--times", default="0.005,0.02,0.05,0.1,0.2", help="noise levels t")
  parser.add_argument("--num_videos", type=int, default=16)
  parser.add_argument("--seed", type=int, default=5, help="generator seed of the real videos")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  run = load_trained_run(args.workdir)
  config, model, params, step = run.config, run.model, run.params, run.step
  process = make_process(config.diffusion)
  denoise = jax.jit(make_denoiser(model.apply, params, process, config.diffusion.prediction))
  shapes = {k: v for k, v in config.data.bouncing_shapes.to_dict().items() if k != "seed"}
  source = BouncingShapes(
    **{
      **shapes,
      "seed": args.seed,
      "num_frames": config.data.num_frames,
      "height": config.data.height,
      "width": config.data.width,
    }
  )
  real = np.stack([source[i]["video"] for i in range(args.num_videos)])
  clean = to_model_range(real)
  for t in (float(value) for value in args.times.split(",")):
    alpha, sigma = process.alpha_sigma(jnp.float32(t))
    noisy = alpha * clean + sigma * jax.random.normal(jax.random.key(0), clean.shape)
    estimate = jnp.clip(denoise(noisy, jnp.full((len(real),), t), None), -1, 1)
    validity = synthetic_video_validity(to_uint8(estimate))
    common.report(
      {
        "benchmark": "one_step_denoising",
        "workdir": args.workdir,
        "checkpoint_step": int(step),
        "t": t,
        "sigma": float(sigma),
        "mse": float(jnp.mean(jnp.square(estimate - clean))),
        "valid_fraction": validity["valid_fraction"],
        "size_ok_fraction": validity["size_ok_fraction"],
        "shape_ok_fraction": validity["shape_ok_fraction"],
      },
      args.out,
    )


if __name__ == "__main__":
  main()
