"""Wan 2.1's DiT as a configuration of jvdm's `VideoDiT`, with its weights converted from
diffusers' `WanTransformer3DModel` keys or from the Wan repository's `WanModel` keys (the
layout of the CausVid and Self-Forcing checkpoints).

Everything Wan needs is a switch of `VideoDiT` (`modulation="table"`, `time_order="cos_sin"`,
`cond_projection`, `attention_bias`, `qk_norm`, `rope_pairs="interleaved"`,
`cross_attention_norm="affine"`, `mlp_dim`, `image_dim`), so per-frame time, causal masks with
the KV cache, FreeNoise/FreeLong, context parallelism and remat work on it unchanged.

Weights are read one tensor at a time and placed with the model's logical shardings
(`jvdm.pretrained.placement`).
"""

import dataclasses
import pathlib
import re
from typing import Any, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.dit import VideoDiT
from jvdm.parallel.axes import DEFAULT_RULES
from jvdm.pretrained.placement import Target, param_shardings, place_params
from jvdm.pretrained.json_files import read_json
from jvdm.pretrained.safetensors_files import iter_file_tensors, iter_tensors

DIFFUSERS_CLASS = "WanTransformer3DModel"
ORIGINAL_CLASS = "WanModel"
CLIP_IMAGE_DIM = 1280  # the Wan repository's image-to-video models: CLIP ViT-H/14 features


@dataclasses.dataclass(frozen=True)
class WanDiT:
  """The module and what a call to it takes besides the video and the timesteps."""

  model: VideoDiT
  in_channels: int
  text_dim: int
  image_dim: int  # 0: text-to-video


def _check_value(config: dict, key: str, allowed, path: str) -> None:
  if key in config and config[key] not in allowed:
    raise ConfigError(
      f"{path}: {key}={config[key]!r} is not supported; jvdm builds Wan 2.1's DiT with "
      f"{key} in {list(allowed)}."
    )


def wan_dit_from_config(
  config: dict[str, Any], path: str = "config.json", dtype: Any = jnp.float32, **overrides
) -> WanDiT:
  """The `VideoDiT` a Wan transformer `config.json` describes: diffusers'
  `WanTransformer3DModel` or the Wan repository's `WanModel`. `overrides` set other `VideoDiT`
  attributes (e.g. `causal=True`, `scan_layers=True`)."""
  class_name = config.get("_class_name")
  if class_name == ORIGINAL_CLASS:
    config = _diffusers_config_of_original(config, path)
  elif class_name != DIFFUSERS_CLASS:
    raise ConfigError(
      f"{path} describes a {class_name!r}, not Wan 2.1's transformer "
      f"({DIFFUSERS_CLASS} or {ORIGINAL_CLASS})."
    )
  _check_value(config, "qk_norm", ("rms_norm_across_heads", None), path)
  _check_value(config, "freq_dim", (256,), path)
  _check_value(config, "eps", (1e-6,), path)
  _check_value(config, "pos_embed_seq_len", (None,), path)  # Wan's first-last-frame model
  image_dim = config.get("image_dim") or 0
  inner = config["num_attention_heads"] * config["attention_head_dim"]
  if image_dim and config.get("added_kv_proj_dim") != inner:
    raise ConfigError(
      f"{path}: image_dim={image_dim} with added_kv_proj_dim="
      f"{config.get('added_kv_proj_dim')}; Wan's image cross-attention projects {inner} features."
    )
  model = VideoDiT(
    out_channels=config.get("out_channels") or config["in_channels"],
    patch_size=tuple(config["patch_size"]),
    hidden_size=inner,
    depth=config["num_layers"],
    num_heads=config["num_attention_heads"],
    mlp_dim=config["ffn_dim"],
    layout="full",
    position="rope",
    cond_dim=config["text_dim"],
    modulation="table",
    time_order="cos_sin",
    cond_projection=True,
    attention_bias=True,
    qk_norm=config.get("qk_norm") is not None,
    rope_pairs="interleaved",
    cross_attention_norm="affine" if config.get("cross_attn_norm", True) else "none",
    image_dim=image_dim,
    # On CPU, one head and one chunk of queries at a time is 2-3x faster than XLA's attention
    # at Wan's lengths (benchmarks/wan_dit_speed.py); elsewhere the backend's kernel.
    attention_implementation="chunked" if jax.default_backend() == "cpu" else None,
    dtype=dtype,
    param_dtype=dtype,
  ).clone(**overrides)
  return WanDiT(model, config["in_channels"], config["text_dim"], image_dim)


def _diffusers_config_of_original(config: dict[str, Any], path: str) -> dict[str, Any]:
  """The diffusers config of a Wan repository `config.json` (class `WanModel`)."""
  _check_value(config, "model_type", ("t2v", "i2v"), path)
  _check_value(config, "window_size", ([-1, -1], (-1, -1)), path)
  heads = config["num_heads"]
  return {
    "_class_name": DIFFUSERS_CLASS,
    "patch_size": config.get("patch_size", [1, 2, 2]),
    "num_attention_heads": heads,
    "attention_head_dim": config["dim"] // heads,
    "in_channels": config["in_dim"],
    "out_channels": config["out_dim"],
    "text_dim": config.get("text_dim", 4096),
    "freq_dim": config.get("freq_dim", 256),
    "ffn_dim": config["ffn_dim"],
    "num_layers": config["num_layers"],
    "cross_attn_norm": config.get("cross_attn_norm", True),
    "qk_norm": "rms_norm_across_heads" if config.get("qk_norm", True) else None,
    "eps": config.get("eps", 1e-6),
    "image_dim": CLIP_IMAGE_DIM if config.get("model_type") == "i2v" else None,
    "added_kv_proj_dim": config["dim"] if config.get("model_type") == "i2v" else None,
  }


# The Wan repository's key -> diffusers' (facts of diffusers' single-file converter).
_ORIGINAL_RENAMES = (
  (r"^time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
  (r"^time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
  (r"^text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
  (r"^text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
  (r"^time_projection\.1\.", "condition_embedder.time_proj."),
  (r"^img_emb\.proj\.0\.", "condition_embedder.image_embedder.norm1."),
  (r"^img_emb\.proj\.1\.", "condition_embedder.image_embedder.ff.net.0.proj."),
  (r"^img_emb\.proj\.3\.", "condition_embedder.image_embedder.ff.net.2."),
  (r"^img_emb\.proj\.4\.", "condition_embedder.image_embedder.norm2."),
  (r"^head\.modulation$", "scale_shift_table"),
  (r"^head\.head\.", "proj_out."),
  (r"\.modulation$", ".scale_shift_table"),
  (r"\.self_attn\.", ".attn1."),
  (r"\.cross_attn\.", ".attn2."),
  (r"\.o\.", ".to_out.0."),
  (r"\.([qkv])\.", r".to_\1."),
  (r"\.k_img\.", ".add_k_proj."),
  (r"\.v_img\.", ".add_v_proj."),
  (r"\.norm_k_img\.", ".norm_added_k."),
  (r"\.norm3\.", ".norm2."),  # the repository's norm3 is the cross-attention norm
  (r"\.ffn\.0\.", ".ffn.net.0.proj."),
  (r"\.ffn\.2\.", ".ffn.net.2."),
)
_ORIGINAL_PREFIXES = ("model.diffusion_model.", "model.")


def diffusers_key(key: str) -> str:
  """A Wan repository key (optionally under `model.` or `model.diffusion_model.`, as in
  CausVid and Self-Forcing checkpoints) as diffusers names it; diffusers' keys pass as they
  are."""
  if key.startswith(("condition_embedder.", "proj_out.", "patch_embedding.", "scale_shift_table")):
    return key
  for prefix in _ORIGINAL_PREFIXES:
    if key.startswith(prefix):
      key = key[len(prefix) :]
      break
  if key.startswith("blocks.") and (".attn1." in key or ".attn2." in key or ".ffn.net." in key):
    return key  # already diffusers' block keys
  for pattern, replacement in _ORIGINAL_RENAMES:
    key = re.sub(pattern, replacement, key)
  return key


def _linear(prefix: tuple[str, ...]):
  """diffusers' Linear weight [out, in] and bias -> a Dense kernel [in, out] and bias."""
  return {
    "weight": (Target(prefix + ("kernel",)), lambda a, s: np.asarray(a).T),
    "bias": (Target(prefix + ("bias",)), lambda a, s: a),
  }


def _heads(a, shape):
  """A projection's weight [N * D, C_in] (or bias [N * D]) in the layout of `shape`."""
  a = np.asarray(a)
  if a.ndim == 2:
    return a.T.reshape(a.shape[1], *shape[-2:])
  return a.reshape(shape[-2:])


def _block_conversions() -> dict[str, tuple[Target, Any]]:
  """diffusers' key after `blocks.{i}.` -> (target in the block, conversion(array, shape))."""
  table: dict[str, tuple[Target, Any]] = {
    "scale_shift_table": (Target(("scale_shift_table",)), lambda a, s: np.asarray(a).reshape(s)),
    "norm2.weight": (Target(("cross_attention_norm", "scale")), lambda a, s: a),
    "norm2.bias": (Target(("cross_attention_norm", "bias")), lambda a, s: a),
  }
  for name, part in (("to_q", 0), ("to_k", 1), ("to_v", 2)):
    table[f"attn1.{name}.weight"] = (Target(("attention_full", "qkv_kernel"), part, 1), _heads)
    table[f"attn1.{name}.bias"] = (Target(("attention_full", "qkv_bias"), part, 0), _heads)
  table["attn2.to_q.weight"] = (Target(("cross_attention", "q_kernel")), _heads)
  table["attn2.to_q.bias"] = (Target(("cross_attention", "q_bias")), _heads)
  for prefix, parts in (("kv", ("to_k", "to_v")), ("image_kv", ("add_k_proj", "add_v_proj"))):
    for part, name in enumerate(parts):
      table[f"attn2.{name}.weight"] = (
        Target(("cross_attention", f"{prefix}_kernel"), part, 1),
        _heads,
      )
      table[f"attn2.{name}.bias"] = (Target(("cross_attention", f"{prefix}_bias"), part, 0), _heads)
  norms = {
    "attn1.norm_q": ("attention_full", "query_norm"),
    "attn1.norm_k": ("attention_full", "key_norm"),
    "attn2.norm_q": ("cross_attention", "query_norm"),
    "attn2.norm_k": ("cross_attention", "kv_key_norm"),
    "attn2.norm_added_k": ("cross_attention", "image_kv_key_norm"),
  }
  for key, path in norms.items():
    table[f"{key}.weight"] = (Target(path + ("scale",)), lambda a, s: a)
  for attention in ("attn1", "attn2"):
    module = "attention_full" if attention == "attn1" else "cross_attention"
    table[f"{attention}.to_out.0.weight"] = (
      Target((module, "out_kernel")),
      lambda a, s: np.asarray(a).T.reshape(s),
    )
    table[f"{attention}.to_out.0.bias"] = (Target((module, "out_bias")), lambda a, s: a)
  for key, name in (("ffn.net.0.proj", "mlp_in"), ("ffn.net.2", "mlp_out")):
    for suffix, conversion in _linear((name,)).items():
      table[f"{key}.{suffix}"] = conversion
  return table


def _global_conversions() -> dict[str, tuple[Target, Any]]:
  """diffusers' keys outside the blocks -> (target, conversion(array, shape))."""
  table = {
    # Conv3d [C, c, pt, ph, pw] with kernel = stride = patch: a Dense on (pt ph pw c) patches.
    "patch_embedding.weight": (
      Target(("patch_embed", "kernel")),
      lambda a, s: np.asarray(a).transpose(2, 3, 4, 1, 0).reshape(s),
    ),
    "patch_embedding.bias": (Target(("patch_embed", "bias")), lambda a, s: a),
    "scale_shift_table": (
      Target(("final_scale_shift_table",)),
      lambda a, s: np.asarray(a).reshape(s),
    ),
    "condition_embedder.image_embedder.norm1.weight": (Target(("image_norm_in", "scale")), None),
    "condition_embedder.image_embedder.norm1.bias": (Target(("image_norm_in", "bias")), None),
    "condition_embedder.image_embedder.norm2.weight": (Target(("image_norm_out", "scale")), None),
    "condition_embedder.image_embedder.norm2.bias": (Target(("image_norm_out", "bias")), None),
  }
  linears = {
    "condition_embedder.time_embedder.linear_1": ("time_embedding", "dense_0"),
    "condition_embedder.time_embedder.linear_2": ("time_embedding", "dense_1"),
    "condition_embedder.time_proj": ("time_projection",),
    "condition_embedder.text_embedder.linear_1": ("cond_projection_in",),
    "condition_embedder.text_embedder.linear_2": ("cond_projection_out",),
    "condition_embedder.image_embedder.ff.net.0.proj": ("image_projection_in",),
    "condition_embedder.image_embedder.ff.net.2": ("image_projection_out",),
    "proj_out": ("unpatchify",),
  }
  for key, path in linears.items():
    for suffix, conversion in _linear(path).items():
      table[f"{key}.{suffix}"] = conversion
  return {k: (t, c or (lambda a, s: a)) for k, (t, c) in table.items()}


_BLOCK = _block_conversions()
_GLOBAL = _global_conversions()
_IGNORED = re.compile(r"(^|\.)norm_added_q\.")  # diffusers ignores it too (unused)


def wan_dit_targets(
  tensors: Iterable[tuple[str, np.ndarray]], scan_layers: bool = False
) -> Iterator[tuple[str, Target, Any]]:
  """(source key, target, conversion) for each tensor of a Wan DiT checkpoint in either key
  layout; CheckpointError names a key that is not Wan's."""
  for key, array in tensors:
    name = diffusers_key(key)
    if _IGNORED.search(name):
      continue
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if match and match.group(2) in _BLOCK:
      target, conversion = _BLOCK[match.group(2)]
      layer = int(match.group(1))
      if scan_layers:  # stacked params under "blocks", layer first
        target = Target(("blocks",) + target.path, target.part, target.axis)
        yield key, target, (layer, array, conversion)
      else:
        target = Target((f"block_{layer}",) + target.path, target.part, target.axis)
        yield key, target, (None, array, conversion)
    elif name in _GLOBAL:
      target, conversion = _GLOBAL[name]
      yield key, target, (None, array, conversion)
    else:
      raise CheckpointError(f"The checkpoint has a key Wan's DiT does not have: {key!r}.")


def load_wan_dit(
  folder: str | pathlib.Path,
  weights: str | pathlib.Path | None = None,
  *,
  dtype: Any = None,
  compute_dtype: Any = jnp.float32,
  mesh: Mesh | None = None,
  rules=DEFAULT_RULES,
  **overrides,
) -> tuple[WanDiT, dict[str, Any]]:
  """(the DiT, its params placed on devices) of a Wan transformer folder.

  Args:
    folder: a `transformer/` folder of a diffusers-format Wan model (or a Wan repository
      folder): its `config.json` and safetensors weights (one file or shards with their index).
    weights: other weights for the same config, in either key layout: a `.safetensors` file or
      a folder of them (e.g. a CausVid or Self-Forcing checkpoint saved as safetensors).
    dtype: the params' dtype; None keeps the stored one (bfloat16 stays bfloat16).
    compute_dtype: the dtype the network computes in.
    mesh, rules: place each param with its logical sharding on this mesh (FSDP, tensor
      parallel); None puts them on the default device.
    overrides: other `VideoDiT` attributes (`causal`, `scan_layers`, `remat`, ...).
  """
  config_path = pathlib.Path(folder) / "config.json"
  wan = wan_dit_from_config(read_json(config_path), str(config_path), compute_dtype, **overrides)
  patch = wan.model.patch_size
  example = dict(
    x=jnp.zeros((1, *patch, wan.in_channels)),
    t=jnp.zeros((1,)),
    cond=jnp.zeros((1, 1, wan.text_dim)),
    image=jnp.zeros((1, 1, wan.image_dim)) if wan.image_dim else None,
  )
  abstract, shardings = param_shardings(wan.model, mesh, rules, **example)
  source = pathlib.Path(weights or folder)
  tensors = iter_tensors(source) if source.is_dir() else iter_file_tensors(source)
  targets = wan_dit_targets(tensors, scan_layers=wan.model.scan_layers)
  return wan, place_params(targets, abstract, shardings, dtype, str(source))
