"""The config a workdir was trained with: saved beside its checkpoints, checked on resume,
and read back by `sample.py` so sampling needs only `--workdir`."""

import json
import logging
from typing import Any

import ml_collections
from etils import epath

from jvdm.errors import CheckpointError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# Sections that decide the shapes of the params and the meaning of the network's output.
_MUST_MATCH = (
  "model",
  "diffusion",
  "data.num_frames",
  "data.height",
  "data.width",
  "data.channels",
)

# Fields added to the configs after workdirs were first written, with the value that
# reproduces how such a workdir was trained. `load_run_config` adds the missing ones, so the
# code reads every field directly. Keyed by the section that must exist (a model's fields
# also by its name).
FIELDS_ADDED = {
  "mesh": {"dcn_shape": {"data": 1, "fsdp": 1, "context": 1, "tensor": 1}},
  "train": {
    "microbatches": 1,
    "keep_checkpoint_every": 0,
    "max_consecutive_skipped": 10,
    "condition_dropout": 0.0,
  },
  "diffusion": {
    "process": "vp",
    "loss_weighting": "uniform",
    "min_snr_gamma": 5.0,
    "time_sampling": "uniform",
    "logit_mean": 0.0,
    "logit_std": 1.0,
    "context_frames": 0,
  },
  "sample": {
    "sampler": "ddim",
    "steps": 50,
    "eta": 0.0,
    "clip_x0": True,
    "frame_stagger": 0.0,
    "spacing": "uniform",
    "time_power": 1.0,
    "steps_offset": 0,
    "guidance_scale": 1.0,
    "chunk_frames": 4,
    "cache_frames": 16,
    "sink_frames": 0,
  },
  "latent": {
    "decode_chunk_frames": 0,
    "decode_tile": 0,
    "decode_tile_overlap": 0,
    "decode_row_slices": 1,
    "sample_posterior": True,
  },
  "model:unet3d": {
    "level_attention": "factorized",
    "space_time_rope": False,
    "causal_temporal_attention": False,
    "pixel_head_channels": 0,
  },
  "model:dit": {"cond_dim": 0, "condition": "none", "context_parallel": None},
}


def _as_tuples(value: Any) -> Any:
  """JSON lists back to tuples (configs use tuples for fixed-size fields and axis rules)."""
  if isinstance(value, list):
    return tuple(_as_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _as_tuples(v) for k, v in value.items()}
  return value


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
  if isinstance(value, dict):
    out = {}
    for key, item in value.items():
      out.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
    return out
  return {prefix: value}


def save_run_config(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
  path = epath.Path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.parent / (CONFIG_FILE + ".tmp")
  temporary.write_text(config.to_json(indent=2, sort_keys=True))
  temporary.replace(path)  # atomic: readers never see half a file


def _read_json(path: epath.Path) -> Any:
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise CheckpointError(
      f"{path} is not valid JSON ({error}): the file is damaged or truncated. It is the "
      "config the run was trained with; restore it, or train in a new --workdir."
    ) from error


def load_run_config(workdir: str | epath.Path) -> ml_collections.ConfigDict:
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise CheckpointError(
      f"{workdir} holds no {CONFIG_FILE}: it is not a jvdm workdir (expected the --workdir "
      "given to train.py)."
    )
  config = _as_tuples(_read_json(path))
  for section, fields in FIELDS_ADDED.items():
    section, _, model_name = section.partition(":")
    if section in config and (not model_name or config[section].get("name") == model_name):
      config[section] = {**fields, **config[section]}
  return ml_collections.ConfigDict(config)


def check_run_config_matches(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
  """Raises CheckpointError when `workdir` was trained with a config of other shapes or meaning."""
  if not (epath.Path(workdir) / CONFIG_FILE).exists():
    return
  old = _flatten(_read_json(epath.Path(workdir) / CONFIG_FILE), "")
  new = _flatten(json.loads(config.to_json()), "")
  differences, other_changes = [], []
  for key in sorted(set(old) | set(new)):
    if old.get(key) != new.get(key):
      change = f"{key}: workdir has {old.get(key)!r}, this config has {new.get(key)!r}"
      must_match = any(key == s or key.startswith(s + ".") for s in _MUST_MATCH)
      (differences if must_match else other_changes).append(change)
  if other_changes:
    logger.warning("Resuming %s with changed settings:\n  %s", workdir, "\n  ".join(other_changes))
  if differences:
    raise CheckpointError(
      f"The workdir {workdir} was trained with an incompatible config:\n  "
      + "\n  ".join(differences)
      + "\nUse a new --workdir, or the config it was trained with."
    )
