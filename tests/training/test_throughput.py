"""Tests of jvdm.training.throughput: peak table, FLOP counts, throughput arithmetic."""

import math
import types

import jax
import jax.numpy as jnp
import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.errors import ConfigError, JvdmError
from jvdm.training import throughput


def fake_device(device_kind, platform):
  return types.SimpleNamespace(device_kind=device_kind, platform=platform)


@pytest.mark.parametrize(
  "device_kind, dtype, expected",
  [
    ("TPU v4", "bfloat16", 275e12),
    ("TPU v5 lite", jnp.bfloat16, 197e12),
    ("TPU v6 lite", "bfloat16", 918e12),
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5e12),
    ("NVIDIA H100 PCIe", "tensorfloat32", 378e12),
    ("NVIDIA A100-SXM4-80GB", "float32", 19.5e12),
    ("NVIDIA A100 80GB PCIe", "bfloat16", 312e12),
  ],
)
def test_device_peak_flops_from_table(device_kind, dtype, expected):
  platform = "tpu" if device_kind.startswith("TPU") else "gpu"
  assert throughput.device_peak_flops(fake_device(device_kind, platform), dtype) == (
    expected,
    "table",
  )


def test_device_peak_flops_measures_unlisted_devices_once(monkeypatch):
  calls = []
  monkeypatch.setattr(throughput, "_MEASURED", {})
  monkeypatch.setattr(
    throughput, "measure_matmul_flops", lambda dtype: calls.append(dtype) or 3.5e10
  )
  cpu = jax.devices()[0]
  for _ in range(2):
    assert throughput.device_peak_flops(cpu, "float32") == (3.5e10, "measured matmul")
  assert calls == ["float32"]


def test_matmul_dtype_follows_default_precision():
  assert throughput.matmul_dtype("float32", fake_device("TPU v4", "tpu")) == "bfloat16"
  assert throughput.matmul_dtype("float32", fake_device("NVIDIA L4", "gpu")) == "tensorfloat32"
  assert throughput.matmul_dtype("bfloat16", fake_device("NVIDIA L4", "gpu")) == "bfloat16"
  assert throughput.matmul_dtype("float32", fake_device("cpu", "cpu")) == "float32"
  with pytest.raises(ConfigError, match="float17"):
    throughput.matmul_dtype("float17")


def test_throughput_arithmetic():
  # 4 s a step of 12 videos of 300 tokens: 3 videos and 900 tokens a second. 8 TFLOP a step is
  # 2 TFLOP/s, against 2 devices of 4 TFLOP/s each: MFU 0.25.
  figures = throughput.throughput(
    steps_per_second=0.25,
    global_batch=12,
    tokens_per_example=300,
    flops_per_step=8e12,
    peak_flops_per_device=4e12,
    num_devices=2,
  )
  assert figures == pytest.approx(
    {"examples_per_s": 3.0, "tokens_per_s": 900.0, "model_tflops_per_s": 2.0, "mfu": 0.25}
  )


@pytest.mark.parametrize(
  "name, value",
  [("global_batch", 0), ("peak_flops_per_device", -1.0), ("flops_per_step", math.nan)],
)
def test_throughput_rejects_non_positive_inputs(name, value):
  kwargs = dict(
    steps_per_second=1.0,
    global_batch=8,
    tokens_per_example=64,
    flops_per_step=1e9,
    peak_flops_per_device=1e12,
    num_devices=1,
  )
  kwargs[name] = value
  with pytest.raises(ConfigError, match=f"{name}"):
    throughput.throughput(**kwargs)


def test_step_flops_of_a_matmul_is_two_m_n_k():
  m, k, n = 24, 40, 56
  compiled = jax.jit(jnp.matmul).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
  assert throughput.step_flops(compiled) == 107_520  # 2 * 24 * 40 * 56


def test_step_flops_needs_a_compiled_step():
  with pytest.raises(JvdmError, match="compiled"):
    throughput.step_flops(jax.jit(jnp.matmul))


def test_tokens_per_example():
  # Tiny DiT: 4 frames of 16x16 in 1x4x4 patches = 4 * 4 * 4.
  assert throughput.tokens_per_example(bouncing_shapes_dit.get_config("tiny")) == 64
  # Caption DiT: 16 frames of 32x32 in 2x4x4 patches = 8 * 8 * 8.
  assert throughput.tokens_per_example(bouncing_shapes_dit.get_config("caption")) == 512
  # Tiny UNet: patch 1, 4 frames of 16x16 = 4 * 16 * 16.
  assert throughput.tokens_per_example(bouncing_shapes_unet.get_config("tiny")) == 1024
  # Default UNet: 4x4 space-to-depth, 16 frames of 32x32 = 16 * 8 * 8.
  assert throughput.tokens_per_example(bouncing_shapes_unet.get_config()) == 1024


def test_tokens_per_example_rejects_bad_configs():
  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.patch_size = (1, 3, 4)
  with pytest.raises(ConfigError, match=r"\(1, 3, 4\)"):
    throughput.tokens_per_example(config)
  with config.unlocked():
    config.model.name = "gan"
  with pytest.raises(ConfigError, match="'gan'"):
    throughput.tokens_per_example(config)


def test_measure_matmul_flops_is_positive_and_finite():
  flops = throughput.measure_matmul_flops(size=64, repeats=2)
  assert math.isfinite(flops) and flops > 0
