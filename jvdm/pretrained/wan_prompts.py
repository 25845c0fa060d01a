"""Prompts to text embeddings as Wan 2.1's pipeline makes them (diffusers' `WanPipeline.
_get_t5_prompt_embeds`): clean the text (HTML unescaped twice, ftfy when installed, whitespace
collapsed), tokenize with the folder's `tokenizer.json` (T5's `</s>` appended, padded to
`max_length`), encode with UMT5, and zero each prompt's embeddings after its last token.

One deviation, named: a prompt longer than `max_length` tokens is truncated with a warning
(diffusers truncates it silently).
"""

import html
import logging
import pathlib
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from jvdm.errors import CheckpointError
from jvdm.models.umt5 import UMT5Encoder

logger = logging.getLogger(__name__)

WAN_MAX_LENGTH = 512  # WanPipeline's max_sequence_length


def clean_prompt(text: str) -> str:
  try:
    import ftfy  # pylint: disable=g-import-not-at-top

    text = ftfy.fix_text(text)
  except ImportError:
    pass
  text = html.unescape(html.unescape(text)).strip()
  return re.sub(r"\s+", " ", text).strip()


def load_tokenizer(folder: str | pathlib.Path) -> tokenizers.Tokenizer:
  path = pathlib.Path(folder) / "tokenizer.json"
  if not path.exists():
    raise CheckpointError(
      f"{folder} has no tokenizer.json (the fast tokenizer file transformers and diffusers "
      "save); jvdm reads that file."
    )
  return tokenizers.Tokenizer.from_file(str(path))


class PromptEncoder:
  """`encoder(prompts) -> embeddings [B, max_length, width]` (zero after each prompt)."""

  def __init__(
    self,
    tokenizer: tokenizers.Tokenizer,
    encoder: UMT5Encoder,
    params: Any,
    max_length: int = WAN_MAX_LENGTH,
  ):
    self.tokenizer, self.encoder, self.params, self.max_length = (
      tokenizer,
      encoder,
      params,
      max_length,
    )
    self._encode = jax.jit(lambda params, ids, mask: encoder.apply({"params": params}, ids, mask))

  def tokenize(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask), int32 `[B, max_length]`: the cleaned prompts with `</s>`, padded; a prompt
    that does not fit is truncated (keeping `</s>`), with a warning."""
    pad_id = self.tokenizer.token_to_id("<pad>")
    ids = np.full((len(prompts), self.max_length), 0 if pad_id is None else pad_id, np.int32)
    mask = np.zeros((len(prompts), self.max_length), np.int32)
    for row, prompt in enumerate(prompts):
      tokens = self.tokenizer.encode(clean_prompt(prompt)).ids
      if len(tokens) > self.max_length:
        logger.warning(
          "The prompt %r has %d tokens; only the first %d are used (max_length).",
          prompt,
          len(tokens),
          self.max_length,
        )
        tokens = tokens[: self.max_length - 1] + tokens[-1:]  # keep the closing </s>
      ids[row, : len(tokens)] = tokens
      mask[row, : len(tokens)] = 1
    return ids, mask

  def __call__(self, prompts: Sequence[str]) -> jnp.ndarray:
    ids, mask = self.tokenize(prompts)
    hidden = self._encode(self.params, ids, mask)
    return jnp.where(mask[:, :, None].astype(bool), hidden, 0.0)
