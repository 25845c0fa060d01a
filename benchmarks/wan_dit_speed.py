"""Wan 2.1 DiT: one denoising step of jvdm (jitted) against diffusers (eager PyTorch), on the
same weights and inputs.

  python -m benchmarks.wan_dit_speed                       # 8 heads x 64, 6 layers, 512 text tokens
  python -m benchmarks.wan_dit_speed --layers 4 --text_length 128 --repeats 3
  XLA_FLAGS=--xla_cpu_use_onednn=true python -m benchmarks.wan_dit_speed --label onednn

A diffusers `WanTransformer3DModel` with random float32 weights is saved with `save_pretrained`
to a temporary folder and loaded with `jvdm.pretrained.wan_dit.load_wan_dit`; both networks get
one video `[1, 16, T, H, W]` (a 17-frame 240x416 video's latents by default), one timestep and
`--text_length` text embeddings of width 4096. The outputs are compared (max relative error to
diffusers'), then each is timed: jvdm's lowering and compiling apart (compile s), then
`--repeats` calls after a warm-up call (`block_until_ready`), and as many of diffusers' under
`torch.inference_mode()` with `torch.set_num_threads(os.cpu_count())`, in alternation, so a
load from other processes on the machine falls on both. diffusers is also timed alone first,
before jvdm has run anything. The `bfloat16` row is timed against diffusers' model loaded with
`torch_dtype=torch.bfloat16` (same inputs in bfloat16); the others against float32.

Variants of jvdm (rows; `--variants` picks them):
  float32           the loaded model as it is (compute float32; attention chunked on CPU)
  xla_attention     attention_implementation="xla": `jax.nn.dot_product_attention` in one
                    call (jvdm's own networks' default; the Wan DiT chunks on CPU)
  bfloat16_compute  compute_dtype=bfloat16, params float32
  bfloat16          params and compute in bfloat16 (diffusers' torch_dtype=bfloat16 counterpart)
  matmul_bf16       float32 params and activations, jax_default_matmul_precision="bfloat16"

ratio = diffusers' step time / jvdm's, three ways: of the fastest calls (`ratio_min`, the
least disturbed by other processes), of the median calls (`ratio`), and of the median process
CPU time, all threads (`ratio_cpu`, which other processes' load disturbs least, though spinning
idle threads count in it). Prints a table and appends one JSON line to
benchmarks/results/wan_dit_speed.json.
"""

import argparse
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from diffusers import WanTransformer3DModel

from benchmarks import common
from jvdm.pretrained.wan_dit import load_wan_dit

VARIANTS = ("float32", "xla_attention", "bfloat16_compute", "bfloat16", "matmul_bf16")


def _arguments() -> argparse.Namespace:
  result = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  result.add_argument("--heads", type=int, default=8)
  result.add_argument("--head_dim", type=int, default=64)
  result.add_argument("--layers", type=int, default=6)
  result.add_argument("--ffn_dim", type=int, default=0, help="default: 4 x heads x head_dim")
  result.add_argument("--text_length", type=int, default=512, help="Wan pads prompts to 512")
  result.add_argument("--latent", default="5,30,52", help="latent frames,rows,columns")
  result.add_argument("--repeats", type=int, default=7)
  result.add_argument("--variants", default=",".join(VARIANTS))
  result.add_argument("--label", default="", help="names this run (e.g. a change)")
  result.add_argument("--out", default=None, help="JSON lines file")
  return result.parse_args()


def _config(args) -> dict:
  width = args.heads * args.head_dim
  return dict(
    patch_size=(1, 2, 2),
    num_attention_heads=args.heads,
    attention_head_dim=args.head_dim,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=args.ffn_dim or 4 * width,
    num_layers=args.layers,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
  )


def _timed(fn, repeats: int) -> tuple[list[float], list[float]]:
  """(wall seconds, process CPU seconds, all threads) of each of `repeats` calls."""
  walls, cpus = [], []
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return walls, cpus


def _summary(name: str, walls: list[float], cpus: list[float]) -> dict:
  return {
    f"{name}_s": round(float(np.median(walls)), 4),
    f"{name}_min_s": round(min(walls), 4),
    f"{name}_cpu_s": round(float(np.median(cpus)), 4),
    f"{name}_times": [round(s, 4) for s in walls],
  }


def _relative_error(actual, expected) -> float:
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _jvdm_step(folder, variant: str, example: tuple):
  """jvdm's compiled step for one variant: (seconds to lower and compile, a function of
  (video, t, text) -> output, without blocking)."""
  kwargs = {}
  if variant == "xla_attention":
    kwargs = dict(attention_implementation="xla")
  elif variant == "bfloat16_compute":
    kwargs = dict(compute_dtype=jnp.bfloat16)
  elif variant == "bfloat16":
    kwargs = dict(compute_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
  wan, params = load_wan_dit(folder, **kwargs)
  apply = jax.jit(lambda p, x, t, cond: wan.model.apply({"params": p}, x, t, cond=cond))
  precision = "bfloat16" if variant == "matmul_bf16" else None
  with jax.default_matmul_precision(precision):
    start = time.perf_counter()
    compiled = apply.lower(params, *example).compile()
    seconds = time.perf_counter() - start
  return seconds, lambda x, t, cond: compiled(params, x, t, cond)


def _model_flops(folder, example: tuple) -> float:
  """XLA's FLOP count of one step, from the program with attention in one call (a loop's
  body, as in chunked attention, would count once)."""
  wan, params = load_wan_dit(folder, attention_implementation="xla")
  apply = jax.jit(lambda p, x, t, cond: wan.model.apply({"params": p}, x, t, cond=cond))
  cost = apply.lower(params, *example).cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def main():
  args = _arguments()
  variants = args.variants.split(",")
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    raise SystemExit(f"--variants: unknown {unknown}; expected some of {list(VARIANTS)}.")
  torch.set_num_threads(os.cpu_count())
  config = _config(args)
  frames, rows, cols = (int(n) for n in args.latent.split(","))
  torch.manual_seed(0)
  model = WanTransformer3DModel(**config).eval()
  num_params = sum(p.numel() for p in model.parameters())
  generator = np.random.default_rng(0)
  video = generator.standard_normal((1, 16, frames, rows, cols), np.float32)  # diffusers' layout
  text = generator.standard_normal((1, args.text_length, 4096), np.float32)
  t = 0.7  # jvdm's time in [0, 1]; diffusers' timestep 700
  result = {
    "benchmark": "wan_dit_speed",
    "label": args.label,
    "jvdm_commit": common.git_commit(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
    "cpu_count": os.cpu_count(),
    "machine": platform.machine(),
    "processor": platform.processor(),
    "load_average_start": os.getloadavg()[0],
    "torch": torch.__version__,
    "jax": jax.__version__,
    "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
    "params_millions": round(num_params / 1e6, 2),
    "latent": [16, frames, rows, cols],
    "tokens": frames * (rows // 2) * (cols // 2),
    "text_length": args.text_length,
    "repeats": args.repeats,
    "rows": {},
  }
  print(
    f"Wan DiT {num_params / 1e6:.1f} M params, {result['tokens']} video tokens, "
    f"{args.text_length} text tokens; {os.cpu_count()} CPUs",
    flush=True,
  )

  with tempfile.TemporaryDirectory() as folder:
    model.save_pretrained(folder)
    torch_video, torch_text = torch.from_numpy(video), torch.from_numpy(text)
    torch_t = torch.tensor([t * 1000])

    def diffusers_step():
      with torch.inference_mode():
        return model(torch_video, torch_t, torch_text, return_dict=False)[0]

    start = time.perf_counter()
    expected = diffusers_step().numpy()
    result["diffusers_first_call_s"] = round(time.perf_counter() - start, 3)
    jax_video = jnp.asarray(video.transpose(0, 2, 3, 4, 1))  # channels last
    jax_text, jax_t = jnp.asarray(text), jnp.full((1,), t, jnp.float32)

    alone = _summary("diffusers_alone", *_timed(diffusers_step, args.repeats))
    result.update(alone)  # before jvdm's first run
    print(
      f"diffusers alone (before any jvdm run): median {alone['diffusers_alone_s']:.3f} s, "
      f"min {alone['diffusers_alone_min_s']:.3f} s",
      flush=True,
    )
    model_bfloat16 = None
    example = (jax_video, jax_t, jax_text)
    flops = _model_flops(folder, example)
    result["gflop"] = round(flops / 1e9, 1)
    print(f"{flops / 1e9:.1f} GFLOP per step (XLA's count)", flush=True)
    print(
      f"{'variant':>17s} {'compile s':>9s} {'jvdm min/median s':>17s} "
      f"{'diffusers min/median s':>22s} {'ratio min':>9s} {'median':>6s} {'cpu':>5s} "
      f"{'GFLOP/s':>7s} {'max rel err':>11s}",
      flush=True,
    )
    for variant in variants:
      compile_seconds, step = _jvdm_step(folder, variant, example)
      out = jax.block_until_ready(step(*example))
      error = _relative_error(np.asarray(out, np.float32).transpose(0, 4, 1, 2, 3), expected)
      jax.block_until_ready(step(*example))  # warm-up
      reference, reference_dtype = diffusers_step, "float32"
      if variant == "bfloat16":  # against diffusers' bfloat16 model
        if model_bfloat16 is None:
          model_bfloat16 = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
        bf16_video, bf16_text = torch_video.bfloat16(), torch_text.bfloat16()

        def reference():
          with torch.inference_mode():
            return model_bfloat16(bf16_video, torch_t, bf16_text, return_dict=False)[0]

        reference_dtype = "bfloat16"
        reference()  # warm-up
      timings = {"jvdm": ([], []), "diffusers": ([], [])}
      for _ in range(args.repeats):  # alternating, so both see the same machine load
        for name, fn in (
          ("jvdm", lambda: jax.block_until_ready(step(*example))),
          ("diffusers", reference),
        ):
          walls, cpus = _timed(fn, 1)
          timings[name][0].extend(walls)
          timings[name][1].extend(cpus)
      row = {"compile_s": round(compile_seconds, 2), "diffusers_dtype": reference_dtype}
      row.update(_summary("jvdm", *timings["jvdm"]))
      row.update(_summary("diffusers", *timings["diffusers"]))
      for suffix in ("_min_s", "_s", "_cpu_s"):
        ratio = row["diffusers" + suffix] / row["jvdm" + suffix]
        row["ratio" + suffix.removesuffix("_s")] = round(ratio, 3)
      row.update(
        jvdm_gflop_per_s=round(flops / 1e9 / row["jvdm_min_s"], 1),
        diffusers_gflop_per_s=round(flops / 1e9 / row["diffusers_min_s"], 1),
        max_relative_error=float(f"{error:.3g}"),
        load_average=round(os.getloadavg()[0], 2),
      )
      result["rows"][variant] = row
      print(
        f"{variant:>17s} {compile_seconds:9.2f} "
        f"{row['jvdm_min_s']:8.3f}/{row['jvdm_s']:<8.3f} "
        f"{row['diffusers_min_s']:11.3f}/{row['diffusers_s']:<10.3f} {row['ratio_min']:9.2f} "
        f"{row['ratio']:6.2f} {row['ratio_cpu']:5.2f} {row['jvdm_gflop_per_s']:7.1f} "
        f"{error:11.2e}",
        flush=True,
      )
  result["load_average_end"] = os.getloadavg()[0]
  common.report(result, args.out)


if __name__ == "__main__":
  main()
