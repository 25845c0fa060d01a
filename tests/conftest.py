"""Test setup: 8 simulated CPU devices (set before jax is imported)."""

import os

# The test programs are tiny: compiling them costs far more than running them, and LLVM's
# optimization passes are half of the compile time (measured on the tiny train step: 10.3 s ->
# 5.9 s). Subprocesses (train.py, sample.py, the multi-host workers) inherit the flags.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "")
  + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Many tests build the same tiny model in fresh closures; the persistent cache lets the
# second compile of an identical program be a disk read.
jax.config.update(
  "jax_compilation_cache_dir",
  os.environ.get(
    "JVDM_TEST_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "jvdm_test_xla_cache")
  ),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
