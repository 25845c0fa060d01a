"""Writes the reference fixtures of published-model imports (`tests/pretrained/`): tiny
random-weight instances saved in their usual folder layout, with inputs and the reference
implementation's outputs.

  pip install torch==2.13.0 transformers safetensors diffusers==0.42.1
  python scripts/make_pretrained_references.py

Written so far, in `tests/fixtures/pretrained/`:
- `umt5_tiny/`: a UMT5 encoder (transformers' `UMT5EncoderModel`, the text encoder of Wan 2.1):
  `config.json`, `model.safetensors`, and `io.npz` (token ids, mask, last hidden state);
- `tokenizer_tiny/`: a tiny tokenizer in the layout of Wan's `tokenizer/` folder
  (a unigram `tokenizer.json`, T5's `</s>` appended, `tokenizer_config.json`), and `prompts.npz`:
  what transformers' tokenizer and diffusers' `WanPipeline._get_t5_prompt_embeds` give for a
  few prompts with the tiny encoder (ids, mask, embeddings zeroed after each prompt);
- `wan_rope.npz`: diffusers' `WanRotaryPosEmbed` cos and sin tables on a 3 x 4 x 5 grid;
- `wan_vae_tiny/`: a tiny Wan 2.1 VAE (diffusers' `AutoencoderKLWan`): `config.json`,
  `diffusion_pytorch_model.safetensors`, and `io.npz` (a 9-frame video, the posterior mean and
  logvar of `encode`, and `decode` of the mean).
Run once by hand; the test suite reads the files with numpy and safetensors only.
"""

import pathlib

import json

import numpy as np
import tokenizers
import torch
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

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


PROMPTS = [
  "a red square bounces",
  "  a   blue circle &amp; a green square\n",  # whitespace and HTML escapes to clean
  "the red circle bounces off the wall and the blue square follows it to the floor",  # truncated
  "",
]
MAX_LENGTH = 12


def tokenizer_tiny(out: pathlib.Path, encoder_folder: pathlib.Path) -> None:
  # A SentencePiece-style unigram model, as umt5's: whole words (most of them) and letters.
  words = sorted({w for p in PROMPTS for w in p.replace("&amp;", "&").split()})[:-3]
  letters = sorted(set("".join(PROMPTS)) - set(" \n"))
  pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
  pieces += [("\u2581" + w, -1.0) for w in words] + [(c, -5.0) for c in letters]
  tokenizer = tokenizers.Tokenizer(tokenizers.models.Unigram(pieces, unk_id=2))
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(
    replacement="\u2581", prepend_scheme="always"
  )
  tokenizer.decoder = tokenizers.decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
  tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
    single="$A </s>", special_tokens=[("</s>", 1)]
  )
  out.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(out / "tokenizer.json"))
  (out / "tokenizer_config.json").write_text(
    json.dumps(
      {
        "tokenizer_class": "T5TokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": 512,
      },
      indent=2,
    )
  )
  reference = AutoTokenizer.from_pretrained(out)
  encoder = UMT5EncoderModel.from_pretrained(encoder_folder).eval()
  # diffusers' WanPipeline._get_t5_prompt_embeds, step by step (its prompt_clean without ftfy).
  import html  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top

  cleaned = [re.sub(r"\s+", " ", html.unescape(html.unescape(p)).strip()).strip() for p in PROMPTS]
  inputs = reference(
    cleaned,
    padding="max_length",
    max_length=MAX_LENGTH,
    truncation=True,
    add_special_tokens=True,
    return_attention_mask=True,
    return_tensors="pt",
  )
  seq_lens = inputs.attention_mask.gt(0).sum(dim=1).long()
  with torch.no_grad():
    hidden = encoder(inputs.input_ids, inputs.attention_mask).last_hidden_state
  embeds = torch.stack(
    [torch.cat([u[:v], u.new_zeros(MAX_LENGTH - v, u.size(1))]) for u, v in zip(hidden, seq_lens)]
  )
  np.savez(
    out / "prompts.npz",
    prompts=np.array(PROMPTS),
    ids=inputs.input_ids.numpy(),
    mask=inputs.attention_mask.numpy(),
    embeds=embeds.numpy(),
  )
  print(f"wrote {out}")


def wan_rope(out: pathlib.Path) -> None:
  """diffusers' WanRotaryPosEmbed tables for a head of 12 on a 3 x 4 x 5 token grid."""
  from diffusers.models.transformers.transformer_wan import (  # pylint: disable=g-import-not-at-top
    WanRotaryPosEmbed,
  )

  rope = WanRotaryPosEmbed(attention_head_dim=12, patch_size=(1, 1, 1), max_seq_len=64)
  cos, sin = rope(torch.zeros(1, 1, 3, 4, 5))
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / "wan_rope.npz", cos=cos[0, :, 0].numpy(), sin=sin[0, :, 0].numpy())
  print(f"wrote {out / 'wan_rope.npz'}")


def wan_vae_tiny(out: pathlib.Path) -> None:
  """Wan 2.1's VAE layout at width 4: every level transition halves H and W, the last two halve
  time (downsample2d, then downsample3d twice; the decoder mirrors them), one residual block per
  level, attention in the middle blocks; 9 frames of 32 x 32 -> 3 latent frames of 4 x 4."""
  from diffusers import AutoencoderKLWan  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  z_dim = 4
  model = AutoencoderKLWan(
    base_dim=4,
    z_dim=z_dim,
    dim_mult=[1, 2, 2, 2],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    latents_mean=[round(v, 4) for v in torch.randn(z_dim).tolist()],
    latents_std=[round(v, 4) for v in (0.5 + torch.rand(z_dim)).tolist()],
  ).eval()
  with torch.no_grad():  # norm scales away from 1, and attention logits of std ~2, not ~0.3
    for name, parameter in model.named_parameters():
      if name.endswith("gamma"):
        parameter.uniform_(0.5, 1.5)
      elif name.endswith("to_qkv.weight"):
        parameter.normal_(0.0, 0.5)
  model.save_pretrained(out, safe_serialization=True)
  video = torch.rand(1, 3, 9, 32, 32) * 2 - 1  # diffusers' [B, C, T, H, W]
  with torch.no_grad():
    posterior = model.encode(video).latent_dist
    decoded = model.decode(posterior.mean).sample
  np.savez(
    out / "io.npz",
    video=video.numpy(),
    mean=posterior.mean.numpy(),
    logvar=posterior.logvar.numpy(),
    decoded=decoded.numpy(),
  )
  print(
    f"wrote {out}: decoded std {decoded.std():.3f}, {(decoded.abs() >= 1).float().mean():.2%} clipped"
  )


if __name__ == "__main__":
  wan_rope(OUT)
  umt5_tiny(OUT / "umt5_tiny")
  tokenizer_tiny(OUT / "tokenizer_tiny", OUT / "umt5_tiny")
  wan_vae_tiny(OUT / "wan_vae_tiny")
