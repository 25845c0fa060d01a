"""UMT5 encoders saved by transformers (`UMT5EncoderModel.save_pretrained`: `config.json` and
safetensors), such as the `text_encoder/` folder of a diffusers-format Wan 2.1 model, loaded as
`jvdm.models.umt5.UMT5Encoder` and its params."""

import pathlib
import re
from typing import Any

import numpy as np
import jax.numpy as jnp
from jax.sharding import Mesh

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.umt5 import UMT5Encoder
from jvdm.parallel.axes import DEFAULT_RULES
from jvdm.pretrained.placement import Target, param_shardings, place_params
from jvdm.pretrained.json_files import read_json
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


def umt5_targets(tensors, source: str = "the checkpoint"):
  """(key, target, (None, array, conversion)) per tensor of transformers' UMT5 encoder keys,
  for `jvdm.pretrained.placement.place_params`; an unknown key is a CheckpointError."""
  as_stored = lambda a, shape: a
  transposed = lambda a, shape: np.asarray(a).T
  for key, array in tensors:
    match = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", key)
    if match and match.group(2) in _LAYER_KEYS:
      path, transpose = _LAYER_KEYS[match.group(2)]
      target = Target((f"layer_{match.group(1)}",) + path)
      yield key, target, (None, array, transposed if transpose else as_stored)
    elif key in _GLOBAL_KEYS:
      yield key, Target(_GLOBAL_KEYS[key]), (None, array, as_stored)
    else:
      raise CheckpointError(f"{source} has a key the UMT5 encoder does not know: {key!r}.")


def load_umt5(
  folder: str | pathlib.Path, *, dtype: Any = None, mesh: Mesh | None = None, rules=DEFAULT_RULES
) -> tuple[UMT5Encoder, dict[str, Any]]:
  """(the encoder, its params placed on devices) of a transformers UMT5 folder; `dtype`,
  `mesh` and `rules` as `jvdm.pretrained.wan_dit.load_wan_dit`'s."""
  folder = pathlib.Path(folder)
  config_path = folder / "config.json"
  config = read_json(config_path, "a transformers model folder")
  model = umt5_from_config(config, str(config_path))
  example = (jnp.zeros((1, 1), jnp.int32), jnp.ones((1, 1), jnp.int32))
  abstract, shardings = param_shardings(model, mesh, rules, *example)
  targets = _tied_once(umt5_targets(iter_tensors(folder), str(folder)))
  return model, place_params(targets, abstract, shardings, dtype, str(folder))


def _tied_once(targets):
  """`shared.weight` and `encoder.embed_tokens.weight` are one tied tensor: place it once."""
  seen = set()
  for key, target, value in targets:
    if target.path in seen and target.path == _GLOBAL_KEYS["shared.weight"]:
      continue
    seen.add(target.path)
    yield key, target, value
