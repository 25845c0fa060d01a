"""What the scan sampler costs on top of the model, and how its compile time grows with steps.

  python -m benchmarks.sampler_overhead                     # the default config (repo root)
  python -m benchmarks.sampler_overhead --set model.base_channels=16 --steps 10 --steps 50
  python -m benchmarks.sampler_overhead --set sample.sampler=dpmpp_2m --set sample.frame_stagger=0.0

Side by side in one process, same params, same batch and the same number of network calls:
  bare:    a Python loop of S calls of the jitted denoiser (the model alone, no solver math);
  sampler: `VideoSampler` (config.sample.sampler, one `lax.scan` of S steps in one jit; Heun
           makes two network calls per step, and the bare loop as many).
overhead = sampler / bare - 1. Compile time is measured for each step count. Prints one JSON
line and appends it to benchmarks/results/sampler_overhead.json.
"""

import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks import common
from jvdm.builders import get_model, make_video_sampler
from jvdm.pipelines.video_sampler import video_keys
from jvdm.samplers import make_denoiser


def _median_seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(config, step_counts: list[int], repeats: int) -> dict:
  data = config.data
  video_shape = (data.num_frames, data.height, data.width, data.channels)
  batch = data.batch_size
  model = get_model(config)
  x = jax.random.normal(jax.random.key(0), (batch,) + video_shape)
  t = jnp.full((batch,), 0.5)
  with nn.logical_axis_rules(config.mesh.logical_axis_rules):
    params = nn.unbox(jax.jit(model.init)(jax.random.key(1), x, t)["params"])
  results = {}
  for steps in step_counts:
    sampler = make_video_sampler(config, model.apply, steps=steps)
    keys = video_keys(2, batch)
    start = time.perf_counter()
    compiled = sampler.jitted_sample_batch.lower(params, keys, None, video_shape).compile()
    compile_seconds = time.perf_counter() - start
    sampler_seconds = _median_seconds(lambda: compiled(params, keys, None), repeats)

    denoise = jax.jit(make_denoiser(model.apply, params, sampler.process, sampler.prediction))
    calls_per_step = 2 if sampler.sampler == "heun" else 1
    times = jnp.repeat(jnp.linspace(1.0, 0.0, steps + 1)[:-1], calls_per_step)

    def bare_loop():
      out = x
      for time_value in times:
        out = denoise(x, jnp.full((batch,), time_value), None)
      return out

    bare_seconds = _median_seconds(bare_loop, repeats)
    results[str(steps)] = {
      "compile_s": round(compile_seconds, 2),
      "sampler_s": round(sampler_seconds, 3),
      "bare_model_calls_s": round(bare_seconds, 3),
      "overhead": round(sampler_seconds / bare_seconds - 1, 4),
    }
  return results


def main():
  parser = common.parser(__doc__.splitlines()[0], default_repeats=3)
  parser.add_argument(
    "--steps",
    action="append",
    type=int,
    default=None,
    help="step counts to compare (default 10 and 50)",
  )
  args = parser.parse_args()
  config = common.load_config(args)
  result = {
    **common.run_header("sampler_overhead", args),
    "batch_size": config.data.batch_size,
    "sampler": config.sample.sampler,
    "frame_stagger": config.sample.frame_stagger,
    "by_steps": measure(config, args.steps or [10, 50], args.repeats),
  }
  common.report(result, args.out)


if __name__ == "__main__":
  main()
