"""The environment of the tests' subprocesses (train.py, sample.py, the multi-host workers)."""

import os


def cpu_environment(num_devices: int, **variables: str) -> dict[str, str]:
  """This process's environment on `num_devices` CPU devices, keeping the other XLA flags
  (the compile settings of tests/conftest.py), plus `variables`."""
  flags = [
    flag
    for flag in os.environ.get("XLA_FLAGS", "").split()
    if not flag.startswith("--xla_force_host_platform_device_count")
  ]
  flags.append(f"--xla_force_host_platform_device_count={num_devices}")
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags), **variables)
