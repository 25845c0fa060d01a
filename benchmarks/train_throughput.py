"""Measures train throughput (examples/s, tokens/s, model TFLOP/s, MFU) on 1 and on all devices.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
    python -m benchmarks.train_throughput --config bouncing_shapes_dit --variant caption
  python -m benchmarks.train_throughput --config bouncing_shapes_unet

The real jitted train step runs data-parallel on a mesh over `jax.devices()[:1]` and over
`jax.devices()`, with the config's global batch both times; compilation and a warm-up step are
excluded and the median of `--repeats` steps counts. The model FLOPs per step are XLA's count of
the 1-device step (`jvdm.training.throughput.step_flops`); the peak is
`device_peak_flops(matmul_dtype(config.model.dtype))`: a datasheet rate on TPUs and GPUs, the
measured rate of a large matmul on the CPU.

On the CPU, simulated devices (`--xla_force_host_platform_device_count`) share the same cores:
8 against 1 adds no hardware, so it measures sharding overhead and how the cores get used
(8 per-device programs running at once against one program's intra-op threads), not a
speed-up. MFU counts the host's measured matmul rate once, whatever the number of simulated
devices.

Prints one JSON line per run and appends it to benchmarks/results/train_throughput.json.
"""

import statistics
import time

import flax.linen as nn
import jax
import numpy as np

from benchmarks import common
from jvdm.builders import get_model, null_condition_for
from jvdm.data.synthetic import BouncingShapes
from jvdm.errors import ConfigError
from jvdm.parallel import axes
from jvdm.parallel.mesh import batch_sharding, make_mesh
from jvdm.training import throughput
from jvdm.training.optimizer import make_optimizer
from jvdm.training.state import create_sharded_state
from jvdm.training.step import train_step_from_config


def time_step(config, devices, repeats: int) -> dict:
  """Compiles and times the train step, data-parallel over `devices`.

  Returns:
    {"compile_s", "step_s_median", "step_s_min", "xla_flops_per_device"}.
  """
  if config.data.batch_size % len(devices):
    raise ConfigError(
      f"data.batch_size {config.data.batch_size} is not divisible by the {len(devices)} devices."
    )
  mesh = make_mesh({axes.DATA: -1}, devices)
  rules = config.mesh.logical_axis_rules
  data = config.data
  video_shape = (data.num_frames, data.height, data.width, data.channels)
  source = BouncingShapes(
    num_frames=data.num_frames,
    height=data.height,
    width=data.width,
    max_shapes=data.bouncing_shapes.max_shapes,
  )
  items = [source[i] for i in range(data.batch_size)]
  null_condition = null_condition_for(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    model = get_model(config)
    tx, schedule = make_optimizer(config.optim, config.train.num_steps)
    state, shardings, _ = create_sharded_state(
      model, tx, jax.random.key(0), video_shape, mesh, rules, null_condition
    )
    step = jax.jit(
      train_step_from_config(config, model, tx, schedule),
      in_shardings=(shardings, None, None),
      out_shardings=(shardings, None),
      donate_argnums=0,
    )
    keys = ("video",) if null_condition is None else ("video", "caption")
    batch = {key: np.stack([item[key] for item in items]) for key in keys}
    batch = {
      key: jax.device_put(value, batch_sharding(mesh, value.ndim)) for key, value in batch.items()
    }
    rng = jax.random.key(1)
    start = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    compile_seconds = time.perf_counter() - start
    state, metrics = compiled(state, batch, rng)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      state, metrics = compiled(state, batch, rng)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  return {
    "compile_s": compile_seconds,
    "step_s_median": statistics.median(times),
    "step_s_min": min(times),
    "xla_flops_per_device": throughput.step_flops(compiled),
  }


def measure(config, repeats: int) -> dict:
  """Throughput on 1 device and on all devices, against the device's peak."""
  device = jax.devices()[0]
  peak_dtype = throughput.matmul_dtype(config.model.dtype, device)
  peak, peak_source = throughput.device_peak_flops(device, peak_dtype)
  tokens = throughput.tokens_per_example(config)
  device_counts = sorted({1, jax.device_count()})
  timings = {n: time_step(config, jax.devices()[:n], repeats) for n in device_counts}
  model_flops = timings[1]["xla_flops_per_device"]  # the global batch, each op counted once
  runs = []
  for n, timing in timings.items():
    # Simulated CPU devices share the host, whose measured matmul rate is the peak of them all.
    peak_devices = 1 if device.platform == "cpu" else n
    figures = throughput.throughput(
      1 / timing["step_s_median"], config.data.batch_size, tokens, model_flops, peak, peak_devices
    )
    runs.append(
      {
        "num_devices": n,
        "compile_s": round(timing["compile_s"], 2),
        "step_s_median": round(timing["step_s_median"], 4),
        "step_s_min": round(timing["step_s_min"], 4),
        "examples_per_s": round(figures["examples_per_s"], 2),
        "tokens_per_s": round(figures["tokens_per_s"]),
        "model_tflops_per_s": round(figures["model_tflops_per_s"], 4),
        "mfu": round(figures["mfu"], 4),
        # Per device; work replicated on every device (the optimizer update) is in each.
        "xla_gflop_per_device_step": round(timing["xla_flops_per_device"] / 1e9, 3),
      }
    )
  return {
    "tokens_per_example": tokens,
    "model_gflop_per_step": round(model_flops / 1e9, 3),
    "peak_dtype": peak_dtype,
    "peak_tflops_per_device": round(peak / 1e12, 4),
    "peak_source": peak_source,
    "runs": runs,
  }


def main():
  args = common.parser(__doc__.splitlines()[0], default_repeats=5).parse_args()
  config = common.load_config(args)
  result = {
    **common.run_header("train_throughput", args),
    "batch_size": config.data.batch_size,
    "video_shape": [
      config.data.num_frames,
      config.data.height,
      config.data.width,
      config.data.channels,
    ],
    "model": config.model.to_dict(),
    **measure(config, args.repeats),
  }
  common.report(result, args.out)


if __name__ == "__main__":
  main()
