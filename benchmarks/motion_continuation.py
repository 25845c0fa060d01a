"""Does a trained model continue real motion? Real videos with their first k frames given
(clean, t = 0), the other frames sampled as the config samples, scored against the ground truth.

  python -m benchmarks.motion_continuation --workdir runs/bouncing_shapes_unet --context 1,4,8

The default run's samples rarely follow the motion law (README). This separates the two ways
that can happen: a model that cannot extrapolate a known velocity fails here for every k; a
model that extrapolates well but picks a bad velocity from frame 0 alone fails at k = 1 only.
The given frames are held as extension's "clean" mode holds them (`pipelines/long/extension`):
at t = 0 for the whole run, which a model trained with per-frame noise levels conditions on;
the new frames follow extension's `frame_time_grid` (uniform spacing, staggered as configured).

Per k it reports, over --num_videos held-out generator videos: the validity of the whole video
(given + sampled frames), its motion-law criterion and median motion error
(`VideoReport.motion_error_px`), and the IoU of each sampled frame's bright pixels with the
real frame's (1 = the true continuation), per frame and on average.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from jvdm.builders import make_video_sampler
from jvdm.data.synthetic import BouncingShapes
from jvdm.data.transforms import to_model_range, to_uint8
from jvdm.metrics.shape_segmentation import bright_pixels
from jvdm.metrics.synthetic_video import synthetic_video_validity
from jvdm.samplers.driver import normal_per_sample, run_solver
from jvdm.pipelines.long.extension import frame_time_grid
from jvdm.pipelines.video_sampler import video_keys
from jvdm.samplers.solvers import SOLVERS
from jvdm.workdir import load_trained_run


def bright_iou(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
  """IoU of the bright pixels (max channel >= 128) of uint8 [N, T, H, W, 3] pairs: [N, T]
  (1 where both frames are empty)."""
  a, b = bright_pixels(generated), bright_pixels(real)
  union = (a | b).sum((-2, -1))
  return np.where(union > 0, (a & b).sum((-2, -1)) / np.maximum(union, 1), 1.0)


def continue_videos(sampler, params, real: jnp.ndarray, context: int, seed: int) -> jnp.ndarray:
  """`real` [B, T, H, W, C] in [-1, 1] with frames >= `context` resampled by `sampler`'s solver
  on its grid (staggered over the new frames when it staggers), the first frames held at t = 0."""
  batch, num_frames = real.shape[:2]
  grid = frame_time_grid(
    sampler.process,
    sampler.sampler,
    sampler.num_steps,
    num_frames - context,
    sampler.frame_stagger,
    sampler.time_power,
  )
  grid = jnp.concatenate([jnp.zeros((sampler.num_steps + 1, context)), grid], axis=1)
  grid = jnp.broadcast_to(grid[:, None], (sampler.num_steps + 1, batch, num_frames))
  known = (jnp.arange(num_frames) < context)[None, :, None, None, None]
  denoise = sampler.denoiser(params, conditional=False)
  held = lambda z, t, cond: denoise(jnp.where(known, real, z), t, cond)
  solver = SOLVERS[sampler.sampler][0](held, sampler.process, sampler.eta, sampler.clip_x0)
  keys = video_keys(seed, batch)
  noise = normal_per_sample(jax.vmap(jax.random.fold_in, (0, None))(keys, 1), real.shape[1:])
  out = run_solver(solver, jnp.where(known, real, noise), grid, keys)
  return jnp.where(known, real, out)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a trained workdir of train.py")
  parser.add_argument("--context", default="1,4,8", help="given frames k, comma-separated")
  parser.add_argument("--num_videos", type=int, default=32)
  parser.add_argument("--steps", type=int, default=None, help="default the config's")
  parser.add_argument("--seed", type=int, default=5, help="generator seed of the real videos")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  run = load_trained_run(args.workdir)
  config, model, params, step = run.config, run.model, run.params, run.step
  if config.data.name != "bouncing_shapes":
    raise SystemExit(
      f"{args.workdir} was trained on {config.data.name!r}; this benchmark needs "
      "the synthetic bouncing shapes, whose ground truth it scores against."
    )
  num_frames = config.data.num_frames
  contexts = [int(k) for k in args.context.split(",")]
  if not all(1 <= k < num_frames for k in contexts):
    raise SystemExit(f"--context values must be in [1, {num_frames - 1}], got {contexts}.")
  sampler = make_video_sampler(config, model.apply, steps=args.steps)
  shapes = {k: v for k, v in config.data.bouncing_shapes.to_dict().items() if k != "seed"}
  source = BouncingShapes(
    **{
      **shapes,
      "seed": args.seed,
      "num_frames": num_frames,
      "height": config.data.height,
      "width": config.data.width,
    }
  )
  real = np.stack([source[i]["video"] for i in range(args.num_videos)])
  run = jax.jit(continue_videos, static_argnums=(0, 3, 4))
  for k in contexts:
    videos = to_uint8(run(sampler, params, jnp.asarray(to_model_range(real)), k, args.seed))
    validity = synthetic_video_validity(
      videos,
      max_shapes=shapes["max_shapes"],
      min_speed=shapes["min_speed"],
      max_speed=shapes["max_speed"],
    )
    iou = bright_iou(videos[:, k:], real[:, k:]).mean(0)
    common.report(
      {
        "benchmark": "motion_continuation",
        "workdir": args.workdir,
        "checkpoint_step": int(step),
        "context_frames": k,
        "num_videos": args.num_videos,
        "sampling": {
          "sampler": sampler.sampler,
          "steps": sampler.num_steps,
          "frame_stagger": sampler.frame_stagger,
          "time_power": sampler.time_power,
        },
        "valid_fraction": validity["valid_fraction"],
        "motion_ok_fraction": validity["motion_ok_fraction"],
        "motion_error_median_px": validity["motion_error_median_px"],
        "bright_iou_mean": float(iou.mean()),
        "bright_iou_per_frame": [round(float(v), 3) for v in iou],
      },
      args.out,
    )


if __name__ == "__main__":
  main()
