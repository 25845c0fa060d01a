"""End to end: train a tiny VAE, train latent diffusion on its latents (encoded on the fly, or
prepared once as a TFDS dataset), and sample pixel videos from it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_latent, bouncing_shapes_vae
from jvdm.config_validation import validate_config
from jvdm.data.prepare import prepare
from jvdm.data.synthetic import BouncingShapes
from jvdm.errors import ConfigError, ShapeError
from jvdm.builders import get_model
from jvdm.io.latent_statistics import LATENT_STATISTICS_FILE
from jvdm.sampling import sample_from_workdir
from jvdm.workdir import diffusion_video_shape, vae_encoder
from jvdm.training.loop import train_and_evaluate


@pytest.fixture(name="vae_workdir", scope="module")
def fixture_vae_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vae")
  train_and_evaluate(bouncing_shapes_vae.get_config("tiny"), str(workdir), progress=False)
  return workdir


def _latent_config(vae_workdir, **data):
  config = bouncing_shapes_latent.get_config("tiny")
  config.latent.vae_workdir = str(vae_workdir)
  for key, value in data.items():
    config.data[key] = value
  return config


def test_vae_training_writes_evaluation_and_latent_statistics(vae_workdir):
  statistics = json.loads((vae_workdir / LATENT_STATISTICS_FILE).read_text())
  assert statistics["step"] == 4 and statistics["scale"] > 0
  records = [json.loads(line) for line in (vae_workdir / "metrics.jsonl").read_text().splitlines()]
  evaluation = [r for r in records if "eval_psnr" in r][-1]
  assert evaluation["step"] == 4 and 0 < evaluation["eval_ssim"] <= 1
  assert (vae_workdir / "samples" / "reconstructions_step_0000004.mp4").exists()


def test_latent_diffusion_trains_and_samples_pixels(vae_workdir, tmp_path):
  workdir = tmp_path / "latent"
  train_and_evaluate(_latent_config(vae_workdir), str(workdir), progress=False)
  assert (workdir / "samples" / "step_0000004.mp4").exists()
  summary = sample_from_workdir(str(workdir), num_samples=2, progress=False)
  videos = np.load(summary["files"][2])["videos"]
  assert videos.shape == (2, 5, 16, 16, 3) and videos.dtype == np.uint8  # pixels, not latents
  chunked = sample_from_workdir(
    str(workdir),
    num_samples=2,
    progress=False,
    out=str(tmp_path / "chunked"),
    decode_settings={"decode_chunk_frames": 1},
  )
  chunked_videos = np.load(chunked["files"][2])["videos"]
  assert np.abs(chunked_videos.astype(int) - videos).max() <= 1  # exact up to rounding
  with pytest.raises(ShapeError, match="1 \\+ 4k"):
    sample_from_workdir(str(workdir), num_samples=1, num_frames=8, progress=False)
  with pytest.raises(ConfigError, match="holds a VAE"):
    sample_from_workdir(str(vae_workdir), num_samples=1, progress=False)


def test_latent_diffusion_on_prepared_latents(vae_workdir, tmp_path):
  """`python -m jvdm.data.prepare --vae_workdir` path: latents written once as a TFDS
  dataset, then read as float batches (normalized, not encoded again)."""
  source = BouncingShapes(num_frames=5, height=16, width=16, num_videos=16, min_size=3, max_size=5)
  prepared = prepare(
    source,
    output_dir=str(tmp_path / "tfds"),
    name="shape_latents",
    encode=vae_encoder(vae_workdir),
    encode_batch_size=8,
  )
  assert prepared.feature == "latents" and tuple(prepared.shape) == (2, 4, 4, 4)
  config = _latent_config(vae_workdir, name="tfds")
  config.data.tfds.update(name="shape_latents", data_dir=str(tmp_path / "tfds"), feature="latents")
  config.train.num_steps = 2
  state = train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  assert int(state.step) == 2


@pytest.mark.parametrize(
  "module, variant",
  [(bouncing_shapes_latent, v) for v in bouncing_shapes_latent.VARIANTS]
  + [(bouncing_shapes_vae, v) for v in bouncing_shapes_vae.VARIANTS],
)
def test_every_latent_and_vae_variant_builds(module, variant):
  """Module construction checks widths, groups and head sizes against each other."""
  get_model(module.get_config(variant))


def test_latent_dit_config_builds_on_the_latents(vae_workdir):
  config = bouncing_shapes_latent.get_config("dit")
  config.latent.vae_workdir = str(vae_workdir)
  config.data.update(num_frames=5, height=16, width=16)  # the tiny VAE's videos
  config.model.update(hidden_size=32, depth=1, num_heads=2)
  validate_config(config)
  model = get_model(config)
  latents = jnp.zeros((1,) + diffusion_video_shape(config))
  assert latents.shape == (1, 2, 4, 4, 4)
  params = model.init(jax.random.key(0), latents, jnp.zeros((1,)))["params"]
  assert model.apply({"params": params}, latents, jnp.zeros((1,))).shape == latents.shape


def test_latent_config_errors(vae_workdir, tmp_path):
  config = _latent_config(vae_workdir)
  config.latent.channels = 8
  with pytest.raises(ConfigError, match="has 4 latent channels"):
    validate_config(config)
  config = _latent_config(vae_workdir, num_frames=6)
  with pytest.raises(ShapeError, match="6 frames"):
    validate_config(config)
  config = _latent_config(tmp_path / "missing")
  with pytest.raises(Exception, match="not a jvdm workdir"):
    validate_config(config)
