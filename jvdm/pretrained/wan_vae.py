"""Wan 2.1's VAE saved by diffusers (`AutoencoderKLWan.save_pretrained`: `config.json` and
safetensors, such as the `vae/` folder of a diffusers-format Wan 2.1 model), loaded as
`jvdm.models.vae.wan_vae.WanVAE`, its params and the latent statistics Wan's pipelines
normalize with.

A diffusers key maps to a jvdm param by rule: list indices join the name before them
(`decoder.up_blocks.0.resnets.1.conv1.weight` -> `decoder/up_blocks_0/resnets_1/conv1/kernel`),
torch's conv weights `[out, in, kt, kh, kw]` become `[kt, kh, kw, in, out]` kernels (2D
convs likewise, the attention's 1x1 convs Dense kernels `[in, out]`), norm gammas scales.
"""

import dataclasses
import functools
import pathlib
import re
from typing import Any, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import traverse_util

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.vae.chunked import decode_in_chunks
from jvdm.models.vae.wan_vae import WanVAE
from jvdm.pretrained.json_files import read_json
from jvdm.pretrained.safetensors_files import iter_tensors

# config.json keys of diffusers' AutoencoderKLWan; each is read or checked below.
_CONFIG_KEYS = {
  "base_dim",
  "decoder_base_dim",
  "z_dim",
  "dim_mult",
  "num_res_blocks",
  "attn_scales",
  "temperal_downsample",
  "dropout",  # a training option; inference has none
  "latents_mean",
  "latents_std",
  "is_residual",
  "in_channels",
  "out_channels",
  "patch_size",
  "scale_factor_temporal",  # the pipelines' frame arithmetic; the VAE does not read them
  "scale_factor_spatial",
}
# Those without a default here (diffusers' defaults are Wan 2.1's; a saved config holds them).
_REQUIRED_KEYS = (
  "base_dim",
  "z_dim",
  "dim_mult",
  "num_res_blocks",
  "temperal_downsample",
  "latents_mean",
  "latents_std",
)
_ATTENTION_PROJECTIONS = ("to_qkv", "proj")  # torch 1x1 Conv2d, jvdm Dense


@dataclasses.dataclass(frozen=True)
class PretrainedWanVAE:
  """The VAE, its params (numpy, in the stored dtype unless asked otherwise) and Wan's latent
  statistics, `[z_dim]` float32 each."""

  model: WanVAE
  params: dict[str, Any]
  latents_mean: np.ndarray
  latents_std: np.ndarray

  def normalize(self, latents: jnp.ndarray) -> jnp.ndarray:
    """`[..., z_dim]` VAE latents -> the DiT's latents, `(z - mean) * (1 / std)`, as
    `WanImageToVideoPipeline.prepare_latents` computes it."""
    return (latents - self.latents_mean) * (1.0 / self.latents_std)

  def denormalize(self, latents: jnp.ndarray) -> jnp.ndarray:
    """The DiT's latents -> VAE latents, `z / (1 / std) + mean`, as `WanPipeline` computes it
    before `vae.decode`."""
    return latents / (1.0 / self.latents_std) + self.latents_mean

  @functools.cached_property
  def _decode_video(self):
    """One video's normalized latents `[1, F, h, w, z]` -> pixels, one latent frame at a time
    through the causal caches (diffusers' `_decode`), jitted."""
    return jax.jit(lambda params, z: decode_in_chunks(self.model, params, self.denormalize(z), 1))

  def decode(self, latents, progress: bool = True) -> np.ndarray:
    """The DiT's latents `[N, F, h, w, z]` -> videos `[N, 1 + 4 (F - 1), H, W, 3]` in about
    [-1, 1], video by video (memory of one video's decode, one latent frame at a time)."""
    videos = [
      np.asarray(self._decode_video(self.params, jnp.asarray(z)[None])[0])
      for z in tqdm.tqdm(latents, desc="decoding", unit="video", disable=not progress)
    ]
    return np.stack(videos)


def wan_vae_from_config(config: dict[str, Any], path: str = "config.json") -> WanVAE:
  """The VAE a diffusers `AutoencoderKLWan` config describes; ConfigError for Wan 2.2's
  options (`is_residual`, `patch_size`) and others jvdm does not build."""
  class_name = config.get("_class_name", "AutoencoderKLWan")
  if class_name != "AutoencoderKLWan":
    raise ConfigError(f"{path} describes a {class_name}, not an AutoencoderKLWan.")
  unknown = sorted(k for k in config if not k.startswith("_") and k not in _CONFIG_KEYS)
  if unknown:
    raise ConfigError(f"{path} has options jvdm's Wan VAE does not know: {unknown}.")
  missing = [k for k in _REQUIRED_KEYS if k not in config]
  if missing:
    raise ConfigError(f"{path} lacks the AutoencoderKLWan options {missing}.")
  if config.get("is_residual", False):
    raise ConfigError(
      f"{path}: is_residual={config['is_residual']!r} (Wan 2.2's residual up and down blocks); "
      "jvdm builds Wan 2.1's VAE, is_residual=false."
    )
  if config.get("patch_size") is not None:
    raise ConfigError(
      f"{path}: patch_size={config['patch_size']!r} (Wan 2.2's patchified VAE); jvdm builds "
      "Wan 2.1's VAE, patch_size=null."
    )
  if config.get("attn_scales", []):
    raise ConfigError(
      f"{path}: attn_scales={config['attn_scales']!r}; jvdm builds Wan 2.1's VAE, whose levels "
      "have no attention (attn_scales=[])."
    )
  dim_mult = tuple(config["dim_mult"])
  temporal_downsample = tuple(bool(v) for v in config["temperal_downsample"])
  if len(temporal_downsample) != len(dim_mult) - 1:
    raise ConfigError(
      f"{path}: temperal_downsample={list(temporal_downsample)} needs one entry per level "
      f"transition, {len(dim_mult) - 1} for dim_mult={list(dim_mult)}."
    )
  for key in ("latents_mean", "latents_std"):
    if len(config[key]) != config["z_dim"]:
      raise ConfigError(
        f"{path}: {key} has {len(config[key])} values; expected z_dim={config['z_dim']}."
      )
  return WanVAE(
    base_dim=config["base_dim"],
    decoder_base_dim=config.get("decoder_base_dim"),
    z_dim=config["z_dim"],
    dim_mult=dim_mult,
    num_res_blocks=config["num_res_blocks"],
    temporal_downsample=temporal_downsample,
    in_channels=config.get("in_channels", 3),
    out_channels=config.get("out_channels", 3),
  )


def _jvdm_path(key: str) -> tuple[str, ...]:
  """`a.b.0.c.weight` -> `("a", "b_0", "c", "weight")`."""
  path: list[str] = []
  for part in key.split("."):
    if part.isdigit() and path:
      path[-1] = f"{path[-1]}_{part}"
    else:
      path.append(part)
  return tuple(path)


def _diffusers_key(path: tuple[str, ...]) -> str:
  """The inverse of `_jvdm_path` and the leaf renames, to name a missing param as diffusers
  names it."""
  leaf = {"kernel": "weight", "scale": "gamma"}.get(path[-1], path[-1])
  return ".".join([re.sub(r"_(\d+)$", r".\1", part) for part in path[:-1]] + [leaf])


def _convert(path: tuple[str, ...], array: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
  """A diffusers tensor -> (jvdm param path, array in jvdm's layout)."""
  module, leaf = path[:-1], path[-1]
  if leaf == "gamma":  # [C, 1, 1(, 1)]
    return module + ("scale",), array.reshape(-1)
  if leaf != "weight":
    return path, array
  if module and module[-1] in _ATTENTION_PROJECTIONS and array.ndim == 4:  # [O, I, 1, 1]
    array = array[:, :, 0, 0].T
  elif array.ndim == 5:  # Conv3d [O, I, kt, kh, kw] -> [kt, kh, kw, I, O]
    array = array.transpose(2, 3, 4, 1, 0)
  elif array.ndim == 4:  # Conv2d [O, I, kh, kw] -> [kh, kw, I, O]
    array = array.transpose(2, 3, 1, 0)
  return module + ("kernel",), np.ascontiguousarray(array)


def _param_shapes(model: WanVAE) -> dict[str, Any]:
  """The model's params as ShapeDtypeStructs, without logical-axis boxes (nothing computed)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  s = model.spatial_compression
  boxed = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 1, s, s, model.in_channels)))
  )["params"]
  return jax.tree.map(
    lambda x: x.unbox(apply_constraint=False) if is_box(x) else x, boxed, is_leaf=is_box
  )


def wan_vae_params(
  model: WanVAE,
  tensors: Iterable[tuple[str, np.ndarray]],
  source: str = "the checkpoint",
  dtype: Any = None,
) -> dict[str, Any]:
  """jvdm params from diffusers' AutoencoderKLWan keys, checked against the params `model`
  has: unknown or missing keys and wrong shapes are CheckpointErrors naming them. Arrays keep
  their stored dtype unless `dtype` is given."""
  expected = {
    path: leaf.shape for path, leaf in traverse_util.flatten_dict(_param_shapes(model)).items()
  }
  flat: dict[tuple[str, ...], np.ndarray] = {}
  unexpected = []
  for key, array in tensors:
    path, array = _convert(_jvdm_path(key), np.asarray(array))
    if path not in expected:
      unexpected.append(key)
      continue
    if array.shape != expected[path]:
      raise CheckpointError(
        f"{source}: {key} has shape {array.shape} in jvdm's layout; the VAE its config "
        f"describes expects {expected[path]}."
      )
    flat[path] = array if dtype is None else array.astype(dtype)
  if unexpected:
    raise CheckpointError(
      f"{source} has keys the Wan VAE its config describes does not have: {sorted(unexpected)}."
    )
  missing = sorted(_diffusers_key(path) for path in expected.keys() - flat.keys())
  if missing:
    raise CheckpointError(f"{source} lacks the Wan VAE params {missing}.")
  return traverse_util.unflatten_dict(flat)


def load_wan_vae(folder: str | pathlib.Path, dtype: Any = None) -> PretrainedWanVAE:
  """The VAE of a diffusers `AutoencoderKLWan` folder (`config.json` and
  `diffusion_pytorch_model.safetensors`, or shards with their index). Params keep their stored
  dtype (bfloat16 stays bfloat16) unless `dtype` is given; the module computes in that dtype."""
  folder = pathlib.Path(folder)
  config_path = folder / "config.json"
  config = read_json(config_path, "a diffusers model folder")
  model = wan_vae_from_config(config, str(config_path))
  params = wan_vae_params(model, iter_tensors(folder), str(folder), dtype)
  param_dtype = jax.tree.leaves(params)[0].dtype
  return PretrainedWanVAE(
    model=model.clone(dtype=param_dtype, param_dtype=param_dtype),
    params=params,
    latents_mean=np.asarray(config["latents_mean"], np.float32),
    latents_std=np.asarray(config["latents_std"], np.float32),
  )
