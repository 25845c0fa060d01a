"""Model quality on the synthetic data's own ground truth: train from a fresh workdir, sample,
score, append one JSON row per sampling setting to benchmarks/results/quality.json.

  # the default run, as a new user gets it (`python train.py`), then 32 samples at seed 0
  python -m benchmarks.quality --label default
  # one change at a time, at a fixed budget in steps or in minutes of training
  python -m benchmarks.quality --label lr_1e-3 --set optim.learning_rate=1e-3 --steps 1000
  python -m benchmarks.quality --label patch2 --set model.patch_size=2 --minutes 10
  # several sampling settings of one trained model (one row each; keys of sample.py's flags)
  python -m benchmarks.quality --label default --sample "" --sample sampler=ddpm,steps=200
  # score an existing workdir again without training
  python -m benchmarks.quality --label resample --workdir runs/x --sample_only --sample steps=50
  # the results as README's table
  python -m benchmarks.quality --table

Each row holds the label, the config diff, steps and wall time of training, the sampling
settings, validity and each of its criteria (`jvdm.metrics.synthetic_video_validity`), the
colour-change rate (1 - colour_ok), continuous motion, and the distance of the samples' factor
distribution from real videos (`jvdm.metrics.factor_distribution`). The README's table of
ablations is made from these rows.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
import time

import jax

from benchmarks import common
from jvdm.sampling import sample_from_workdir
from jvdm.training.loop import train_and_evaluate

# sample.py flags a --sample setting may give, with their types.
_SAMPLE_KEYS = {
  "sampler": str,
  "spacing": str,
  "steps": int,
  "eta": float,
  "frame_stagger": float,
  "time_power": float,
  "guidance_scale": float,
}


class BenchmarkInputError(ValueError):
  """A bad argument: the message names what was given and what was expected."""


def parse_sample_setting(text: str) -> dict:
  """'sampler=ddpm,steps=200' -> {'sampler': 'ddpm', 'steps': 200}; '' -> {} (the config's)."""
  settings = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, sep, value = item.partition("=")
    if not sep or key not in _SAMPLE_KEYS:
      raise BenchmarkInputError(
        f"--sample {text!r}: expected KEY=VALUE pairs with KEY one of "
        f"{sorted(_SAMPLE_KEYS)}, got {item!r}."
      )
    try:
      settings[key] = _SAMPLE_KEYS[key](value)
    except ValueError as error:
      raise BenchmarkInputError(
        f"--sample {text!r}: {key} must be a {_SAMPLE_KEYS[key].__name__}, got {value!r}."
      ) from error
  return settings


def load_benchmark_config(name: str, variant: str, overrides: list[str]):
  """The config of configs/<name>.py:<variant> with `overrides`; BenchmarkInputError for an
  unknown module, variant or field."""
  try:
    module = importlib.import_module(f"configs.{name}")
  except ModuleNotFoundError as error:
    available = (
      sorted(f[:-3] for f in os.listdir("configs") if f.endswith(".py") and not f.startswith("_"))
      if os.path.isdir("configs")
      else []
    )
    raise BenchmarkInputError(f"Unknown config {name!r}; expected one of {available}.") from error
  try:
    config = module.get_config(variant)
  except ValueError as error:
    raise BenchmarkInputError(f"configs/{name}.py: {error}") from error
  try:
    return common.apply_overrides(config, overrides)
  except (ValueError, TypeError) as error:
    raise BenchmarkInputError(f"configs/{name}.py: {error}") from error


def check_budget(steps: int | None, minutes: float | None) -> None:
  """A budget must allow at least one training step."""
  if steps is not None and steps < 1:
    raise BenchmarkInputError(f"--steps must be >= 1 to train at all, got {steps}.")
  # Compiling the step alone takes 15-40 s on 2 CPU cores; the loop checks the clock after
  # each step, so a shorter budget would still run one step and misreport the budget.
  if minutes is not None and minutes < 1:
    raise BenchmarkInputError(
      f"--minutes {minutes} is too short to train one step after "
      "compiling it; expected at least 1 minute."
    )


def _git_commit() -> str:
  try:
    return subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _trained_steps(workdir: str) -> int:
  """The last step written to metrics.jsonl (the step training stopped at)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return max(json.loads(line)["step"] for line in f if line.strip())


def score_row(summary: dict) -> dict:
  """The figures of one sampling run (`sample_from_workdir`'s summary) for the results row."""
  metric = summary["synthetic_video_validity"]["generated"]
  row = {key: metric[key] for key in metric if key.endswith(("_fraction", "_px"))}
  row["colour_change_rate"] = 1.0 - metric["colour_ok_fraction"]
  for key, value in summary["synthetic_video_validity"].get("factor_distance", {}).items():
    row[key] = value
  return row


_TABLE_COLUMNS = (
  ("valid", "valid_fraction"),
  ("count", "count_ok_fraction"),
  ("colour kept", "colour_ok_fraction"),
  ("size", "size_ok_fraction"),
  ("square", "shape_ok_fraction"),
  ("motion law", "motion_ok_fraction"),
  ("background", "background_ok_fraction"),
  ("continuous motion", "continuous_motion_fraction"),
  ("motion error px (median)", "motion_error_median_px"),
  ("factor distance", "factor_distance"),
)


def _cell(row: dict, key: str) -> str:
  """One figure of the table; rows written before a column existed leave it empty."""
  if key not in row:
    return ""
  if key.endswith("_fraction"):
    return f"{row[key]:.0%}"
  return f"{row[key]:.{1 if key.endswith('_px') else 2}f}"


def markdown_table(rows: list[dict]) -> str:
  """The README's table of `rows` (results lines), in their order."""
  header = ["run", "change", "train steps", "train min", "sampling"] + [
    name for name, _ in _TABLE_COLUMNS
  ]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    sampling = row["sampling"]
    text = f"{sampling['sampler']} {sampling['steps']}, stagger {sampling['frame_stagger']:g}"
    if sampling.get("time_power", 1.0) != 1.0:
      text += f", power {sampling['time_power']:g}"
    minutes = "" if row["train_seconds"] is None else f"{row['train_seconds'] / 60:.1f}"
    variant = [] if row.get("variant", "default") == "default" else [f":{row['variant']}"]
    change = " ".join(variant + row["overrides"]) or "(none)"
    cells = [row["label"], change, str(row["train_steps"]), minutes, text]
    cells += [_cell(row, key) for _, key in _TABLE_COLUMNS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = common.parser("Quality: train, sample 32 videos, score against ground truth.", 1)
  parser.add_argument("--label", help="name of this row in the results table (required)")
  parser.add_argument(
    "--steps",
    type=int,
    default=None,
    help="training steps (sets train.num_steps); default the config's",
  )
  parser.add_argument(
    "--minutes",
    type=float,
    default=None,
    help="stop training after this many minutes (compilation included)",
  )
  parser.add_argument(
    "--sample",
    action="append",
    default=None,
    help="sampling setting KEY=VALUE,...; repeat for several rows; '' = the config's sampling",
  )
  parser.add_argument("--num_samples", type=int, default=32)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=None, help="default /tmp/jvdm_quality/<label>")
  parser.add_argument(
    "--sample_only", action="store_true", help="score an already trained --workdir without training"
  )
  parser.add_argument(
    "--table",
    action="store_true",
    help="print the results file as README's markdown table and exit",
  )
  args = parser.parse_args(argv)
  if args.table:
    path = args.out or os.path.join(common.RESULTS_DIR, "quality.json")
    with open(path) as f:
      print(markdown_table([json.loads(line) for line in f if line.strip()]))
    return
  try:
    if not args.label:
      raise BenchmarkInputError("--label is required: it names the row in the results table.")
    check_budget(args.steps, args.minutes)
    samplings = [parse_sample_setting(text) for text in (args.sample or [""])]
    workdir = args.workdir or os.path.join("/tmp", "jvdm_quality", args.label)
    overrides = list(args.set)
    if args.steps is not None:
      overrides.append(f"train.num_steps={args.steps}")
    config = load_benchmark_config(args.config, args.variant, overrides)
    if args.sample_only and not os.path.exists(os.path.join(workdir, "config.json")):
      raise BenchmarkInputError(f"--sample_only needs a trained --workdir; {workdir} has none.")
  except BenchmarkInputError as error:
    sys.exit(f"error: {error}")

  header = common.run_header("quality", args)
  header.update(
    label=args.label,
    commit=_git_commit(),
    num_samples=args.num_samples,
    seed=args.seed,
    minutes_budget=args.minutes,
  )
  train_seconds = None
  if not args.sample_only:
    if os.path.exists(workdir):  # every experiment starts from a fresh workdir
      shutil.rmtree(workdir)
    start = time.perf_counter()
    train_and_evaluate(
      config, workdir, stop_after_seconds=None if args.minutes is None else args.minutes * 60
    )
    train_seconds = time.perf_counter() - start
  header.update(
    train_steps=_trained_steps(workdir),
    train_seconds=train_seconds,
    num_steps_configured=config.train.num_steps,
  )
  for settings in samplings:
    start = time.perf_counter()
    summary = sample_from_workdir(
      workdir,
      num_samples=args.num_samples,
      seed=args.seed,
      out=os.path.join(
        workdir, "quality_samples", "_".join(f"{k}{v}" for k, v in settings.items()) or "config"
      ),
      progress=False,
      **settings,
    )
    row = dict(
      header,
      sampling={
        "sampler": summary["sampler"],
        "steps": summary["steps"],
        "frame_stagger": summary["frame_stagger"],
        "time_power": summary["time_power"],
        "spacing": summary["spacing"],
        **settings,
      },
      sample_seconds=time.perf_counter() - start,
      **score_row(summary),
    )
    common.report(row, args.out)


if __name__ == "__main__":
  jax.config.parse_flags_with_absl()
  main()
