"""What every benchmark script shares: config overrides from the command line, the machine
description, and appending one JSON line per run to benchmarks/results/<name>.json."""

import argparse
import ast
import importlib
import json
import os
import platform
import subprocess

import jax
import ml_collections

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]):
  """Applies `a.b=value` strings (values parsed as Python literals when they are); ValueError
  for an item that is not FIELD=VALUE with FIELD a field of the config."""
  config.unlock()
  for item in overrides:
    dotted, sep, value = item.partition("=")
    node = config
    *parents, leaf = dotted.split(".")
    for key in parents + [leaf]:
      if not sep or not hasattr(node, "keys") or key not in node:
        raise ValueError(
          f"--set {item!r}: expected FIELD=VALUE with FIELD a field of the "
          "config (e.g. optim.learning_rate=1e-3)."
        )
      if key != leaf:
        node = node[key]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    node[leaf] = value
  config.lock()
  return config


def parser(
  description: str,
  default_repeats: int,
  default_config: str = "bouncing_shapes_unet",
  default_variant: str = "default",
) -> argparse.ArgumentParser:
  """The arguments every benchmark takes: --config, --variant, --set a.b=value, --repeats, --out."""
  result = argparse.ArgumentParser(description=description)
  result.add_argument("--config", default=default_config, help="a module of configs/")
  result.add_argument("--variant", default=default_variant)
  result.add_argument("--set", action="append", default=[], help="config override a.b=value")
  result.add_argument("--repeats", type=int, default=default_repeats)
  result.add_argument(
    "--out", default=None, help="JSON lines file (default benchmarks/results/<benchmark>.json)"
  )
  return result


def load_config(args: argparse.Namespace) -> ml_collections.ConfigDict:
  module = importlib.import_module(f"configs.{args.config}")
  return apply_overrides(module.get_config(args.variant), args.set)


def run_header(name: str, args: argparse.Namespace) -> dict:
  """The fields that say what ran where."""
  return {
    "benchmark": name,
    "config": args.config,
    "variant": args.variant,
    "overrides": args.set,
    "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
    "cpu_count": os.cpu_count(),
    "machine": platform.machine(),
  }


def git_commit() -> str | None:
  """`git describe --always --dirty` of the code being measured, or None outside a checkout."""
  try:
    return subprocess.run(
      ["git", "describe", "--always", "--dirty"],
      cwd=os.path.dirname(__file__),
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def report(result: dict, out: str | None) -> None:
  """Prints `result` as one JSON line and appends it to `out`."""
  out = out or os.path.join(RESULTS_DIR, f"{result['benchmark']}.json")
  print(json.dumps(result))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "a") as f:
    f.write(json.dumps(result) + "\n")
