"""Long videos from a model trained on short clips: every method against two baselines.

  python train.py                                  # the default UNet, 16-frame clips
  python -m benchmarks.long_video --workdir runs/bouncing_shapes_unet

Each method runs as its paper runs it: FreeNoise, FreeLong and Gen-L-Video with one shared time
per step (frame_stagger 0, whatever the config's sampler staggers), FIFO on its own per-frame
queue grid; the baselines (one_pass, chunks) and autoregressive extension with the configured
sampler (--frame_stagger, default the config's). The staggered runs of the shared-time methods
are named variant rows, '<method>_staggered' (--staggered_variants adds them to --methods).

Part 1 (quality): each method generates --num_videos videos of --frames frames (default 128,
8x the training length); the synthetic-video measures of `jvdm.metrics.long_video` per video:
valid and moving 16-frame windows, continuity across window boundaries, colours and sizes
kept from the first window, overlap of the colour mix with the first window's.
Part 2 (cost): one video at each of --lengths: the median time of --repeats compiled calls
and XLA's buffer estimate of the compiled function (arguments + outputs + temporaries, from
`memory_analysis()`: the peak the executable plans for).

Prints a table and appends one JSON line to benchmarks/results/long_video.json.
"""

import argparse
import dataclasses
import os
import platform
import time

import flax.linen as nn
import jax
import numpy as np

from benchmarks import common
from jvdm.builders import make_video_sampler
from jvdm.data.transforms import to_uint8
from jvdm.metrics.long_video import long_video_metrics
from jvdm.pipelines.long.long_video import METHODS, LongVideoSampler
from jvdm.pipelines.video_sampler import video_keys
from jvdm.workdir import load_trained_run

# Designed for one shared time per step; per-frame times (frame_stagger) only as a variant row.
SHARED_TIME_METHODS = ("freenoise", "freelong", "gen_l_video")
STAGGERED = "_staggered"
VARIANTS = tuple(method + STAGGERED for method in SHARED_TIME_METHODS)


def method_and_stagger(name: str, configured_stagger: float) -> tuple[str, float]:
  """The `LongVideoSampler` method of a benchmark row and the frame_stagger it runs with."""
  method = name[: -len(STAGGERED)] if name in VARIANTS else name
  if method not in METHODS:
    raise SystemExit(f"Unknown method {name!r}; expected one of {METHODS + VARIANTS}.")
  if method in SHARED_TIME_METHODS:
    return method, configured_stagger if name in VARIANTS else 0.0
  return method, configured_stagger  # baselines and autoregressive; fifo has its own grid


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/bouncing_shapes_unet")
  parser.add_argument(
    "--methods", default=",".join(METHODS), help=f"rows, of {', '.join(METHODS + VARIANTS)}"
  )
  parser.add_argument(
    "--staggered_variants",
    action="store_true",
    help="add the rows " + ", ".join(VARIANTS) + " (the configured "
    "frame_stagger on methods designed for one shared time per step)",
  )
  parser.add_argument("--num_videos", type=int, default=4)
  parser.add_argument("--frames", type=int, default=128)
  parser.add_argument(
    "--lengths", default="64,128,256", help="frames, for the cost part ('' skips it)"
  )
  parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median counts")
  parser.add_argument("--save_videos", default=None, help="a folder for <method>.npz")
  parser.add_argument("--cost_methods", default=None, help="default: --methods")
  parser.add_argument("--steps", type=int, default=25, help="DDIM steps (fifo: its own)")
  parser.add_argument("--stride", type=int, default=None, help="default window / 2")
  parser.add_argument("--num_partitions", type=int, default=2, help="fifo")
  parser.add_argument(
    "--frame_stagger",
    type=float,
    default=None,
    help="the baselines', autoregressive's and the _staggered rows' frame "
    "stagger; default the config's",
  )
  parser.add_argument(
    "--time_power",
    type=float,
    default=None,
    help="every method's time grid t = level^power (FIFO's queue levels too); default the config's",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="default benchmarks/results/long_video.json")
  args = parser.parse_args()

  run = load_trained_run(args.workdir)
  config, model, params, step, mesh = run.config, run.model, run.params, run.step, run.mesh
  window = config.data.num_frames
  frame_shape = (config.data.height, config.data.width, config.data.channels)
  shapes = config.data.bouncing_shapes
  methods = args.methods.split(",")
  if args.staggered_variants:
    methods += [v for v in VARIANTS if v.removesuffix(STAGGERED) in methods and v not in methods]
  cost_methods = args.cost_methods.split(",") if args.cost_methods else methods
  result = {
    "benchmark": "long_video",
    "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
    "cpu_count": os.cpu_count(),
    "machine": platform.machine(),
    "workdir": args.workdir,
    "window": window,
    "frames": args.frames,
    "steps": args.steps,
    "num_videos": args.num_videos,
    "num_partitions": args.num_partitions,
    "quality": {},
    "cost": {},
  }
  with jax.set_mesh(mesh), nn.logical_axis_rules(config.mesh.logical_axis_rules):
    result["checkpoint_step"] = int(step)
    base = make_video_sampler(
      config,
      model.apply,
      steps=args.steps,
      frame_stagger=args.frame_stagger,
      time_power=args.time_power,
    )
    result["frame_stagger"] = base.frame_stagger  # the configured one
    result["time_power"] = base.time_power
    samplers, staggers = {}, {}
    for name in dict.fromkeys(methods + cost_methods):
      method, staggers[name] = method_and_stagger(name, base.frame_stagger)
      samplers[name] = LongVideoSampler(
        dataclasses.replace(base, frame_stagger=staggers[name]),
        model,
        method,
        window,
        stride=args.stride,
        num_partitions=args.num_partitions,
      )

    for method in methods:
      start = time.perf_counter()
      videos = samplers[method].sample(
        params,
        args.seed,
        args.num_videos,
        (args.frames,) + frame_shape,
        batch_size=args.num_videos,
        progress=False,
      )
      seconds = time.perf_counter() - start
      metrics = long_video_metrics(
        to_uint8(videos),
        window,
        max_shapes=shapes.max_shapes,
        min_speed=shapes.min_speed,
        max_speed=shapes.max_speed,
      )
      result["quality"][method] = {
        **metrics,
        "frame_stagger": staggers[method],
        "seconds_with_compile": round(seconds, 1),
      }
      print(
        f"{method:22s} windows valid {metrics['window_valid_fraction']:.2f} moving "
        f"{metrics['window_motion_fraction']:.2f}  boundary continuity "
        f"{metrics['boundary_continuity']:.2f}  colours kept {metrics['colours_kept']:.2f}  "
        f"identity kept {metrics['identity_kept']:.2f}  colour overlap "
        f"{metrics['colour_overlap']:.2f}  bright mass kept "
        f"{metrics['bright_mass_kept']:.2f}  ({seconds:.0f} s)",
        flush=True,
      )
      if args.save_videos:
        os.makedirs(args.save_videos, exist_ok=True)
        np.savez_compressed(
          os.path.join(args.save_videos, f"{method}.npz"), videos=to_uint8(videos)
        )

    lengths = [int(n) for n in args.lengths.split(",") if n]
    for method in cost_methods if lengths else []:
      result["cost"][method] = {}
      for length in lengths:
        shape = (length,) + frame_shape
        jitted = samplers[method].jitted_sample_batch
        compiled = jitted.lower(params, video_keys(args.seed, 1), None, shape).compile()
        memory = compiled.memory_analysis()
        planned = (
          None
          if memory is None
          else (
            memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
          )
        )
        times = []
        for _ in range(args.repeats):
          start = time.perf_counter()
          jax.block_until_ready(compiled(params, video_keys(args.seed, 1), None))
          times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        result["cost"][method][length] = {
          "seconds": round(seconds, 2),
          "planned_bytes": planned,
          "temp_bytes": None if memory is None else memory.temp_size_in_bytes,
        }
        print(
          f"{method:22s} {length:4d} frames: {seconds:7.2f} s, XLA buffers "
          f"{(planned or 0) / 2**20:8.1f} MiB (temporaries "
          f"{(memory.temp_size_in_bytes if memory else 0) / 2**20:.1f})",
          flush=True,
        )

  common.report(result, args.out)


if __name__ == "__main__":
  main()
