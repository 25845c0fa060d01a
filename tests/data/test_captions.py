"""Caption conditioning: synthetic captions, the text encoder, caption dropout, guided sampling
of a caption-conditioned DiT, and the caption-match metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bouncing_shapes_dit
from jvdm.data.captions import (
  BOS,
  PAD,
  VOCAB_SIZE,
  caption_colours,
  caption_tokens,
  decode_caption,
  encode_caption,
  null_caption,
)
from jvdm.data.palette import PALETTE_NAMES
from jvdm.data.synthetic import BouncingShapes
from jvdm.errors import ConfigError, ShapeError
from jvdm.metrics import caption_match_fraction, video_colours
from jvdm.builders import get_model, make_video_sampler
from jvdm.models.text_encoder import TextEncoder
from jvdm.sampling import sample_from_workdir
from jvdm.training.loop import train_and_evaluate
from jvdm.training.step import drop_condition


def _caption_config(**overrides):
  config = bouncing_shapes_dit.get_config("tiny")
  with config.unlocked():
    config.model.condition = "caption"
    for dotted, value in overrides.items():
      node = config
      *parents, leaf = dotted.split(".")
      for key in parents:
        node = node[key]
      node[leaf] = value
  return config


def test_captions_name_the_colours_of_the_video_in_palette_order():
  source = BouncingShapes(max_shapes=3)
  for index in range(20):
    _, truth = source.render(index)
    caption = source[index]["caption"]
    assert caption.dtype == np.int32 and caption.shape == (4,)
    assert caption[0] == BOS
    assert caption_colours(caption) == set(truth["colour_indices"].tolist())
    colours = sorted(truth["colour_indices"].tolist())
    assert decode_caption(caption) == " ".join(PALETTE_NAMES[c] for c in colours)
    np.testing.assert_array_equal(encode_caption(decode_caption(caption), 3), caption)
  assert list(caption_tokens([5, 0], 3)) == [BOS, 2, 7, PAD]  # draw order does not matter
  assert list(null_caption(2)) == [BOS, PAD, PAD] and decode_caption(null_caption(2)) == ""
  np.testing.assert_array_equal(encode_caption("Blue, red", 2), encode_caption("red blue", 2))


def test_bad_captions_are_refused():
  with pytest.raises(ConfigError, match="Unknown caption words \\['purple'\\]"):
    encode_caption("red purple", 2)
  with pytest.raises(ConfigError, match="0 to 2 distinct colours"):
    encode_caption("red blue green", 2)
  with pytest.raises(ConfigError, match="0 to 2 distinct colours"):
    encode_caption("red red", 2)
  with pytest.raises(ShapeError, match="starting with BOS"):
    caption_colours(np.array([3, 4]))


def test_caption_match_counts_videos_whose_colours_are_the_caption():
  source = BouncingShapes(num_frames=4)
  videos = np.stack([source[i]["video"] for i in range(12)])
  captions = np.stack([source[i]["caption"] for i in range(12)])
  assert [video_colours(v) for v in videos] == [caption_colours(c) for c in captions]
  assert caption_match_fraction(videos, captions) == 1.0
  # Each video against the next one's caption: a match only where the colour sets agree.
  shifted = np.roll(captions, 1, axis=0)
  expected = np.mean([caption_colours(a) == caption_colours(b) for a, b in zip(captions, shifted)])
  assert expected < 1.0
  assert caption_match_fraction(videos, shifted) == expected
  assert caption_match_fraction(np.zeros_like(videos), captions) == 0.0  # black: no colours
  with pytest.raises(ShapeError, match="one caption per video"):
    caption_match_fraction(videos, captions[:3])


def test_caption_dropout_replaces_whole_captions_with_the_null_one():
  captions = jnp.asarray(np.stack([caption_tokens([i % 8, (i + 1) % 8], 2) for i in range(1000)]))
  null = null_caption(2)
  np.testing.assert_array_equal(drop_condition(jax.random.key(0), captions, null, 0.0), captions)
  assert (drop_condition(jax.random.key(0), captions, null, 1.0) == null).all()
  dropped = np.asarray(drop_condition(jax.random.key(0), captions, null, 0.3))
  is_null = (dropped == null).all(axis=1)
  kept = (dropped == np.asarray(captions)).all(axis=1)
  assert (is_null | kept).all()  # never a partly dropped caption
  assert 0.25 < is_null.mean() < 0.35


def test_text_encoder_ignores_padding():
  encoder = TextEncoder(VOCAB_SIZE, width=32, depth=2, num_heads=4)
  short = jnp.asarray([[BOS, 3, 5], [BOS, PAD, PAD]])
  long = jnp.pad(short, ((0, 0), (0, 4)))  # more padding
  params = encoder.init(jax.random.key(0), short)
  apply = jax.jit(encoder.apply)
  out_short, valid_short = apply(params, short)
  out_long, valid_long = apply(params, long)
  assert out_short.shape == (2, 3, 32) and valid_long.shape == (2, 7)
  np.testing.assert_array_equal(valid_short, short != PAD)
  np.testing.assert_allclose(out_long[valid_long], out_short[valid_short], atol=1e-5)
  assert not np.allclose(out_short[0, 1:], out_short[1, 1:])  # the words change the output
  with pytest.raises(ShapeError, match="integers"):
    apply(params, jnp.zeros((2, 3)))


def _perturbed_params(model, config, key=0):
  """Params with every weight (zero-initialized gates and outputs too) randomized, so that
  captions reach the output."""
  video = jnp.zeros((2, 4, 16, 16, 3))
  params = jax.jit(model.init)(
    jax.random.key(key), video, jnp.zeros((2,)), cond=jnp.asarray(np.stack([null_caption(2)] * 2))
  )["params"]
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(key + 1), len(leaves))
  return jax.tree.unflatten(
    treedef, [leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  )


def test_dit_output_depends_on_the_caption_and_not_on_its_padding():
  config = _caption_config()
  model = get_model(config)
  params = _perturbed_params(model, config)
  video = jax.random.normal(jax.random.key(2), (2, 4, 16, 16, 3))
  t = jnp.array([0.3, 0.7])
  apply = jax.jit(lambda cond: model.apply({"params": params}, video, t, cond=cond))
  captions = jnp.asarray(np.stack([encode_caption("red blue", 2), encode_caption("green", 2)]))
  out = apply(captions)
  np.testing.assert_allclose(apply(jnp.pad(captions, ((0, 0), (0, 3)))), out, atol=1e-5)
  assert np.abs(apply(captions[::-1]) - out).max() > 1e-2
  with pytest.raises(ShapeError, match="caption-conditioned"):
    model.apply({"params": params}, video, t)


def test_guided_sampling_interpolates_between_null_and_caption():
  """guidance_scale 0 samples the null caption's model, 1 the caption's, exactly; 3 differs
  from both (the guided denoiser is tested against the formula in test_guidance)."""
  config = _caption_config()
  model = get_model(config)
  params = _perturbed_params(model, config)
  captions = np.stack([encode_caption("red", 2), encode_caption("blue yellow", 2)])
  shape = (4, 16, 16, 3)

  def sample(scale, condition):
    sampler = make_video_sampler(
      config, model.apply, steps=3, guidance_scale=scale, frame_stagger=0.0
    )
    return sampler.sample(params, 0, 2, shape, progress=False, condition=condition)

  conditional, unconditional = sample(1.0, captions), sample(1.0, np.stack([null_caption(2)] * 2))
  np.testing.assert_allclose(sample(0.0, captions), unconditional, atol=1e-5)
  guided = sample(3.0, captions)
  assert np.abs(guided - conditional).max() > 1e-3 and np.abs(guided - unconditional).max() > 1e-3
  sampler = make_video_sampler(config, model.apply, steps=3)
  with pytest.raises(ConfigError, match="pass one condition per video"):
    sampler.sample(params, 0, 2, shape)
  with pytest.raises(ShapeError, match="one condition per video"):
    sampler.sample(params, 0, 3, shape, condition=captions)


def test_unconditional_models_refuse_captions_and_guidance():
  config = bouncing_shapes_dit.get_config("tiny")
  sampler = make_video_sampler(config, None, steps=2)
  with pytest.raises(ConfigError, match="unconditional; it takes no condition"):
    sampler.sample({}, 0, 1, (4, 16, 16, 3), condition=np.stack([null_caption(2)]))
  with pytest.raises(ConfigError, match="needs a conditional model"):
    make_video_sampler(config, None, guidance_scale=2.0)
  with pytest.raises(ConfigError, match="'bouncing_shapes' dataset"):
    make_video_sampler(_caption_config(**{"data.name": "video_folder"}), None)


def test_caption_model_trains_and_samples_with_a_prompt_and_guidance(tmp_path):
  config = _caption_config(
    **{
      "train.num_steps": 3,
      "train.sample_every": 0,
      "train.num_sample_videos": 2,
      "sample.steps": 2,
      "sample.guidance_scale": 2.0,
    }
  )
  train_and_evaluate(config, str(tmp_path), progress=False)
  logged = [
    line
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    if "sample_caption_match_fraction" in line
  ]
  assert len(logged) == 1
  summary = sample_from_workdir(
    str(tmp_path), num_samples=2, steps=2, prompt="red, blue", guidance_scale=4.0, progress=False
  )
  assert summary["captions"] == ["red blue", "red blue"] and summary["guidance_scale"] == 4.0
  assert "caption_match_fraction" in summary["synthetic_video_validity"]["generated"]
  videos = np.load(tmp_path / "samples" / "sample_seed0" / "samples.npz")["videos"]
  assert videos.shape == (2, 4, 16, 16, 3)
  with pytest.raises(ConfigError, match="Unknown caption words"):
    sample_from_workdir(str(tmp_path), num_samples=1, steps=2, prompt="mauve", progress=False)
