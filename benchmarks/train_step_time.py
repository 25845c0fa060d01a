"""Times the real train step (compile and steady state) for config variants, on this machine.

  python -m benchmarks.train_step_time                      # the default config (repo root)
  python -m benchmarks.train_step_time --set model.base_channels=16 --set model.patch_size=1

Prints one JSON line per run and appends it to benchmarks/results/train_step_time.json.
"""

import math
import statistics
import time

import flax.linen as nn
import jax
import numpy as np

from benchmarks import common
from jvdm.data.captions import null_condition_for
from jvdm.data.synthetic import BouncingShapes
from jvdm.diffusion import make_loss
from jvdm.models import get_model
from jvdm.parallel.mesh import batch_sharding, make_mesh
from jvdm.training.optimizer import make_optimizer
from jvdm.training.state import create_sharded_state
from jvdm.training.step import make_train_step


def time_train_step(config, repeats: int) -> dict:
  mesh = make_mesh(config.mesh.shape)
  rules = config.mesh.logical_axis_rules
  data = config.data
  video_shape = (data.num_frames, data.height, data.width, data.channels)
  source = BouncingShapes(num_frames=data.num_frames, height=data.height, width=data.width,
                          max_shapes=data.bouncing_shapes.max_shapes)
  items = [source[i] for i in range(data.batch_size)]
  null_condition = null_condition_for(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    model = get_model(config)
    tx, schedule = make_optimizer(config.optim, config.train.num_steps)
    state, shardings, _ = create_sharded_state(model, tx, jax.random.key(0), video_shape, mesh,
                                               rules, null_condition)
    step = jax.jit(make_train_step(model, make_loss(config.diffusion), tx, schedule,
                                   config.optim.ema_decay, null_condition,
                                   config.train.get("condition_dropout", 0.0)),
                   in_shardings=(shardings, None, None), out_shardings=(shardings, None),
                   donate_argnums=0)
    keys = ("video",) if null_condition is None else ("video", "caption")
    batch = {key: np.stack([item[key] for item in items]) for key in keys}
    batch = {key: jax.device_put(value, batch_sharding(mesh, value.ndim))
             for key, value in batch.items()}
    rng = jax.random.key(1)
    start = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    compile_seconds = time.perf_counter() - start
    flops = compiled.cost_analysis().get("flops", float("nan"))
    state, metrics = compiled(state, batch, rng)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      state, metrics = compiled(state, batch, rng)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  median = statistics.median(times)
  return {"compile_s": round(compile_seconds, 2), "step_s_median": round(median, 4),
          "step_s_min": round(min(times), 4), "gflop_per_step": round(flops / 1e9, 2),
          "achieved_gflop_per_s": round(flops / 1e9 / median, 1), "params": params,
          "steps_in_15_min": int(900 / median)}


def main():
  args = common.parser(__doc__.splitlines()[0], default_repeats=5).parse_args()
  config = common.load_config(args)
  result = {**common.run_header("train_step_time", args), "batch_size": config.data.batch_size,
            "video_shape": [config.data.num_frames, config.data.height, config.data.width,
                            config.data.channels],
            "model": config.model.to_dict(), **time_train_step(config, args.repeats)}
  common.report(result, args.out)


if __name__ == "__main__":
  main()
