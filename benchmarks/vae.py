"""Video VAE cost: decode memory against video length (whole vs chunked), and encode/decode
throughput.

  python -m benchmarks.vae                      # the default causal VAE (configs/bouncing_shapes_vae.py)
  python -m benchmarks.vae --workdir runs/bouncing_shapes_vae   # its trained params
  python -m benchmarks.vae --variant temporal_decoder

Memory: for each of --lengths (pixel frames, 1 + 4k), XLA's plan for the compiled decoder
(`memory_analysis()`: temporaries, and arguments + outputs) decoding the whole latent video at
once, in chunks of --chunk_frames latent frames (`jvdm.models.vae.chunked`), and in chunks with
the decoder's convs in --row_slices bands of rows (feature slicing). The goal is temporaries
flat in the length when chunked: only one chunk's activations are live.
Throughput: median seconds of --repeats calls (compiled beforehand) to encode and to decode
--batch videos of the config's size, as frames per second.

Prints a table and appends one JSON line to benchmarks/results/vae.json.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from jvdm.builders import get_model
from jvdm.workdir import load_trained_run
from jvdm.models.vae.chunked import decode_in_chunks, encode_in_chunks


def _median_seconds(fn, repeats: int, *args) -> float:
  jax.block_until_ready(fn(*args))  # compiled and warm
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _planned(compiled) -> dict:
  memory = compiled.memory_analysis()
  if memory is None:
    return {"temp_bytes": None, "buffer_bytes": None}
  return {
    "temp_bytes": memory.temp_size_in_bytes,
    "buffer_bytes": (
      memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    ),
  }


def main():
  arguments = common.parser(
    __doc__.splitlines()[0], default_repeats=3, default_config="bouncing_shapes_vae"
  )
  arguments.add_argument(
    "--workdir",
    default=None,
    help="a trained VAE's workdir (default: random params; cost does not depend on them)",
  )
  arguments.add_argument("--lengths", default="17,129", help="pixel frames, comma-separated")
  arguments.add_argument("--chunk_frames", type=int, default=2, help="latent frames per chunk")
  arguments.add_argument(
    "--row_slices", type=int, default=4, help="bands of rows for the feature-sliced decoder"
  )
  arguments.add_argument("--batch", type=int, default=4, help="videos per throughput call")
  args = arguments.parse_args()
  if args.workdir:
    run = load_trained_run(args.workdir)
    model, config, params = run.model, run.config, run.params
  else:
    config = common.load_config(args)
    model = get_model(config)
    frame = (config.data.height, config.data.width, config.data.channels)
    params = model.init(jax.random.key(0), jnp.zeros((1, 1) + frame))["params"]
  frame = (config.data.height, config.data.width, config.data.channels)
  result = common.run_header("vae", args)
  result.update(
    architecture=model.architecture,
    chunk_frames=args.chunk_frames,
    row_slices=args.row_slices,
    trained=bool(args.workdir),
    memory={},
    throughput={},
  )

  whole_decode = jax.jit(lambda p, z: model.apply({"params": p}, z, method=model.decode))
  chunked_decode = jax.jit(lambda p, z: decode_in_chunks(model, p, z, args.chunk_frames))
  sliced = model.clone(decoder_row_slices=args.row_slices)
  sliced_decode = jax.jit(lambda p, z: decode_in_chunks(sliced, p, z, args.chunk_frames))
  print(f"{'frames':>6s} {'decode':>14s} {'temporaries MiB':>16s} {'buffers MiB':>12s}")
  for length in (int(n) for n in args.lengths.split(",")):
    latent = jax.ShapeDtypeStruct((1,) + model.latent_shape((length,) + frame), jnp.float32)
    result["memory"][length] = {}
    for name, fn in (
      ("whole", whole_decode),
      ("chunked", chunked_decode),
      ("chunked_sliced", sliced_decode),
    ):
      planned = _planned(fn.lower(params, latent).compile())
      result["memory"][length][name] = planned
      print(
        f"{length:6d} {name:>14s} {(planned['temp_bytes'] or 0) / 2**20:16.1f} "
        f"{(planned['buffer_bytes'] or 0) / 2**20:12.1f}",
        flush=True,
      )

  videos = jax.random.uniform(
    jax.random.key(1), (args.batch, config.data.num_frames) + frame, minval=-1, maxval=1
  )
  encode = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode)[0])
  latents = encode(params, videos)
  chunk = args.chunk_frames * model.temporal_compression
  encode_chunked = jax.jit(lambda p, x: encode_in_chunks(model, p, x, chunk)[0])
  frames = args.batch * config.data.num_frames
  for name, fn, inputs in (
    ("encode", encode, videos),
    ("encode_chunked", encode_chunked, videos),
    ("decode", whole_decode, latents),
    ("decode_chunked", chunked_decode, latents),
    ("decode_chunked_sliced", sliced_decode, latents),
  ):
    seconds = _median_seconds(fn, args.repeats, params, inputs)
    result["throughput"][name] = {
      "seconds": round(seconds, 4),
      "frames_per_second": round(frames / seconds, 1),
    }
    print(
      f"{name:15s} {args.batch} x {config.data.num_frames} frames: {seconds:.3f} s, "
      f"{frames / seconds:.0f} frames/s",
      flush=True,
    )
  common.report(result, args.out)


if __name__ == "__main__":
  main()
