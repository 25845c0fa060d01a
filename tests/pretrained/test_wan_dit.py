"""Wan 2.1's DiT as a `VideoDiT` configuration against diffusers' `WanTransformer3DModel` on
the shipped tiny checkpoints (scripts/make_pretrained_references.py): text-to-video and
image-to-video, one timestep per video and one per latent frame; the Wan repository's key
layout, scanned layers and sharded placement give the same network; bad checkpoints are named."""

import functools
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.dit import VideoDiT
from jvdm.models.layers.kv_cache import KVCache
from jvdm.parallel.mesh import make_mesh
from jvdm.pretrained.wan_dit import load_wan_dit

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pretrained"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _outputs(wan, params, io, timesteps):
  """jvdm's output for the fixture's inputs, in diffusers' [B, C, T, H, W] layout."""
  video = jnp.asarray(io["video"].transpose(0, 2, 3, 4, 1))  # channels last
  image = jnp.asarray(io["image"]) if "image" in io else None
  apply = lambda p, x, t, cond, image: wan.model.apply({"params": p}, x, t, cond=cond, image=image)
  # diffusers' timesteps are in [0, 1000]; jvdm's network takes t in [0, 1] (x 1000 inside)
  t = jnp.asarray(timesteps, jnp.float32) / 1000
  out = jax.jit(apply)(params, video, t, jnp.asarray(io["text"]), image)
  return np.asarray(out).transpose(0, 4, 1, 2, 3)


def _relative_error(actual, expected):
  return np.abs(actual - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("name", ["wan_t2v_tiny/transformer", "wan_dit_i2v_tiny"])
def test_the_dit_equals_diffusers(name):
  wan, params = load_wan_dit(FIXTURES / name)
  io = np.load(FIXTURES / name / "io.npz")
  assert _relative_error(_outputs(wan, params, io, io["timestep"]), io["output"]) <= 1e-4
  # one timestep per latent frame (diffusers: per token, each frame's tokens sharing one)
  per_frame = _outputs(wan, params, io, io["frame_timesteps"])
  assert _relative_error(per_frame, io["per_frame_output"]) <= 1e-4


def _original_layout(name, folder):
  """The fixture's weights under the Wan repository's keys (`model.blocks.0.self_attn.q...`,
  checked against diffusers' converter when the fixture was made), in one file."""
  renames = json.loads((FIXTURES / name / "original_keys.json").read_text())
  tensors = load_file(FIXTURES / name / WEIGHTS)
  path = folder / "causvid_like.safetensors"
  save_file({original: tensors[key] for original, key in renames.items()}, path)
  return path


def test_the_original_wan_key_layout_gives_the_same_params(tmp_path):
  name = "wan_dit_i2v_tiny"  # has every key the text-to-video model has, and the image ones
  _, expected = load_wan_dit(FIXTURES / name)
  _, params = load_wan_dit(FIXTURES / name, weights=_original_layout(name, tmp_path))
  assert jax.tree.structure(params) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)


def test_a_wan_repository_config_builds_the_same_network(tmp_path):
  name = "wan_t2v_tiny/transformer"
  diffusers = json.loads((FIXTURES / name / "config.json").read_text())
  original = {  # WanModel's config.json names
    "_class_name": "WanModel",
    "model_type": "t2v",
    "patch_size": diffusers["patch_size"],
    "dim": diffusers["num_attention_heads"] * diffusers["attention_head_dim"],
    "num_heads": diffusers["num_attention_heads"],
    "in_dim": diffusers["in_channels"],
    "out_dim": diffusers["out_channels"],
    "text_dim": diffusers["text_dim"],
    "ffn_dim": diffusers["ffn_dim"],
    "freq_dim": 256,
    "num_layers": diffusers["num_layers"],
    "window_size": [-1, -1],
    "qk_norm": True,
    "cross_attn_norm": True,
    "eps": 1e-6,
  }
  (tmp_path / "config.json").write_text(json.dumps(original))
  _original_layout(name, tmp_path)
  wan, params = load_wan_dit(tmp_path, weights=tmp_path / "causvid_like.safetensors")
  io = np.load(FIXTURES / name / "io.npz")
  assert _relative_error(_outputs(wan, params, io, io["timestep"]), io["output"]) <= 1e-4


def test_scanned_layers_and_a_sharded_placement_compute_the_same():
  name = "wan_t2v_tiny/transformer"
  io = np.load(FIXTURES / name / "io.npz")
  wan, params = load_wan_dit(FIXTURES / name)
  expected = _outputs(wan, params, io, io["timestep"])

  scanned, scanned_params = load_wan_dit(FIXTURES / name, scan_layers=True)
  assert scanned_params["blocks"]["mlp_in"]["kernel"].shape == (2, 24, 40)  # [layers, ...]
  np.testing.assert_allclose(
    _outputs(scanned, scanned_params, io, io["timestep"]), expected, rtol=1e-5, atol=1e-5
  )

  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  sharded, sharded_params = load_wan_dit(FIXTURES / name, mesh=mesh)
  kernel = sharded_params["block_0"]["mlp_in"]["kernel"]  # (EMBED, MLP): fsdp x tensor
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert kernel.addressable_shards[0].data.shape == (12, 20)
  np.testing.assert_allclose(
    _outputs(sharded, sharded_params, io, io["timestep"]), expected, rtol=1e-5, atol=1e-5
  )


def test_bfloat16_weights_stay_bfloat16_unless_asked(tmp_path):
  name = "wan_t2v_tiny/transformer"
  shutil.copy(FIXTURES / name / "config.json", tmp_path)
  tensors = load_file(FIXTURES / name / WEIGHTS)
  save_file({k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()}, tmp_path / WEIGHTS)
  _, params = load_wan_dit(tmp_path)
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
  _, params = load_wan_dit(tmp_path, dtype=jnp.float32)
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


def test_bfloat16_compute_with_float32_params_stays_close_to_diffusers():
  # the attention biases are float32 params added to bfloat16 projections: they must not
  # promote the queries, keys or values (dot_product_attention wants one dtype)
  name = "wan_t2v_tiny/transformer"
  wan, params = load_wan_dit(FIXTURES / name, compute_dtype=jnp.bfloat16)
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  io = np.load(FIXTURES / name / "io.npz")
  assert _relative_error(_outputs(wan, params, io, io["timestep"]), io["output"]) <= 0.05


def _copy(tmp_path, name="wan_t2v_tiny/transformer"):
  folder = tmp_path / "transformer"
  shutil.copytree(FIXTURES / name, folder)
  return folder


def _edit_config(folder, **changes):
  config = json.loads((folder / "config.json").read_text())
  config.update(changes)
  (folder / "config.json").write_text(json.dumps(config))


def _edit_weights(folder, edit):
  tensors = load_file(folder / WEIGHTS)
  edit(tensors)
  save_file(tensors, folder / WEIGHTS)


@pytest.mark.parametrize(
  "change, error, message",
  [
    (dict(_class_name="UNet3DConditionModel"), ConfigError, "not Wan 2.1's transformer"),
    (dict(qk_norm="rms_norm"), ConfigError, "qk_norm='rms_norm' is not supported"),
    (dict(pos_embed_seq_len=514), ConfigError, "pos_embed_seq_len=514 is not supported"),
    # a third block: its 21 params (diffusers: 26 tensors, q, k, v fused) are missing
    (dict(num_layers=3), CheckpointError, "lacks 21 of the model.s params"),
    (
      dict(ffn_dim=48),
      CheckpointError,
      r"\(40,\), which does not fit param block_0/mlp_in/bias \(48,\)",
    ),
  ],
)
def test_a_config_that_does_not_fit_is_named(tmp_path, change, error, message):
  folder = _copy(tmp_path)
  _edit_config(folder, **change)
  with pytest.raises(error, match=message):
    load_wan_dit(folder)


def test_bad_weights_are_named(tmp_path):
  folder = _copy(tmp_path)
  _edit_weights(folder, lambda t: t.pop("blocks.1.attn1.to_k.weight"))
  with pytest.raises(CheckpointError, match=r"block_1/attention_full/qkv_kernel"):
    load_wan_dit(folder)

  folder = _copy(tmp_path / "b")
  _edit_weights(folder, lambda t: t.update({"blocks.0.attn1.lora_A.weight": np.zeros(2)}))
  with pytest.raises(CheckpointError, match="'blocks.0.attn1.lora_A.weight'"):
    load_wan_dit(folder)

  (folder / WEIGHTS).unlink()
  with pytest.raises(CheckpointError, match="holds no weights"):
    load_wan_dit(folder)
  (folder / "config.json").unlink()
  with pytest.raises(CheckpointError, match="has no config.json"):
    load_wan_dit(folder)


def test_sharded_weights_load_and_a_missing_shard_is_named(tmp_path):
  """Shards with their index, as diffusers writes a large model, give the same params."""
  folder = tmp_path / "transformer"
  folder.mkdir()
  shutil.copy(FIXTURES / "wan_t2v_tiny/transformer" / "config.json", folder)
  tensors = load_file(FIXTURES / "wan_t2v_tiny/transformer" / WEIGHTS)
  keys = sorted(tensors)
  shards = {
    "model-00001-of-00002.safetensors": keys[::2],
    "model-00002-of-00002.safetensors": keys[1::2],
  }
  weight_map = {}
  for name, shard_keys in shards.items():
    save_file({k: tensors[k] for k in shard_keys}, folder / name)
    weight_map.update({k: name for k in shard_keys})
  index = {"metadata": {}, "weight_map": weight_map}
  (folder / f"{WEIGHTS}.index.json").write_text(json.dumps(index))
  _, params = load_wan_dit(folder)
  _, expected = load_wan_dit(FIXTURES / "wan_t2v_tiny/transformer")
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)
  (folder / "model-00002-of-00002.safetensors").unlink()
  with pytest.raises(CheckpointError, match="shards that are missing: .*model-00002-of-00002"):
    load_wan_dit(folder)


def test_a_causal_wan_dit_with_the_kv_cache_equals_its_full_pass():
  """CausVid-style generation on Wan's layout: frame by frame with the KV cache (keys after
  the qk-norm and the interleaved RoPE, biases included) equals the whole causal pass."""
  name = "wan_t2v_tiny/transformer"
  io = np.load(FIXTURES / name / "io.npz")
  wan, params = load_wan_dit(FIXTURES / name, causal=True)
  video = jnp.asarray(io["video"].transpose(0, 2, 3, 4, 1))  # [2, 3, 4, 6, 4]
  t = jnp.asarray(io["frame_timesteps"], jnp.float32) / 1000  # one time per frame
  text = jnp.asarray(io["text"])
  full = wan.model.apply({"params": params}, video, t, cond=text)
  cache = KVCache.create(
    num_layers=2, batch=2, capacity=3, tokens_per_frame=6, num_heads=2, head_dim=12
  )
  with_cache = jax.jit(functools.partial(wan.model.apply, method=VideoDiT.with_cache))
  chunks = []
  for frame in range(3):
    chunk = with_cache(
      {"params": params}, video[:, frame : frame + 1], t[:, frame : frame + 1], cache, frame, text
    )
    cache = cache.write(chunk.keys, chunk.values, frame)
    chunks.append(chunk.video)
  np.testing.assert_allclose(jnp.concatenate(chunks, axis=1), full, rtol=1e-5, atol=1e-5)
  # and causal it is: the first frame's output is that of the first frame alone
  alone = wan.model.apply({"params": params}, video[:, :1], t[:, :1], cond=text)
  np.testing.assert_allclose(full[:, :1], alone, rtol=1e-5, atol=1e-5)
  assert not np.allclose(
    full[:, 1:],
    wan.model.clone(causal=False).apply({"params": params}, video, t, cond=text)[:, 1:],
    atol=1e-3,
  )
