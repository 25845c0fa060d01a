"""Prompts to embeddings against transformers' tokenizer and diffusers' WanPipeline prompt
encoding on the shipped tiny tokenizer and encoder (scripts/make_pretrained_references.py)."""

import logging
import pathlib

import numpy as np
import pytest

from jvdm.errors import CheckpointError
from jvdm.pretrained.umt5 import load_umt5
from jvdm.pretrained.wan_prompts import PromptEncoder, clean_prompt, load_tokenizer

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pretrained"


@pytest.fixture(name="prompt_encoder", scope="module")
def fixture_prompt_encoder():
  encoder, params = load_umt5(FIXTURES / "wan_t2v_tiny" / "text_encoder")
  return PromptEncoder(
    load_tokenizer(FIXTURES / "wan_t2v_tiny" / "tokenizer"), encoder, params, max_length=12
  )


def test_ids_masks_and_embeddings_equal_the_wan_pipeline(prompt_encoder, caplog):
  reference = np.load(FIXTURES / "wan_t2v_tiny" / "tokenizer" / "prompts.npz")
  prompts = [str(p) for p in reference["prompts"]]
  with caplog.at_level(logging.WARNING, logger="jvdm"):
    ids, mask = prompt_encoder.tokenize(prompts)
  np.testing.assert_array_equal(ids, reference["ids"])
  np.testing.assert_array_equal(mask, reference["mask"])
  assert "only the first 12 are used" in caplog.text  # the long prompt, named
  embeds = np.asarray(prompt_encoder(prompts))
  expected = reference["embeds"]
  assert np.abs(embeds - expected).max() <= 1e-4 * np.abs(expected).max()
  assert np.all(embeds[mask == 0] == 0)


def test_clean_prompt():
  assert clean_prompt("  a \n red&amp;amp;blue\tsquare ") == "a red&blue square"


def test_a_folder_without_tokenizer_json(tmp_path):
  with pytest.raises(CheckpointError, match="has no tokenizer.json"):
    load_tokenizer(tmp_path)
