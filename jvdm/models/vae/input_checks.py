"""The frame counts and sizes a causal video VAE takes (CV-VAE, Wan 2.1): frame 0 alone, then
`temporal_compression` frames per latent frame; frames divisible by the spatial compression."""

from jvdm.errors import ShapeError


def check_causal_frames(num_frames: int, temporal_compression: int, what: str = "video") -> None:
  """Raises ShapeError unless `num_frames` is 1 + temporal_compression * k."""
  c = temporal_compression
  if num_frames < 1 or (num_frames - 1) % c:
    valid = ", ".join(str(1 + c * k) for k in range(4))
    raise ShapeError(
      f"The {what} has {num_frames} frames; this VAE compresses time by {c} "
      f"and keeps frame 0 alone, so it takes 1 + {c}k frames ({valid}, ...)."
    )


def check_encoder_input(
  shape: tuple[int, ...],
  first_chunk: bool,
  temporal_compression: int,
  spatial_compression: int,
  channels: int | None = None,
) -> None:
  """Raises ShapeError unless `shape` is a video `[B, T, H, W, channels]` the encoder takes:
  the whole video (or, in chunked mode, the first chunk) of 1 + ck frames, a later chunk of a
  multiple of c frames, frames divisible by the spatial compression."""
  if len(shape) != 5 or (channels is not None and shape[-1] != channels):
    expected = "C" if channels is None else channels
    raise ShapeError(f"VAE encode takes videos [B, T, H, W, {expected}], got shape {shape}.")
  if first_chunk:
    check_causal_frames(shape[1], temporal_compression)
  elif shape[1] % temporal_compression:
    raise ShapeError(
      f"A chunk after the first has {shape[1]} frames; expected a multiple "
      f"of the temporal compression {temporal_compression}."
    )
  s = spatial_compression
  if shape[2] % s or shape[3] % s:
    raise ShapeError(
      f"Frames of {shape[2]}x{shape[3]} do not divide by this VAE's spatial compression {s}."
    )
