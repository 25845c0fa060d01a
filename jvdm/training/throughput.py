"""Throughput figures comparable across machines: examples/s, tokens/s, model TFLOP/s and MFU.

MFU (model FLOPs utilization, Chowdhery et al. 2022, PaLM, appendix B) is the achieved FLOP/s
over the peak FLOP/s of the devices the step runs on:

  mfu = steps_per_second * flops_per_step / (peak_flops_per_device * num_devices)

`flops_per_step` is XLA's count of the compiled step (`step_flops`). The peak is a vendor's
dense rate (`PEAK_FLOPS`) or, for a device not listed (the CPU), the measured rate of a large
matmul (`measure_matmul_flops`), which is what such a device can reach rather than a datasheet
figure. Which dtype's peak applies is `matmul_dtype`: float32 matmuls run faster than float32
on TPUs and recent GPUs at XLA's default precision.
"""

import math
import numbers
import time

import jax
import jax.numpy as jnp
import ml_collections

from jvdm.errors import ConfigError, JvdmError

# Dense (no sparsity) peak FLOP/s of one device (one `jax.Device`), by `device_kind` and the
# dtype matmuls run at. NVIDIA's datasheets quote tensor-core rates "with sparsity"; the dense
# rate is half of that. Each TPU chip listed here is one JAX device.
_TPU_V4 = {"bfloat16": 275e12}  # Cloud TPU docs, "TPU v4": 275 TFLOPs bf16 per chip
_TPU_V5E = {"bfloat16": 197e12}  # Cloud TPU docs, "TPU v5e": 197 TFLOPs bf16 per chip
_TPU_V5P = {"bfloat16": 459e12}  # Cloud TPU docs, "TPU v5p": 459 TFLOPs bf16 per chip
_TPU_V6E = {"bfloat16": 918e12}  # Cloud TPU docs, "TPU v6e" (Trillium): 918 TFLOPs bf16 per chip
_H100_SXM = {
  "bfloat16": 989.5e12,  # NVIDIA H100 Tensor Core GPU datasheet, SXM: BF16 1,979 sparse
  "tensorfloat32": 494.5e12,  # same, SXM: TF32 Tensor Core 989 sparse
  "float32": 67e12,  # same, SXM: FP32 67 TFLOPS
}
_H100_PCIE = {
  "bfloat16": 756.5e12,  # NVIDIA H100 Tensor Core GPU datasheet, PCIe: BF16 1,513 sparse
  "tensorfloat32": 378e12,  # same, PCIe: TF32 Tensor Core 756 sparse
  "float32": 51e12,  # same, PCIe: FP32 51 TFLOPS
}
_H200 = {
  "bfloat16": 989.5e12,  # NVIDIA H200 Tensor Core GPU datasheet, SXM: BF16 1,979 sparse
  "tensorfloat32": 494.5e12,  # same, SXM: TF32 Tensor Core 989 sparse
  "float32": 67e12,  # same, SXM: FP32 67 TFLOPS
}
_A100 = {  # the SXM4 and PCIe, 40 and 80 GB, share these rates
  "bfloat16": 312e12,  # NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS
  "tensorfloat32": 156e12,  # same: TF32 Tensor Core 156 TFLOPS
  "float32": 19.5e12,  # same: FP32 19.5 TFLOPS
}
_L4 = {
  "bfloat16": 121e12,  # NVIDIA L4 Tensor Core GPU datasheet: BF16 242 sparse
  "tensorfloat32": 60e12,  # same: TF32 Tensor Core 120 sparse
  "float32": 30.3e12,  # same: FP32 30.3 TFLOPS
}
PEAK_FLOPS: dict[str, dict[str, float]] = {
  "TPU v4": _TPU_V4,
  "TPU v5 lite": _TPU_V5E,
  "TPU v5": _TPU_V5P,
  "TPU v6 lite": _TPU_V6E,
  "NVIDIA H100 80GB HBM3": _H100_SXM,
  "NVIDIA H100 PCIe": _H100_PCIE,
  "NVIDIA H200": _H200,
  "NVIDIA A100-SXM4-40GB": _A100,
  "NVIDIA A100-SXM4-80GB": _A100,
  "NVIDIA A100-PCIE-40GB": _A100,
  "NVIDIA A100 80GB PCIe": _A100,
  "NVIDIA L4": _L4,
}

# (device_kind, dtype) -> measured matmul FLOP/s, so a process measures each once.
_MEASURED: dict[tuple[str, str], float] = {}


def _dtype_name(dtype) -> str:
  """'tensorfloat32' or the canonical name of a numpy/jax dtype ('bfloat16', 'float32')."""
  if dtype == "tensorfloat32":
    return dtype
  try:
    return jnp.dtype(dtype).name
  except TypeError as error:
    raise ConfigError(
      f"Unknown dtype {dtype!r}; expected e.g. 'bfloat16', 'float32' or 'tensorfloat32'."
    ) from error


def matmul_dtype(compute_dtype, device: jax.Device | None = None) -> str:
  """The dtype whose peak applies to a model computing in `compute_dtype` on `device`.

  At XLA's default matmul precision, float32 matmuls run as one bfloat16 pass on TPU and as
  TF32 on NVIDIA tensor cores from Ampere on (every GPU in `PEAK_FLOPS`); see
  https://docs.jax.dev/en/latest/201/precision.html. With `jax_default_matmul_precision` set to
  anything but the default, float32 is kept.

  Args:
    compute_dtype: the model's compute dtype (e.g. `config.model.dtype`).
    device: the device (default: the first of `jax.devices()`).

  Returns:
    'bfloat16', 'tensorfloat32', 'float32', ...: a dtype key of `PEAK_FLOPS`.
  """
  name = _dtype_name(compute_dtype)
  device = device or jax.devices()[0]
  if name != "float32" or jax.config.jax_default_matmul_precision not in (None, "default"):
    return name
  return {"tpu": "bfloat16", "gpu": "tensorfloat32"}.get(device.platform, name)


def measure_matmul_flops(dtype=jnp.float32, size: int = 2048, repeats: int = 5) -> float:
  """The FLOP/s of a jitted `[size, size] @ [size, size]` matmul on the default device.

  Compilation and a warm-up call are excluded; each call is timed to `block_until_ready`, and
  the fastest of `repeats` counts (a peak is the best the device reached). FLOPs are counted
  as XLA counts them, 2 * size**3. The default size takes about 0.3 s a call on 2 CPU cores.

  Args:
    dtype: the matmul's dtype; 'tensorfloat32' measures float32 at the default precision.
    size: the side of the square matrices.
    repeats: timed calls.

  Returns:
    FLOP/s.
  """
  if size < 1 or repeats < 1:
    raise ConfigError(
      f"measure_matmul_flops needs size >= 1 and repeats >= 1; got size={size}, repeats={repeats}."
    )
  name = _dtype_name(dtype)
  x = jax.random.normal(
    jax.random.key(0), (size, size), jnp.float32 if name == "tensorfloat32" else name
  )
  matmul = jax.jit(jnp.matmul).lower(x, x).compile()
  matmul(x, x).block_until_ready()  # warm-up
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(x, x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def device_peak_flops(device: jax.Device | None = None, dtype="bfloat16") -> tuple[float, str]:
  """The peak FLOP/s of one device for matmuls in `dtype` (see `matmul_dtype`).

  Args:
    device: the device (default: the first of `jax.devices()`).
    dtype: 'bfloat16', 'tensorfloat32', 'float32', ...

  Returns:
    (FLOP/s, source): source is "table" for a `PEAK_FLOPS` entry, or "measured matmul" for a
    device kind or dtype not listed (the CPU), measured on `device` once per process.
  """
  device = device or jax.devices()[0]
  name = _dtype_name(dtype)
  table = PEAK_FLOPS.get(device.device_kind, {})
  if name in table:
    return table[name], "table"
  key = (device.device_kind, name)
  if key not in _MEASURED:
    with jax.default_device(device):
      _MEASURED[key] = measure_matmul_flops(name)
  return _MEASURED[key], "measured matmul"


def step_flops(compiled) -> float:
  """The FLOPs of a compiled step, from XLA's `compiled.cost_analysis()`.

  XLA counts what the program computes: a multiply-add is 2 FLOPs; rematerialized forward
  passes count again (so with remat this is closer to hardware than model FLOPs); and a
  computation runs as often as its operands' shape says. jvdm's DiT runs its adaLN modulation
  on `[B, F, C]`, once per frame, so it is counted once per frame, not once per token. For a
  program partitioned over several devices the count is per device, and work replicated on
  every device (an optimizer update of replicated params) is in each device's count: compile
  the step on one device to count the model's FLOPs for the global batch.

  Args:
    compiled: `jax.jit(f).lower(...).compile()`.

  Returns:
    FLOPs per call.
  """
  if not hasattr(compiled, "cost_analysis"):
    raise JvdmError(
      f"step_flops needs a compiled step, jax.jit(f).lower(...).compile(); got "
      f"{type(compiled).__name__}."
    )
  cost = compiled.cost_analysis()
  # Older JAX versions return one dict per HLO module.
  costs = cost if isinstance(cost, (list, tuple)) else [cost]
  flops = [c.get("flops") if isinstance(c, dict) else None for c in costs]
  if not flops or any(f is None or not math.isfinite(f) for f in flops):
    raise JvdmError(
      f"XLA's cost analysis on {jax.devices()[0].platform} gave no FLOP count "
      f"(cost_analysis() returned {cost!r:.200}); expected a dict with 'flops'."
    )
  return float(sum(flops))


def throughput(
  steps_per_second: float,
  global_batch: int,
  tokens_per_example: int,
  flops_per_step: float,
  peak_flops_per_device: float,
  num_devices: int,
) -> dict[str, float]:
  """Examples/s, tokens/s, model TFLOP/s and MFU of a train step.

  Args:
    steps_per_second: steps a second (1 / the step time).
    global_batch: examples per step, over all devices.
    tokens_per_example: see `tokens_per_example`.
    flops_per_step: FLOPs of one step of the global batch (see `step_flops`).
    peak_flops_per_device: see `device_peak_flops`.
    num_devices: the devices the peak is counted over.

  Returns:
    {"examples_per_s", "tokens_per_s", "model_tflops_per_s" (all devices together), "mfu"}.
  """
  values = dict(
    steps_per_second=steps_per_second,
    global_batch=global_batch,
    tokens_per_example=tokens_per_example,
    flops_per_step=flops_per_step,
    peak_flops_per_device=peak_flops_per_device,
    num_devices=num_devices,
  )
  bad = {
    k: v
    for k, v in values.items()
    if not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0)
  }
  if bad:
    raise ConfigError(f"throughput() needs positive finite numbers; got {bad}.")
  examples_per_s = steps_per_second * global_batch
  flops_per_s = steps_per_second * flops_per_step
  return {
    "examples_per_s": examples_per_s,
    "tokens_per_s": examples_per_s * tokens_per_example,
    "model_tflops_per_s": flops_per_s / 1e12,
    "mfu": flops_per_s / (peak_flops_per_device * num_devices),
  }


def tokens_per_example(
  config: ml_collections.ConfigDict, video_shape: tuple[int, ...] | None = None
) -> int:
  """Positions per video that the network's first level runs at.

  DiT (`model.name == "dit"`, `patch_size` (pt, ph, pw)): patch tokens, T/pt * H/ph * W/pw.
  UNet (`"unet3d"`, `patch_size` p, a space-to-depth stem): T * H/p * W/p.

  VAE (`"vae"`): pixels, T * H * W.

  Args:
    config: an experiment config (`config.data`, `config.model`).
    video_shape: `(T, H, W, C)` of what the network sees (latents for latent diffusion);
      default the config's pixel video.
  """
  data, model = config.data, config.model
  if model.name == "dit":
    patch = tuple(int(p) for p in model.patch_size)
  elif model.name == "unet3d":
    patch = (1, int(model.patch_size), int(model.patch_size))
  elif model.name == "vae":
    patch = (1, 1, 1)
  else:
    raise ConfigError(
      f"tokens_per_example knows model.name 'dit', 'unet3d' and 'vae', got {model.name!r}."
    )
  sizes = tuple(video_shape[:3]) if video_shape else (data.num_frames, data.height, data.width)
  if len(patch) != 3 or any(p < 1 or size % p for size, p in zip(sizes, patch)):
    raise ConfigError(
      f"model.patch_size {patch} (frames, rows, columns) must be positive and "
      f"divide the video's (num_frames, height, width) = {sizes}."
    )
  return math.prod(size // p for size, p in zip(sizes, patch))
