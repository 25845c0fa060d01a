"""Wan 2.1 image-to-video on the tiny diffusers-format folder
(scripts/make_pretrained_references.py, `wan_i2v_tiny/`): the CLIP image encoder and its
preprocessing against transformers, the whole pipeline against diffusers'
`WanImageToVideoPipeline` from the same image and initial latents, and what bad requests and
folders say."""

import json
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from PIL import Image

import jvdm.pretrained
import sample
from jvdm.errors import CheckpointError, ConfigError, ShapeError
from jvdm.pretrained import wan_pipeline
from jvdm.pretrained.clip_vision import load_clip_preprocessing, load_clip_vision
from jvdm.pretrained.safetensors_files import iter_tensors
from jvdm.pretrained.images import image_to_video_frame
from jvdm.pretrained.wan_i2v_pipeline import WanImageToVideoPipeline, first_frame_mask

FOLDER = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pretrained" / "wan_i2v_tiny"
ENCODER_IO = np.load(FOLDER / "image_encoder" / "io.npz")
REFERENCE = np.load(FOLDER / "pipeline.npz")
SIZE = dict(
  num_frames=int(REFERENCE["num_frames"]),
  height=int(REFERENCE["height"]),
  width=int(REFERENCE["width"]),
)


def _relative_error(actual, expected):
  return np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max()


@pytest.fixture(name="pipeline", scope="module")
def fixture_pipeline():
  return jvdm.pretrained.load(FOLDER)


def test_clip_preprocessing_equals_transformers():
  preprocessing = load_clip_preprocessing(FOLDER / "image_processor")
  pixels = preprocessing([ENCODER_IO["image_0"], ENCODER_IO["image_1"]])  # 40x56 and 30x20
  expected = ENCODER_IO["pixel_values"].transpose(0, 2, 3, 1)  # [N, 3, S, S] -> last
  np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-6)  # PIL's bicubic, as theirs


@pytest.mark.parametrize("activation", ["gelu", "quick_gelu"])
def test_clip_encoder_equals_transformers_penultimate_hidden_states(activation):
  model, params = load_clip_vision(FOLDER / "image_encoder")
  assert model.num_layers == 2  # of 3: hidden_states[-2] is the last layer's input
  pixels = jnp.asarray(ENCODER_IO["pixel_values"].transpose(0, 2, 3, 1))
  hidden = model.clone(activation=activation).apply({"params": params}, pixels)
  expected = ENCODER_IO["hidden" if activation == "gelu" else "hidden_quick_gelu"]
  assert _relative_error(hidden, expected) <= 1e-4


def test_the_first_frame_and_its_features_equal_diffusers(pipeline):
  frame = image_to_video_frame(REFERENCE["image"], SIZE["height"], SIZE["width"])  # Lanczos
  np.testing.assert_allclose(frame, REFERENCE["resized_image"][0].transpose(1, 2, 0), atol=1e-6)
  features = pipeline.images([REFERENCE["image"]])
  assert _relative_error(features, REFERENCE["image_embeds"]) <= 1e-4


def test_the_mask_marks_the_first_latent_frame():
  mask = first_frame_mask((3, 4, 6))
  assert mask.shape == (3, 4, 6, 4)
  assert (mask[0] == 1).all() and (mask[1:] == 0).all()


def test_the_pipeline_equals_diffusers_image_to_video_pipeline(pipeline):
  assert isinstance(pipeline, WanImageToVideoPipeline)
  latents = pipeline.latents(
    [str(p) for p in REFERENCE["prompts"]],
    REFERENCE["image"],  # one image for both prompts, as diffusers
    str(REFERENCE["negative_prompt"]),
    num_steps=int(REFERENCE["num_inference_steps"]),
    guidance_scale=float(REFERENCE["guidance_scale"]),
    latents=REFERENCE["initial_latents"].transpose(0, 2, 3, 4, 1),  # [B, C, F, h, w] -> last
    progress=False,
    **SIZE,
  )
  expected = REFERENCE["final_latents"].transpose(0, 2, 3, 4, 1)
  assert _relative_error(latents, expected) <= 1e-3
  # The image matters: another first frame moves the latents far from diffusers'.
  other = pipeline.latents(
    [str(p) for p in REFERENCE["prompts"]],
    255 - REFERENCE["image"],
    str(REFERENCE["negative_prompt"]),
    num_steps=int(REFERENCE["num_inference_steps"]),
    guidance_scale=float(REFERENCE["guidance_scale"]),
    latents=REFERENCE["initial_latents"].transpose(0, 2, 3, 4, 1),
    progress=False,
    **SIZE,
  )
  assert _relative_error(other, expected) > 1e-2


def test_videos_do_not_depend_on_the_batching(pipeline):
  # 3 videos, one image each, in batches of 2 (the last padded) and of 3
  images = [REFERENCE["image"], 255 - REFERENCE["image"], REFERENCE["image"][::-1]]
  settings = dict(SIZE, num_steps=2, guidance_scale=3.0, seed=4, progress=False)
  prompts = ["a red square", "the blue circle", "a red square"]
  in_twos = pipeline.latents(prompts, images, batch_size=2, **settings)
  at_once = pipeline.latents(prompts, images, batch_size=3, **settings)
  np.testing.assert_allclose(in_twos, at_once, rtol=1e-5, atol=1e-5)
  assert np.abs(in_twos[0] - in_twos[2]).max() > 1e-3  # same prompt and noise seed, not image


@pytest.mark.parametrize(
  "request_, error, message",
  [
    (dict(image=None), ConfigError, "needs an image"),
    (dict(last_image=np.zeros((32, 48, 3), np.uint8)), ConfigError, "first-last-frame"),
    (dict(image=[np.zeros((8, 8, 3), np.uint8)] * 3), ShapeError, "3 images for 1 prompts"),
    (dict(image=np.zeros((8, 8), np.uint8)), ShapeError, r"uint8 \[H, W, 3\] array"),
    (dict(num_frames=10), ConfigError, "num_frames=10"),
  ],
)
def test_bad_requests_are_named(pipeline, request_, error, message):
  settings = dict(SIZE, image=REFERENCE["image"], num_steps=1, progress=False)
  settings.update(request_)
  with pytest.raises(error, match=message):
    pipeline.latents("a red square", **settings)


def _copy(tmp_path, edit_index=None, remove=None):
  folder = tmp_path / "wan_i2v"
  shutil.copytree(FOLDER, folder, ignore=shutil.ignore_patterns("*.npz"))
  if remove:
    shutil.rmtree(folder / remove)
  if edit_index:
    index = json.loads((folder / "model_index.json").read_text())
    edit_index(index)
    (folder / "model_index.json").write_text(json.dumps(index))
  return folder


@pytest.mark.parametrize(
  "edit_index, remove, error, message",
  [
    (lambda index: index.pop("image_encoder"), "image_encoder", CheckpointError, "image_encoder"),
    (None, "image_encoder", CheckpointError, r"folders are missing: \['image_encoder'\]"),
    (lambda index: index.update(boundary_ratio=0.9), None, ConfigError, "two-expert"),
    (lambda index: index.update(expand_timesteps=True), None, ConfigError, "expand_timesteps"),
    (lambda index: index.update(_class_name="WanVACEPipeline"), None, ConfigError, "WanVACE"),
  ],
)
def test_bad_folders_are_named(tmp_path, edit_index, remove, error, message):
  with pytest.raises(error, match=message):
    jvdm.pretrained.load(_copy(tmp_path, edit_index, remove))


def test_a_text_to_video_loader_refuses_an_image_to_video_folder():
  with pytest.raises(ConfigError, match="holds a WanImageToVideoPipeline"):
    wan_pipeline.load(FOLDER)


@pytest.mark.parametrize(
  "rename, message",
  [
    ({"pre_layrnorm.bias": "pre_layernorm.bias"}, r"does not have: \['pre_layernorm.bias'\]"),
    (
      {"encoder.layers.1.mlp.fc2.weight": None},
      r"lacks the CLIP vision params \['encoder.layers.1.mlp.fc2.weight'\]",
    ),
  ],
)
def test_bad_image_encoder_weights_are_named(tmp_path, rename, message):
  tensors = {}
  for key, array in iter_tensors(FOLDER / "image_encoder"):
    if rename.get(key, key) is not None:
      tensors[rename.get(key, key)] = array
  shutil.copy(FOLDER / "image_encoder" / "config.json", tmp_path / "config.json")
  safetensors.numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
  with pytest.raises(CheckpointError, match=message):
    load_clip_vision(tmp_path)


def test_sample_py_pretrained_with_an_image(tmp_path, capsys):
  image_path = tmp_path / "first.png"
  Image.fromarray(np.asarray(REFERENCE["image"], np.uint8)).save(image_path)
  out = tmp_path / "out"
  argv = ["sample.py", f"--pretrained={FOLDER}", f"--image={image_path}", "--prompt=a red square"]
  argv += ["--num_frames=5", "--height=32", "--width=48", "--steps=2", f"--out={out}"]
  sample.main(argv)
  assert f'"image": "{image_path}"' in capsys.readouterr().out
  videos = np.load(out / "samples.npz")["videos"]
  assert videos.shape == (1, 5, 32, 48, 3)
