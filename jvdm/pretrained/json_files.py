"""The JSON files of a model folder (`config.json`, `model_index.json`, a scheduler's or an
image processor's config), read with errors that name the file."""

import json
import pathlib
from typing import Any

from jvdm.errors import CheckpointError


def read_json(path: str | pathlib.Path, folder_kind: str = "a model folder") -> dict[str, Any]:
  """The contents of `path`; CheckpointError when it is missing (`folder_kind` says what the
  folder should have been) or not valid JSON."""
  path = pathlib.Path(path)
  if not path.exists():
    raise CheckpointError(f"{path.parent} has no {path.name}: not {folder_kind}.")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise CheckpointError(f"{path} is not valid JSON: {error}.") from error
