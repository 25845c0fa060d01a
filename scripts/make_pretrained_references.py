"""Writes the reference fixtures of published-model imports (`tests/pretrained/`): tiny
random-weight instances saved in their usual folder layout, with inputs and the reference
implementation's outputs.

  pip install torch==2.13.0 transformers safetensors
  python scripts/make_pretrained_references.py

Written so far: a UMT5 encoder (transformers' `UMT5EncoderModel`, the text encoder of Wan 2.1)
in `tests/fixtures/pretrained/umt5_tiny/` (`config.json`, `model.safetensors`, `io.npz`).
Run once by hand; the test suite reads the files with numpy and safetensors only.
"""

import pathlib

import numpy as np
import torch
from transformers import UMT5Config, UMT5EncoderModel

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pretrained"


def umt5_tiny(out: pathlib.Path) -> None:
  torch.manual_seed(0)
  config = UMT5Config(
    vocab_size=97,
    d_model=32,
    d_kv=8,
    d_ff=48,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
  )
  model = UMT5EncoderModel(config).eval()
  with torch.no_grad():  # random weights of a realistic scale (init gives tiny attention logits)
    for parameter in model.parameters():
      parameter.normal_(0.0, 0.5)
  model.save_pretrained(out)
  # Two prompts of 150 and 5 tokens padded to 160 (longer than max_distance, so the far buckets
  # are used), the mask as a tokenizer gives it.
  rng = np.random.default_rng(0)
  ids = np.zeros((2, 160), np.int64)
  mask = np.zeros((2, 160), np.int64)
  for row, length in enumerate((150, 5)):
    ids[row, :length] = rng.integers(1, config.vocab_size, length)
    mask[row, :length] = 1
  with torch.no_grad():
    hidden = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  np.savez(out / "io.npz", ids=ids, mask=mask, hidden=hidden.last_hidden_state.numpy())
  print(f"wrote {out}")


if __name__ == "__main__":
  umt5_tiny(OUT / "umt5_tiny")
