"""UMT5 encoders saved by transformers (`UMT5EncoderModel.save_pretrained`: `config.json` and
safetensors), such as the `text_encoder/` folder of a diffusers-format Wan 2.1 model, loaded as
`jvdm.models.umt5.UMT5Encoder` and its params."""

import json
import pathlib
import re
from typing import Any

import numpy as np
from flax import traverse_util

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.umt5 import UMT5Encoder
from jvdm.pretrained.safetensors_files import iter_tensors

# transformers' key (after "encoder.block.{i}.") -> (jvdm layer's param path, transposed).
_LAYER_KEYS = {
  "layer.0.layer_norm.weight": (("attention_norm", "scale"), False),
  "layer.0.SelfAttention.q.weight": (("query", "kernel"), True),
  "layer.0.SelfAttention.k.weight": (("key", "kernel"), True),
  "layer.0.SelfAttention.v.weight": (("value", "kernel"), True),
  "layer.0.SelfAttention.o.weight": (("out", "kernel"), True),
  "layer.0.SelfAttention.relative_attention_bias.weight": (("relative_bias",), False),
  "layer.1.layer_norm.weight": (("mlp_norm", "scale"), False),
  "layer.1.DenseReluDense.wi_0.weight": (("gate", "kernel"), True),
  "layer.1.DenseReluDense.wi_1.weight": (("up", "kernel"), True),
  "layer.1.DenseReluDense.wo.weight": (("down", "kernel"), True),
}
_GLOBAL_KEYS = {
  "shared.weight": ("token_embedding",),
  "encoder.embed_tokens.weight": ("token_embedding",),  # tied to shared.weight
  "encoder.final_layer_norm.weight": ("final_norm", "scale"),
}


def umt5_from_config(config: dict[str, Any], path: str = "config.json") -> UMT5Encoder:
  """The encoder a transformers UMT5 (or T5 v1.1) `config.json` describes."""
  if config.get("model_type") not in ("umt5", "t5"):
    raise ConfigError(f"{path} describes a {config.get('model_type')!r} model, not a UMT5 encoder.")
  if config.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
    raise ConfigError(
      f"{path}: feed_forward_proj={config['feed_forward_proj']!r}; the encoder implements "
      "UMT5's 'gated-gelu'."
    )
  return UMT5Encoder(
    vocab_size=config["vocab_size"],
    width=config["d_model"],
    depth=config["num_layers"],
    num_heads=config["num_heads"],
    head_dim=config["d_kv"],
    mlp_dim=config["d_ff"],
    num_buckets=config["relative_attention_num_buckets"],
    max_distance=config["relative_attention_max_distance"],
    epsilon=config["layer_norm_epsilon"],
  )


def umt5_params(tensors, depth: int, source: str = "the checkpoint") -> dict[str, Any]:
  """jvdm params from transformers' UMT5 encoder keys; (key, array) pairs in, a nested dict
  out. Unknown or missing keys are CheckpointErrors naming them."""
  flat: dict[tuple[str, ...], Any] = {}
  for key, array in tensors:
    match = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", key)
    if match and match.group(2) in _LAYER_KEYS:
      path, transposed = _LAYER_KEYS[match.group(2)]
      flat[(f"layer_{match.group(1)}",) + path] = np.asarray(array).T if transposed else array
    elif key in _GLOBAL_KEYS:
      flat[_GLOBAL_KEYS[key]] = array
    else:
      raise CheckpointError(f"{source} has a key the UMT5 encoder does not know: {key!r}.")
  expected = {("token_embedding",), ("final_norm", "scale")} | {
    (f"layer_{i}",) + path for i in range(depth) for path, _ in _LAYER_KEYS.values()
  }
  missing = sorted(".".join(path) for path in expected - set(flat))
  if missing:
    raise CheckpointError(f"{source} lacks the UMT5 params {missing}.")
  return traverse_util.unflatten_dict(flat)


def load_umt5(folder: str | pathlib.Path) -> tuple[UMT5Encoder, dict[str, Any]]:
  """(the encoder, its params as numpy arrays in their stored dtype) of a transformers UMT5
  folder."""
  folder = pathlib.Path(folder)
  config_path = folder / "config.json"
  if not config_path.exists():
    raise CheckpointError(f"{folder} has no config.json: not a transformers model folder.")
  model = umt5_from_config(json.loads(config_path.read_text()), str(config_path))
  return model, umt5_params(iter_tensors(folder), model.depth, str(folder))
