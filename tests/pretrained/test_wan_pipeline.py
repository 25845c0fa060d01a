"""The tiny diffusers-format Wan 2.1 folder (scripts/make_pretrained_references.py) sampled by
`jvdm.pretrained.load` against diffusers' `WanPipeline` on the same folder and initial latents
(UniPC on shifted flow sigmas, integer timesteps, guidance against a negative prompt); a
long-video method on it; `sample.py --pretrained`; and what bad requests say."""

import pathlib

import numpy as np
import pytest

import jvdm.pretrained
import sample
from jvdm.errors import ConfigError, ShapeError
from jvdm.pretrained.wan_pipeline import default_window as pipeline_window

FOLDER = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pretrained" / "wan_t2v_tiny"
REFERENCE = np.load(FOLDER / "pipeline.npz")
SIZE = dict(
  num_frames=int(REFERENCE["num_frames"]),
  height=int(REFERENCE["height"]),
  width=int(REFERENCE["width"]),
)


@pytest.fixture(name="pipeline", scope="module")
def fixture_pipeline():
  return jvdm.pretrained.load(FOLDER, max_length=int(REFERENCE["max_sequence_length"]))


def _prompts():
  return [str(p) for p in REFERENCE["prompts"]]


def test_the_pipeline_equals_diffusers_wan_pipeline(pipeline):
  latents = pipeline.latents(
    _prompts(),
    str(REFERENCE["negative_prompt"]),
    num_steps=int(REFERENCE["num_inference_steps"]),
    guidance_scale=float(REFERENCE["guidance_scale"]),
    latents=REFERENCE["initial_latents"].transpose(0, 2, 3, 4, 1),  # [B, C, F, h, w] -> last
    progress=False,
    **SIZE,
  )
  expected = REFERENCE["final_latents"].transpose(0, 2, 3, 4, 1)
  assert np.abs(latents - expected).max() <= 1e-3 * np.abs(expected).max()
  videos = pipeline.decode(latents, progress=False)  # diffusers' "np" output is in [0, 1]
  np.testing.assert_allclose(np.clip((videos + 1) / 2, 0, 1), REFERENCE["video"], atol=1e-3)


def test_a_long_video_method_runs_on_the_imported_model(pipeline):
  settings = dict(num_steps=3, guidance_scale=3.0, seed=1, progress=False, height=32, width=48)
  plain = pipeline.latents("a red square", num_frames=9, **settings)
  # FreeNoise over one window is the plain sampler: same noise, one window to fuse
  one_window = pipeline.latents(
    "a red square", num_frames=9, long="freenoise", long_settings={"window": 3}, **settings
  )
  np.testing.assert_allclose(one_window, plain, rtol=1e-5, atol=1e-5)
  longer = pipeline.latents(
    "a red square", num_frames=17, long="freenoise", long_settings={"window": 3}, **settings
  )
  assert longer.shape == (1, 5, 4, 6, 4) and np.isfinite(longer).all()
  # its first window starts from the same noise as the short video, so it stays close to it
  assert np.abs(longer[:, :3] - plain).mean() < np.abs(longer[:, :3] - longer[:, 2:]).mean()


@pytest.mark.parametrize("method", ["gen_l_video", "fifo"])
def test_window_methods_run_on_the_imported_model(pipeline, method):
  """Gen-L-Video folds windows into the batch, FIFO queues them; both guide each window."""
  videos = pipeline.latents(
    "a red square",
    num_frames=17,
    height=32,
    width=48,
    num_steps=2,
    guidance_scale=3.0,
    long=method,
    long_settings={"window": 2, "num_partitions": 2} if method == "fifo" else {"window": 4},
    progress=False,
  )
  assert videos.shape == (1, 5, 4, 6, 4) and np.isfinite(videos).all()
  assert pipeline_window("fifo") == 20 and pipeline_window("freenoise") == 21  # Wan's defaults


def test_sample_py_pretrained_writes_videos(tmp_path, capsys):
  out = tmp_path / "out"
  argv = ["sample.py", f"--pretrained={FOLDER}", "--prompt=a red square", "--num_frames=5"]
  argv += ["--height=32", "--width=48", "--steps=2", f"--out={out}", "--negative_prompt=blue"]
  sample.main(argv)
  assert '"negative_prompt": "blue"' in capsys.readouterr().out
  videos = np.load(out / "samples.npz")["videos"]
  assert videos.shape == (1, 5, 32, 48, 3) and videos.dtype == np.uint8
  assert (out / "samples.mp4").exists()


@pytest.mark.parametrize(
  "request_, error, message",
  [
    (dict(num_frames=10), ConfigError, r"num_frames=10: .* 4k \+ 1 frames \(e.g. 9 or 13\)"),
    (dict(height=40), ConfigError, "multiples of 16"),
    (dict(latents=np.zeros((1, 3, 4, 6, 4))), ShapeError, r"latents must be \[2, 3, 4, 6, 4\]"),
  ],
)
def test_bad_requests_are_named(pipeline, request_, error, message):
  settings = dict(SIZE, num_steps=1, progress=False)
  settings.update(request_)
  with pytest.raises(error, match=message):
    pipeline.latents(_prompts(), **settings)


def test_a_second_call_reuses_the_compiled_sampler(pipeline):
  settings = dict(SIZE, num_steps=2, progress=False)
  first = pipeline.latents("a red square", "blue", seed=3, **settings)
  sampler = pipeline.video_sampler(2, 5.0, "blue")
  pipeline.latents(["the blue circle", "a red square"], "blue", **settings)  # new prompts
  assert pipeline.video_sampler(2, 5.0, "blue") is sampler
  assert sampler.jitted_sample_batch._cache_size() == 1  # one compile for both calls
  again = pipeline.latents("a red square", "blue", seed=3, **settings)
  np.testing.assert_array_equal(first, again)
  assert pipeline.video_sampler(2, 5.0, "green") is not sampler  # another negative prompt
