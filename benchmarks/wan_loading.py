"""Wan 2.1 T2V 1.3B transformer: load time and peak host memory of jvdm's `load_wan_dit`
against diffusers' `WanTransformer3DModel.from_pretrained`, each in a fresh process.

  python -m benchmarks.wan_loading                    # writes ~2.8 GB to a temporary folder
  python -m benchmarks.wan_loading --keep DIR         # writes (or reuses) DIR and keeps it
  python -m benchmarks.wan_loading --folder DIR       # an existing transformer folder

The checkpoint is the real model's layout with random bfloat16 weights: the
Wan2.1-T2V-1.3B-Diffusers `transformer/config.json`, diffusers' key names and shapes (from a
`WanTransformer3DModel` built on the meta device, so nothing is allocated), written tensor by
tensor as safetensors shards of about `--shard_gb` GB with their
`diffusion_pytorch_model.safetensors.index.json`, as `save_pretrained` lays them out.

Each loader runs in its own subprocess, after its imports (jax and jvdm; torch and diffusers)
and, for jax, the CPU backend's start: the child reports that baseline resident memory
(VmRSS), the load's wall time, the peak (VmHWM, and `ru_maxrss`), and the largest anonymous
and file-backed parts of the resident memory sampled every 5 ms. diffusers' tensors map the
safetensors files and are read lazily: its child then reads every weight once (a sum per
tensor, as the first denoising step would) and reports the time and peak both before and
after; jvdm's load reads and places everything. jvdm keeps the stored
bfloat16; diffusers is asked for `torch_dtype=torch.bfloat16`. The goal: the peak at most
1.3x the checkpoint's size. Both the raw peak and the peak net of the baseline are reported.
The files were just written, so both loaders read them from the page cache. The rate at which
a fresh process writes memory it has not used before is measured too: on a virtual machine
whose host backs guest memory lazily it dominates the time of a loader that fills new buffers.
Each loader runs `--repeats` times; the row is the run of median load time, with every run's
time and peak.

Prints a table and appends one JSON line to benchmarks/results/wan_loading.json.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

# The Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json (without `_diffusers_version`).
WAN_T2V_1_3B = {
  "_class_name": "WanTransformer3DModel",
  "added_kv_proj_dim": None,
  "attention_head_dim": 128,
  "cross_attn_norm": True,
  "eps": 1e-06,
  "ffn_dim": 8960,
  "freq_dim": 256,
  "image_dim": None,
  "in_channels": 16,
  "num_attention_heads": 12,
  "num_layers": 30,
  "out_channels": 16,
  "patch_size": [1, 2, 2],
  "qk_norm": "rms_norm_across_heads",
  "rope_max_seq_len": 1024,
  "text_dim": 4096,
}
WEIGHTS_NAME = "diffusion_pytorch_model"
GB = 1e9
MIB = 2**20


def _arguments() -> argparse.Namespace:
  result = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  result.add_argument("--folder", default=None, help="an existing transformer folder to load")
  result.add_argument("--keep", default=None, help="write the checkpoint here and keep it")
  result.add_argument("--shard_gb", type=float, default=1.0, help="shard size (GB)")
  result.add_argument("--loaders", default="jvdm,diffusers")
  result.add_argument("--repeats", type=int, default=3, help="fresh processes per loader")
  result.add_argument("--label", default="", help="names this run's jvdm row (e.g. a change)")
  result.add_argument("--out", default=None, help="JSON lines file")
  result.add_argument("--child", default=None, help=argparse.SUPPRESS)  # jvdm | diffusers
  return result.parse_args()


# ---------------------------------------------------------------------------- the checkpoint


def _diffusers_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
  """diffusers' (key, shape) of every stored tensor, in `state_dict` order."""
  import torch  # pylint: disable=g-import-not-at-top
  from diffusers import WanTransformer3DModel  # pylint: disable=g-import-not-at-top

  arguments = {k: v for k, v in config.items() if not k.startswith("_")}
  with torch.device("meta"):
    model = WanTransformer3DModel(**arguments)
  return [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()]


def _write_safetensors(path: pathlib.Path, tensors: list[tuple[str, tuple[int, ...]]], rng):
  """One safetensors file of random bfloat16 tensors, written one tensor at a time (keys
  sorted, as the safetensors library orders them)."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  header, offset = {"__metadata__": {"format": "pt"}}, 0
  tensors = sorted(tensors)
  for key, shape in tensors:
    size = 2 * int(np.prod(shape))
    header[key] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
    offset += size
  encoded = json.dumps(header, separators=(",", ":")).encode()
  encoded += b" " * (-len(encoded) % 8)
  with open(path, "wb") as f:
    f.write(len(encoded).to_bytes(8, "little"))
    f.write(encoded)
    for key, shape in tensors:
      values = rng.standard_normal(shape, np.float32) * 0.02
      f.write(values.astype(ml_dtypes.bfloat16).tobytes())


def write_checkpoint(folder: pathlib.Path, shard_bytes: float, seed: int = 0) -> int:
  """A Wan 2.1 T2V 1.3B transformer folder of random bfloat16 weights; returns its bytes."""
  folder.mkdir(parents=True, exist_ok=True)
  shapes = _diffusers_shapes(WAN_T2V_1_3B)
  shards, current, current_bytes = [], [], 0
  for key, shape in shapes:  # state_dict order, a new shard when this one is full
    size = 2 * int(np.prod(shape))
    if current and current_bytes + size > shard_bytes:
      shards.append(current)
      current, current_bytes = [], 0
    current.append((key, shape))
    current_bytes += size
  shards.append(current)
  rng = np.random.default_rng(seed)
  weight_map, total = {}, 0
  for i, shard in enumerate(shards):
    name = f"{WEIGHTS_NAME}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    _write_safetensors(folder / name, shard, rng)
    for key, shape in shard:
      weight_map[key] = name
      total += 2 * int(np.prod(shape))
  index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
  (folder / f"{WEIGHTS_NAME}.safetensors.index.json").write_text(json.dumps(index, indent=2))
  (folder / "config.json").write_text(json.dumps(WAN_T2V_1_3B, indent=2))
  return total


def checkpoint_bytes(folder: pathlib.Path) -> int:
  return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


# ------------------------------------------------------------------------- the child process


def _status() -> dict[str, int]:
  """/proc/self/status memory fields in bytes."""
  fields = {}
  with open("/proc/self/status") as f:
    for line in f:
      name, _, value = line.partition(":")
      if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
        fields[name] = int(value.split()[0]) * 1024
  return fields


class _Sampler:
  """The largest anonymous and file-backed resident memory seen, sampled in a thread."""

  def __init__(self, interval: float = 0.005):
    self.interval, self.peaks, self._stop = interval, {}, threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    while not self._stop.is_set():
      for name, value in _status().items():
        self.peaks[name] = max(self.peaks.get(name, 0), value)
      time.sleep(self.interval)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def child(loader: str, folder: str) -> dict:
  """Imports `loader`'s stack, then loads the folder; the measurements (module docstring)."""
  import resource  # pylint: disable=g-import-not-at-top

  start = time.perf_counter()
  if loader == "jvdm":
    import jax  # pylint: disable=g-import-not-at-top

    from jvdm.pretrained.wan_dit import load_wan_dit  # pylint: disable=g-import-not-at-top

    jax.block_until_ready(jax.numpy.zeros(1))  # the CPU backend is up
  else:
    import torch  # pylint: disable=g-import-not-at-top
    from diffusers import WanTransformer3DModel  # pylint: disable=g-import-not-at-top
  import_seconds = time.perf_counter() - start
  baseline = _status()
  with _Sampler() as sampler:
    start = time.perf_counter()
    if loader == "jvdm":
      _, params = load_wan_dit(folder)
      leaves = jax.block_until_ready(jax.tree.leaves(params))
      dtypes = sorted({str(leaf.dtype) for leaf in leaves})
      param_bytes = sum(leaf.nbytes for leaf in leaves)
    else:
      model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
      tensors = list(model.state_dict().values())
      dtypes = sorted({str(tensor.dtype).removeprefix("torch.") for tensor in tensors})
      param_bytes = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    load_seconds = time.perf_counter() - start
    lazy = _status()
    if loader != "jvdm":  # its tensors map the files: read every weight once, as a step does
      with torch.inference_mode():
        for tensor in tensors:
          torch.sum(tensor)
    touched_seconds = time.perf_counter() - start
  after = _status()
  return {
    "import_s": round(import_seconds, 2),
    "load_s": round(load_seconds, 2),
    "load_and_touch_s": round(touched_seconds, 2),
    "peak_rss_before_touch": lazy["VmHWM"],
    "baseline_rss": baseline["VmRSS"],
    "peak_rss": after["VmHWM"],
    "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "rss_after_load": after["VmRSS"],
    "sampled_peak_anon": sampler.peaks.get("RssAnon"),
    "sampled_peak_file": sampler.peaks.get("RssFile"),
    "param_bytes": int(param_bytes),
    "dtypes": dtypes,
  }


def first_touch_rate(size: int = 2**30) -> float:
  """GB/s at which this process writes memory it has not used before: on a virtual machine
  whose host backs guest memory lazily, this bounds any loader that fills new buffers."""
  start = time.perf_counter()
  np.ones(size, np.uint8)
  return size / GB / (time.perf_counter() - start)


def _measure(loader: str, folder: pathlib.Path) -> dict:
  completed = subprocess.run(
    [sys.executable, "-m", "benchmarks.wan_loading", "--child", loader, "--folder", str(folder)],
    cwd=pathlib.Path(__file__).resolve().parent.parent,
    capture_output=True,
    text=True,
  )
  if completed.returncode:
    raise RuntimeError(f"The {loader} child failed:\n{completed.stderr[-4000:]}")
  return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
  args = _arguments()
  if args.child == "touch":
    print(json.dumps({"first_touch_gb_per_s": round(first_touch_rate(), 3)}))
    return
  if args.child:
    print(json.dumps(child(args.child, args.folder)))
    return
  # imported here: each child measures its own stack only (common imports jax)
  from benchmarks import common  # pylint: disable=g-import-not-at-top

  temporary = None
  if args.folder:
    folder = pathlib.Path(args.folder)
  elif args.keep and (pathlib.Path(args.keep) / "config.json").exists():
    folder = pathlib.Path(args.keep)
  else:
    if args.keep:
      folder = pathlib.Path(args.keep)
    else:
      temporary = tempfile.mkdtemp(prefix="wan_t2v_1_3b_")
      folder = pathlib.Path(temporary)
    start = time.perf_counter()
    write_checkpoint(folder, args.shard_gb * GB)
    print(f"wrote {folder} in {time.perf_counter() - start:.1f} s", flush=True)
  try:
    size = checkpoint_bytes(folder)
    result = {
      "benchmark": "wan_loading",
      "label": args.label,
      "jvdm_commit": common.git_commit(),
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "memory_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
      "checkpoint": "Wan2.1-T2V-1.3B transformer layout, random bfloat16",
      "checkpoint_bytes": size,
      "shards": len(list(folder.glob("*.safetensors"))),
      "repeats": args.repeats,
      "load_average_start": os.getloadavg()[0],
      "first_touch_gb_per_s": _measure("touch", folder)["first_touch_gb_per_s"],
      "rows": {},
    }
    print(
      f"checkpoint {size / MIB:.0f} MiB in {result['shards']} shards; new memory is written at "
      f"{result['first_touch_gb_per_s']:.2f} GB/s\n"
      f"{'loader':>10s} {'load s':>7s} {'+touch s':>8s} {'base MiB':>9s} {'peak MiB':>9s} {'peak/ckpt':>9s} "
      f"{'net/ckpt':>8s} {'anon MiB':>9s} {'file MiB':>9s} {'held MiB':>9s}",
      flush=True,
    )
    for loader in args.loaders.split(","):
      runs = [_measure(loader, folder) for _ in range(args.repeats)]
      row = dict(runs[int(np.argsort([run["load_s"] for run in runs])[len(runs) // 2])])
      row["load_s_runs"] = [run["load_s"] for run in runs]
      row["peak_rss_runs"] = [run["peak_rss"] for run in runs]
      row["peak_ratio"] = round(row["peak_rss"] / size, 3)
      row["net_peak_ratio"] = round((row["peak_rss"] - row["baseline_rss"]) / size, 3)
      result["rows"][loader] = row
      print(
        f"{loader:>10s} {row['load_s']:7.2f} {row['load_and_touch_s']:8.2f} "
        f"{row['baseline_rss'] / MIB:9.0f} "
        f"{row['peak_rss'] / MIB:9.0f} {row['peak_ratio']:9.2f} {row['net_peak_ratio']:8.2f} "
        f"{(row['sampled_peak_anon'] or 0) / MIB:9.0f} {(row['sampled_peak_file'] or 0) / MIB:9.0f} "
        f"{row['rss_after_load'] / MIB:9.0f}",
        flush=True,
      )
    result["load_average_end"] = os.getloadavg()[0]
    common.report(result, args.out)
  finally:
    if temporary:
      shutil.rmtree(temporary)


if __name__ == "__main__":
  main()
