"""Tests for the video VAEs (jvdm.models.vae): causality, image compatibility, chunked and tiled
encode/decode, the training objective and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import bouncing_shapes_vae
from jvdm.config_validation import validate_config
from jvdm.data.pipeline import make_dataset
from jvdm.errors import ConfigError, ShapeError
from jvdm.builders import get_model
from jvdm.models.vae.autoencoder import VideoAutoencoder
from jvdm.models.vae.chunked import decode_in_chunks, encode_in_chunks
from jvdm.models.vae.latent_space import LatentSpace
from jvdm.training.state import TrainState
from jvdm.training.vae_objective import make_vae_train_step

TINY = dict(
  latent_channels=4,
  base_channels=8,
  channel_mults=(1, 2, 2),
  spatial_downsample=(True, True),
  temporal_downsample=(True, True),
  num_res_blocks=1,
  num_groups=4,
  head_dim=16,
)


@pytest.fixture(name="causal_vae", scope="module")
def fixture_causal_vae():
  model = VideoAutoencoder(**TINY)
  params = model.init(jax.random.key(0), jnp.zeros((1, 9, 16, 16, 3)))["params"]
  return model, params


def _video(key, frames=9, size=16):
  return jax.random.uniform(jax.random.key(key), (2, frames, size, size, 3), minval=-1, maxval=1)


def test_shapes_and_compression(causal_vae):
  model, params = causal_vae
  x = _video(1, frames=13)
  reconstruction, mean, logvar = model.apply({"params": params}, x)
  assert mean.shape == logvar.shape == (2, 4, 4, 4, 4)  # 1 + 12 / 4 frames, 16 / 4 pixels
  assert reconstruction.shape == x.shape
  assert model.latent_shape((13, 16, 16, 3)) == (4, 4, 4, 4)
  assert model.video_frames(4) == 13


def test_encoder_and_decoder_are_causal(causal_vae):
  """Changing frames 5.. changes no latent of frames 0..4 (latents 0 and 1), and changing
  latent 2 changes no decoded frame before 5."""
  model, params = causal_vae
  x = _video(2)
  changed = x.at[:, 5:].set(_video(3)[:, 5:])
  encode = lambda v: model.apply({"params": params}, v, method=model.encode)[0]
  before, after = encode(x), encode(changed)
  np.testing.assert_array_equal(before[:, :2], after[:, :2])
  assert np.abs(before[:, 2:] - after[:, 2:]).max() > 1e-3  # the test can fail
  decode = lambda z: model.apply({"params": params}, z, method=model.decode)
  z_changed = before.at[:, 2].add(1.0)
  np.testing.assert_array_equal(decode(before)[:, :5], decode(z_changed)[:, :5])
  assert np.abs(decode(before)[:, 5:] - decode(z_changed)[:, 5:]).max() > 1e-3


def test_one_frame_video_encodes_like_an_image(causal_vae):
  """An image is a one-frame video, and its latent is the first latent of any video starting
  with it (CV-VAE's image compatibility)."""
  model, params = causal_vae
  x = _video(4)
  encode = lambda v: model.apply({"params": params}, v, method=model.encode)[0]
  image_latent = encode(x[:, :1])
  assert image_latent.shape == (2, 1, 4, 4, 4)
  np.testing.assert_allclose(image_latent[:, 0], encode(x)[:, 0], atol=2e-6)
  decoded = model.apply({"params": params}, image_latent, method=model.decode)
  assert decoded.shape == (2, 1, 16, 16, 3)


@pytest.mark.parametrize("chunk_frames", [1, 3])  # 3: two full chunks of 3 and a rest of 2
def test_chunked_decode_equals_whole_decode(causal_vae, chunk_frames):
  model, params = causal_vae
  z = jax.random.normal(jax.random.key(5), (2, 9, 4, 4, 4))  # 33 frames
  whole = model.apply({"params": params}, z, method=model.decode)
  chunked = jax.jit(lambda p, z: decode_in_chunks(model, p, z, chunk_frames))(params, z)
  assert chunked.shape == whole.shape == (2, 33, 16, 16, 3)
  np.testing.assert_allclose(chunked, whole, atol=2e-5)


def test_chunked_encode_equals_whole_encode(causal_vae):
  model, params = causal_vae
  x = _video(6, frames=21)
  whole = model.apply({"params": params}, x, method=model.encode)
  chunked = encode_in_chunks(model, params, x, 8)  # frame 0, 8, 8, then a rest of 4
  for a, b in zip(chunked, whole):
    np.testing.assert_allclose(a, b, atol=2e-5)
  with pytest.raises(ConfigError, match="multiple of 4"):
    encode_in_chunks(model, params, x, 6)


def test_decoder_row_slices_give_the_same_video(causal_vae):
  """Feature slicing: the decoder's convs in 2 bands of rows, one after another."""
  model, params = causal_vae
  z = jax.random.normal(jax.random.key(9), (1, 3, 4, 4, 4))
  whole = model.apply({"params": params}, z, method=model.decode)
  sliced = model.clone(decoder_row_slices=2).apply({"params": params}, z, method=model.decode)
  np.testing.assert_allclose(sliced, whole, atol=2e-6)
  with pytest.raises(ConfigError, match="row_slices=3 does not divide"):
    model.clone(decoder_row_slices=3).apply({"params": params}, z, method=model.decode)


def test_temporal_decoder_vae():
  """The image-encoder / temporal-decoder VAE: frames encode independently, the decoder mixes
  frames, and chunked decoding runs chunks independently (SVD's decode_chunk_size)."""
  model = VideoAutoencoder(
    **{**TINY, "architecture": "temporal_decoder", "temporal_downsample": (False, False)}
  )
  x = _video(7, frames=6)
  params = model.init(jax.random.key(0), x[:1])["params"]
  mean, _ = model.apply({"params": params}, x, method=model.encode)
  assert mean.shape == (2, 6, 4, 4, 4)
  single, _ = model.apply({"params": params}, x[:, 3:4], method=model.encode)
  np.testing.assert_allclose(single[:, 0], mean[:, 3], atol=2e-6)  # per frame
  decode = lambda z: model.apply({"params": params}, z, method=model.decode)
  moved = decode(mean.at[:, 5].add(1.0))
  assert np.abs(moved[:, 4] - decode(mean)[:, 4]).max() > 1e-4  # the decoder is temporal
  chunked = decode_in_chunks(model, params, mean, 3)
  np.testing.assert_allclose(chunked[:, :3], decode(mean[:, :3]), atol=1e-5)
  np.testing.assert_allclose(chunked[:, 3:], decode(mean[:, 3:]), atol=1e-5)


def test_tiled_decode_equals_whole_decode():
  """64x64 latents in tiles of 48 latent pixels. With per-position RMSNorm and no attention the
  decoder is local (receptive radius 12), so tiles overlapping by twice that and cross-faded
  past it reproduce the whole decode, seams included."""
  model = VideoAutoencoder(
    **{
      **TINY,
      "channel_mults": (1, 2),
      "spatial_downsample": (True,),
      "temporal_downsample": (True,),
      "middle_attention": False,
    }
  )
  assert model.decoder_receptive_radius == 12
  z = jax.random.normal(jax.random.key(1), (1, 2, 64, 64, 4))
  params = model.init(jax.random.key(0), jnp.zeros((1, 1, 16, 16, 3)))["params"]
  whole = LatentSpace(model, params, shift=0.0, scale=1.0).decode(z)
  tiled = LatentSpace(model, params, shift=0.0, scale=1.0, decode_tile=48).decode(z)
  assert tiled.shape == whole.shape == (1, 3, 128, 128, 3)
  np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiled_encode_equals_whole_encode():
  """Pixel tiles overlapping by twice the encoder's receptive radius (2 x 18 pixels) reproduce
  the whole encode of the local VAE."""
  model = VideoAutoencoder(
    **{
      **TINY,
      "channel_mults": (1, 2),
      "spatial_downsample": (True,),
      "temporal_downsample": (True,),
      "middle_attention": False,
    }
  )
  assert model.encoder_receptive_radius == 18
  params = model.init(jax.random.key(0), jnp.zeros((1, 1, 16, 16, 3)))["params"]
  space = LatentSpace(model, params, shift=0.5, scale=2.0)
  x = _video(10, frames=3, size=96)
  tiled = space.encode_tiled(x, tile=72)
  np.testing.assert_allclose(tiled, space.encode(x), atol=1e-5)
  with pytest.raises(ConfigError, match="encoder's receptive overlap of 18"):
    space.encode_tiled(x, tile=60)


def test_tile_smaller_than_receptive_overlap_is_an_error(causal_vae):
  model, params = causal_vae
  space = LatentSpace(model, params, shift=0.0, scale=1.0, decode_tile=20)
  with pytest.raises(ConfigError, match="receptive overlap of 13"):
    space.decode(jnp.zeros((1, 2, 40, 40, 4)))


def test_bad_frame_counts_and_latents_are_errors(causal_vae):
  model, params = causal_vae
  with pytest.raises(ShapeError, match=r"1 \+ 4k frames \(1, 5, 9, 13"):
    model.apply({"params": params}, _video(8, frames=8), method=model.encode)
  with pytest.raises(ShapeError, match="latents"):
    model.apply({"params": params}, jnp.zeros((1, 2, 4, 4, 8)), method=model.decode)
  with pytest.raises(ConfigError, match="another VAE"):
    LatentSpace(model, params, 0.0, 1.0).decode(jnp.zeros((1, 2, 4, 4, 8)))
  config = bouncing_shapes_vae.get_config("tiny")
  config.data.num_frames = 6
  with pytest.raises(ShapeError, match="6 frames"):
    validate_config(config)
  with pytest.raises(ConfigError, match="temporal_downsample"):
    VideoAutoencoder(**{**TINY, "temporal_downsample": (True,)})


def test_tiny_vae_loss_falls_on_synthetic_data():
  config = bouncing_shapes_vae.get_config("tiny")
  model = get_model(config)
  batches = iter(make_dataset(config.data))
  tx = optax.adam(2e-3)
  x = next(batches)["video"]
  params = model.init(jax.random.key(0), jnp.zeros((1,) + x.shape[1:]))["params"]
  zero = jnp.zeros((), jnp.int32)
  state = TrainState(zero, params, params, tx.init(params), zero, zero)
  step = jax.jit(make_vae_train_step(model, tx, optax.constant_schedule(2e-3), 0.99))
  losses = []
  for _ in range(25):
    state, metrics = step(state, {"video": next(batches)["video"]}, jax.random.key(1))
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
  assert float(metrics["kl"]) > 0
