"""jvdm's Wan 2.1 VAE against diffusers' `AutoencoderKLWan` on the shipped tiny checkpoint
(scripts/make_pretrained_references.py): encode and decode, whole and chunk by chunk as
diffusers runs them, and the loader's errors."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jvdm.errors import CheckpointError, ConfigError, ShapeError
from jvdm.models.vae.chunked import decode_in_chunks, encode_in_chunks
from jvdm.pretrained.wan_vae import load_wan_vae

FIXTURE = (
  pathlib.Path(__file__).resolve().parent.parent
  / "fixtures"
  / "pretrained"
  / "wan_t2v_tiny"
  / "vae"
)
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _channels_last(a: np.ndarray) -> np.ndarray:
  return a.transpose(0, 2, 3, 4, 1)  # diffusers' [B, C, T, H, W] -> [B, T, H, W, C]


def _relative_error(got, expected) -> float:
  return float(np.abs(np.asarray(got) - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def vae():
  return load_wan_vae(FIXTURE)


@pytest.fixture(scope="module")
def reference():
  return {key: _channels_last(value) for key, value in np.load(FIXTURE / "io.npz").items()}


def test_encode_equals_diffusers_whole_and_in_chunks(vae, reference):
  """Whole video, and diffusers' schedule: frame 0, then 4 frames at a time."""
  model, params = vae.model, vae.params
  whole = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode))
  chunked = jax.jit(lambda p, x: encode_in_chunks(model, p, x, 4))
  for mean, logvar in (whole(params, reference["video"]), chunked(params, reference["video"])):
    assert mean.shape == (1, 3, 4, 4, 4)
    assert _relative_error(mean, reference["mean"]) <= 1e-4
    assert _relative_error(logvar, reference["logvar"]) <= 1e-4


def test_decode_equals_diffusers_whole_and_frame_by_frame(vae, reference):
  """diffusers decodes one latent frame at a time through the conv caches; the whole pass
  gives the same numbers."""
  model, params = vae.model, vae.params
  whole = jax.jit(lambda p, z: model.apply({"params": p}, z, method=model.decode))(
    params, reference["mean"]
  )
  by_frame = jax.jit(lambda p, z: decode_in_chunks(model, p, z, 1))(params, reference["mean"])
  assert whole.shape == reference["decoded"].shape == (1, 9, 32, 32, 3)
  assert _relative_error(whole, reference["decoded"]) <= 1e-4
  assert _relative_error(by_frame, reference["decoded"]) <= 1e-4
  assert _relative_error(by_frame, np.asarray(whole)) <= 1e-5


def test_latent_statistics_as_the_pipelines_use_them(vae, reference):
  z = reference["mean"]
  config = json.loads((FIXTURE / "config.json").read_text())
  inverse_std = 1.0 / np.asarray(config["latents_std"], np.float32)  # as WanPipeline does
  normalized = vae.normalize(z)
  np.testing.assert_allclose(normalized, (z - config["latents_mean"]) * inverse_std, rtol=1e-6)
  np.testing.assert_allclose(vae.denormalize(normalized), z, rtol=1e-5, atol=1e-6)
  assert np.abs(normalized - z).max() > 0.1  # the statistics are not the identity


def test_frame_count(vae, reference):
  with pytest.raises(ShapeError, match="takes 1 \\+ 4k frames"):
    vae.model.apply({"params": vae.params}, reference["video"][:, :8], method=vae.model.encode)


def test_bfloat16_shards(vae, tmp_path):
  """bfloat16 weights in two shards with their index: read as bfloat16 (or cast on request)."""
  folder = tmp_path / "vae"
  folder.mkdir()
  shutil.copy(FIXTURE / "config.json", folder)
  tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in load_file(FIXTURE / WEIGHTS).items()}
  shards = {"a.safetensors": {}, "b.safetensors": {}}
  for key, value in tensors.items():
    shards["a.safetensors" if key.startswith("decoder") else "b.safetensors"][key] = value
  for name, shard in shards.items():
    save_file(shard, folder / name)
  weight_map = {key: name for name, shard in shards.items() for key in shard}
  index = folder / "diffusion_pytorch_model.safetensors.index.json"
  index.write_text(json.dumps({"weight_map": weight_map}))
  stored = load_wan_vae(folder)
  assert {a.dtype for a in jax.tree.leaves(stored.params)} == {jnp.dtype(jnp.bfloat16)}
  assert stored.model.dtype == jnp.bfloat16
  cast = load_wan_vae(folder, dtype=jnp.float32)
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(a, b.astype(np.float32)), cast.params, stored.params
  )
  assert jax.tree.leaves(cast.params)[0].dtype == np.float32
  closest = jax.tree.map(lambda a: a.astype(ml_dtypes.bfloat16).astype(np.float32), vae.params)
  jax.tree.map(np.testing.assert_array_equal, cast.params, closest)


def test_bad_folders(tmp_path):
  with pytest.raises(CheckpointError, match="has no config.json"):
    load_wan_vae(tmp_path)
  folder = tmp_path / "vae"
  shutil.copytree(FIXTURE, folder)
  config = json.loads((folder / "config.json").read_text())
  for option, value in (("is_residual", True), ("patch_size", 2), ("attn_scales", [1.0])):
    (folder / "config.json").write_text(json.dumps({**config, option: value}))
    with pytest.raises(ConfigError, match=f"{option}="):
      load_wan_vae(folder)
  (folder / "config.json").write_text(json.dumps({**config, "clip_output": True}))
  with pytest.raises(ConfigError, match="does not know: \\['clip_output'\\]"):
    load_wan_vae(folder)
  (folder / "config.json").write_text(json.dumps({**config, "latents_std": [1.0] * 16}))
  with pytest.raises(ConfigError, match="latents_std has 16 values; expected z_dim=4"):
    load_wan_vae(folder)
  (folder / "config.json").write_text(json.dumps(config))

  tensors = load_file(FIXTURE / WEIGHTS)
  missing = "decoder.up_blocks.0.upsamplers.0.time_conv.weight"
  save_file({k: v for k, v in tensors.items() if k != missing}, folder / WEIGHTS)
  with pytest.raises(CheckpointError, match=f"lacks the Wan VAE params \\['{missing}'\\]"):
    load_wan_vae(folder)
  extra = "decoder.up_blocks.3.upsamplers.0.time_conv.weight"  # the last level has no upsampler
  save_file({**tensors, extra: tensors[missing]}, folder / WEIGHTS)
  with pytest.raises(CheckpointError, match=f"does not have: \\['{extra}'\\]"):
    load_wan_vae(folder)
  shutil.copy(FIXTURE / WEIGHTS, folder / WEIGHTS)
  (folder / "config.json").write_text(json.dumps({**config, "base_dim": 8}))
  with pytest.raises(
    CheckpointError, match=r"decoder.conv_in.bias has shape \(8,\).*expects \(16,\)"
  ):
    load_wan_vae(folder)
