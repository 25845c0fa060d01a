"""Autoregressive generation with the KV cache against full recomputation, chunk by chunk.

  python -m benchmarks.causal_generation                   # the causal DiT config, 32 chunks
  python -m benchmarks.causal_generation --chunks 8 --set model.depth=2

Side by side in one process, same params, same solver and steps, batch 1, 4-frame chunks:
  cached:     `CausalVideoSampler.chunk_step`: the chunk attends to the cache of earlier
              frames (fixed capacity, a ring buffer), which is written once per chunk;
  recomputed: every denoising step runs the causal model over all frames generated so far
              plus the chunk, as implementations without a cache do.
Times exclude compilation (each step function is compiled before it is timed; recomputation
compiles once per prefix length). Memory: XLA's memory analysis of the compiled whole-video
scan (`CausalVideoSampler.generate`) for several lengths: temporaries stay flat, only the output
grows. Prints one JSON line and appends it to benchmarks/results/causal_generation.json.
"""

import time

import jax
import jax.numpy as jnp

from benchmarks import common
from jvdm.builders import get_model, make_process
from jvdm.diffusion.parameterization import x0_from_prediction
from jvdm.pipelines.kv_cache_generation import CausalVideoSampler
from jvdm.samplers.denoiser import alpha_sigma_like
from jvdm.samplers.driver import normal_per_sample, run_solver, split_per_sample
from jvdm.samplers.solvers import SOLVERS


def _timed(compiled, *args):
  start = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  return out, time.perf_counter() - start


def recompute_chunk(sampler: CausalVideoSampler, params, prefix, keys, frame_shape):
  """One chunk denoised by full causal passes over prefix + chunk (no cache)."""
  model, process = sampler.model, sampler.process
  solver_keys, init_keys = split_per_sample(keys)

  def denoise(z, t, cond):
    del cond
    t_chunk = jnp.broadcast_to(t[:, None], z.shape[:2]) if t.ndim == 1 else t
    video = jnp.concatenate([prefix, z], axis=1)
    times = jnp.concatenate([jnp.zeros(prefix.shape[:2]), t_chunk], axis=1)
    output = model.apply({"params": params}, process.scale_model_input(video, times), times)
    alpha, sigma = alpha_sigma_like(process, t, z)
    return x0_from_prediction(sampler.prediction, output[:, prefix.shape[1] :], z, alpha, sigma)

  solver = SOLVERS[sampler.sampler][0](denoise, process, 0.0, sampler.clip_x0)
  x_init = normal_per_sample(init_keys, (sampler.chunk_frames,) + tuple(frame_shape))
  return run_solver(solver, x_init, jnp.asarray(sampler.time_grid), solver_keys)


def main():
  parser = common.parser(
    __doc__.splitlines()[0],
    default_repeats=1,
    default_config="bouncing_shapes_dit",
    default_variant="causal",
  )
  parser.add_argument("--chunks", type=int, default=32)
  parser.add_argument("--chunk_frames", type=int, default=4)
  parser.add_argument("--cache_frames", type=int, default=16)
  parser.add_argument("--steps", type=int, default=4)
  args = parser.parse_args()
  config = common.load_config(args)
  model = get_model(config)
  frame_shape = (config.data.height, config.data.width, config.data.channels)
  video = jnp.zeros((1, args.chunk_frames) + frame_shape)
  params = jax.jit(model.init)(jax.random.key(0), video, jnp.zeros((1,)))["params"]
  # Perturbed: at init the zero-initialized gates and output make every output 0, which would
  # make the cached-vs-recomputed comparison vacuous (timings do not depend on the values).
  leaves, tree = jax.tree.flatten(params)
  noise_keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(
    tree,
    [leaf + 0.02 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, noise_keys)],
  )
  sampler = CausalVideoSampler(
    model,
    make_process(config.diffusion),
    config.diffusion.prediction,
    sampler="ddim",
    num_steps=args.steps,
    chunk_frames=args.chunk_frames,
    cache_frames=args.cache_frames,
  )
  keys = jax.random.split(jax.random.key(1), args.chunks)[:, None]  # [K, B = 1]

  cache, first = sampler.empty_cache(1, frame_shape)
  step = (
    jax.jit(sampler.chunk_step, static_argnums=4)
    .lower(params, cache, first, keys[0], frame_shape)
    .compile()
  )
  cached_seconds, frames = [], []
  for k in range(args.chunks):
    (cache, first, chunk), seconds = _timed(step, params, cache, first, keys[k])
    cached_seconds.append(seconds)
    frames.append(chunk)

  # While every earlier frame fits in the cache, both see the same context and must agree.
  recomputed_seconds, difference_within_cache = [], 0.0
  for k in range(args.chunks):
    prefix = jnp.concatenate(frames[:k], axis=1) if k else jnp.zeros((1, 0) + frame_shape)
    compiled = (
      jax.jit(recompute_chunk, static_argnums=(0, 4))
      .lower(sampler, params, prefix, keys[k], frame_shape)
      .compile()
    )
    chunk, seconds = _timed(compiled, params, prefix, keys[k])
    recomputed_seconds.append(seconds)
    if k * args.chunk_frames <= args.cache_frames:
      difference_within_cache = max(
        difference_within_cache, float(jnp.abs(chunk - frames[k]).max())
      )

  memory = {}
  for num_chunks in sorted({4, 16, args.chunks}):
    generate = sampler._generate  # pylint: disable=protected-access
    analysis = (
      jax.jit(generate, static_argnums=(4, 5))
      .lower(params, keys[0], None, None, num_chunks, frame_shape)
      .compile()
      .memory_analysis()
    )
    memory[str(num_chunks * args.chunk_frames)] = {
      "temp_bytes": int(analysis.temp_size_in_bytes),
      "output_bytes": int(analysis.output_size_in_bytes),
    }

  result = {
    **common.run_header("causal_generation", args),
    "chunk_frames": args.chunk_frames,
    "cache_frames": args.cache_frames,
    "steps": args.steps,
    "chunks": args.chunks,
    "cached_s_per_chunk": [round(s, 4) for s in cached_seconds],
    "recomputed_s_per_chunk": [round(s, 4) for s in recomputed_seconds],
    "cached_chunk_last_over_chunk_2": round(cached_seconds[-1] / cached_seconds[1], 3),
    "cached_total_s": round(sum(cached_seconds), 3),
    "recomputed_total_s": round(sum(recomputed_seconds), 3),
    "speedup_total": round(sum(recomputed_seconds) / sum(cached_seconds), 2),
    "max_abs_difference_while_context_fits_cache": difference_within_cache,
    "memory_by_frames": memory,
  }
  common.report(result, args.out)


if __name__ == "__main__":
  main()
