"""Captions of the bouncing-shapes videos: which colours of square a video holds.

A caption is a fixed-length int32 token array `[max_shapes + 1]`: `BOS`, then the shapes'
colour words in palette order (so it does not depend on draw order), then `PAD`. The empty
caption, `BOS` alone, is the null condition of classifier-free guidance: it is what training
shows the model when it drops the caption, and the unconditional branch at sampling time.
"""

import numpy as np

from jvdm.data.palette import PALETTE_NAMES
from jvdm.errors import ConfigError, ShapeError

PAD, BOS = 0, 1
_FIRST_COLOUR = 2  # token of PALETTE_NAMES[0]
VOCAB = ("<pad>", "<bos>") + PALETTE_NAMES
VOCAB_SIZE = len(VOCAB)


def caption_length(max_shapes: int) -> int:
  return max_shapes + 1


def caption_tokens(colour_indices, max_shapes: int) -> np.ndarray:
  """int32 `[max_shapes + 1]`: the caption of a video whose shapes have these palette indices."""
  colours = sorted(int(c) for c in colour_indices)
  if len(colours) > max_shapes or len(set(colours)) != len(colours):
    raise ConfigError(
      f"A caption names 0 to {max_shapes} distinct colours, got indices {list(colour_indices)}."
    )
  if any(not 0 <= c < len(PALETTE_NAMES) for c in colours):
    raise ConfigError(f"Colour indices must be in [0, {len(PALETTE_NAMES)}), got {colours}.")
  tokens = np.full(caption_length(max_shapes), PAD, np.int32)
  tokens[0] = BOS
  tokens[1 : 1 + len(colours)] = np.asarray(colours, np.int32) + _FIRST_COLOUR
  return tokens


def null_caption(max_shapes: int) -> np.ndarray:
  """The empty caption (BOS only): the unconditional input."""
  return caption_tokens((), max_shapes)


def encode_caption(text: str, max_shapes: int) -> np.ndarray:
  """Tokens of a caption written as colour names, e.g. "red blue" or "red, blue"; "" is null."""
  words = text.replace(",", " ").lower().split()
  unknown = [word for word in words if word not in PALETTE_NAMES]
  if unknown:
    raise ConfigError(
      f"Unknown caption words {unknown} in {text!r}; captions name colours "
      f"from {list(PALETTE_NAMES)}."
    )
  return caption_tokens([PALETTE_NAMES.index(word) for word in words], max_shapes)


def caption_colours(tokens: np.ndarray) -> frozenset[int]:
  """The palette indices a caption names."""
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or tokens.size < 1 or tokens[0] != BOS:
    raise ShapeError(f"A caption is a 1D token array starting with BOS={BOS}, got {tokens}.")
  return frozenset(int(t) - _FIRST_COLOUR for t in tokens[1:] if t >= _FIRST_COLOUR)


def decode_caption(tokens: np.ndarray) -> str:
  """ "red blue" for the tokens of that caption; "" for the null caption."""
  return " ".join(PALETTE_NAMES[c] for c in sorted(caption_colours(tokens)))
