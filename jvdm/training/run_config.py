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
_MUST_MATCH = ("model", "diffusion", "data.num_frames", "data.height", "data.width", "data.channels")


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


def load_run_config(workdir: str | epath.Path) -> ml_collections.ConfigDict:
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise CheckpointError(
        f"{workdir} holds no {CONFIG_FILE}: it is not a jvdm workdir (expected the --workdir "
        "given to train.py).")
  return ml_collections.ConfigDict(_as_tuples(json.loads(path.read_text())))


def check_run_config_matches(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
  """Raises CheckpointError when `workdir` was trained with a config of other shapes or meaning."""
  if not (epath.Path(workdir) / CONFIG_FILE).exists():
    return
  old = _flatten(json.loads((epath.Path(workdir) / CONFIG_FILE).read_text()), "")
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
        f"The workdir {workdir} was trained with an incompatible config:\n  " +
        "\n  ".join(differences) + "\nUse a new --workdir, or the config it was trained with.")
