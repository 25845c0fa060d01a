"""A 3D convolution over `[B, T, H, W, C]` videos, causal in time, that can run chunk by chunk.

Causal: the time axis is padded with `kt - 1` zero frames on the past side only, so output
frame t sees input frames <= t (CV-VAE, Zhao et al. 2024, Sec. 3.2; Wan 2.1's
WanCausalConv3d). A video then encodes frame by frame: the first frame's latent is that of an
image, and a long video can be processed in chunks whose convs carry the last `kt - 1` input
frames from one chunk to the next ("feature cache", Wan 2.1 Sec. 3.1.1).

Chunked mode is switched on by applying the model with `mutable=["cache"]`: each conv keeps
its carried frames in the variable `cache/past` (zeros before the first chunk). Without it the
past is zeros and nothing is stored. Spatial padding is "same" per frame, so frames are
independent of each other except through the temporal kernel.
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jvdm.errors import ConfigError
from jvdm.models.layers.conv2d import conv2d
from jvdm.parallel.axes import CONV_HEIGHT, CONV_TEMPORAL, CONV_WIDTH, EMBED, MLP

CACHE = "cache"  # the variable collection holding carried frames in chunked mode


class CausalConv3d(nn.Module):
  """`[B, T, H, W, C]` -> `[B, T', H, W, features]`, a `kt x k x k` kernel.

  Attributes:
    features: output channels.
    kernel_size: `(kt, kh, kw)`; kh and kw odd. kt = 1 is a per-frame 2D conv.
    temporal_stride: 1, or 2 to halve the frame rate while keeping frame 0 on its own:
      output j covers input frames 2j - kt + 1 .. 2j, so `1 + 2k` frames give `1 + k`.
    causal: pad time on the past side (True) or centred, `(kt - 1) / 2` each side (False,
      non-causal; cannot run in chunks).
    zero_init: start the kernel at zero.
    row_slices: compute the output in this many horizontal bands of rows, one after another
      (`lax.map`), each from its rows plus a halo of kh // 2: the same result, with the conv's
      temporaries those of one band (Streamlined Inference's feature slicing, Zhan et al.
      2024). Needs H divisible by it.
  """

  features: int
  kernel_size: tuple[int, int, int] = (3, 3, 3)
  temporal_stride: int = 1
  causal: bool = True
  zero_init: bool = False
  row_slices: int = 1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    """Applies the conv.

    Args:
      x: `[B, T, H, W, C]`.
      first_chunk: whether x starts at the video's frame 0 (always True outside chunked
        mode). With `temporal_stride=2` a later chunk starts at an odd frame (chunks after the
        first hold an even number of frames), which shifts the stride's phase by one.
    """
    kt, kh, kw = self.kernel_size
    if kh % 2 != 1 or kw % 2 != 1:
      raise ConfigError(f"CausalConv3d spatial kernel sizes must be odd, got {self.kernel_size}.")
    if self.temporal_stride not in (1, 2):
      raise ConfigError(f"CausalConv3d temporal_stride must be 1 or 2, got {self.temporal_stride}.")
    if self.temporal_stride > kt:
      raise ConfigError(
        f"A temporal stride of {self.temporal_stride} with a temporal kernel of "
        f"{kt} would skip frames; use kt >= stride."
      )
    init = nn.initializers.zeros_init() if self.zero_init else nn.initializers.lecun_normal()
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(init, (CONV_TEMPORAL, CONV_HEIGHT, CONV_WIDTH, EMBED, MLP)),
      (kt, kh, kw, x.shape[-1], self.features),
      self.param_dtype,
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(nn.initializers.zeros_init(), (MLP,)),
      (self.features,),
      self.param_dtype,
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)

    if not self.causal:
      if kt % 2 != 1:
        raise ConfigError(f"A non-causal temporal kernel must be odd, got {kt}.")
      time_padding = ((kt - 1) // 2, (kt - 1) // 2)
    elif kt > 1:
      time_padding = (0, 0)
      past_shape = (x.shape[0], kt - 1) + x.shape[2:]
      if self.is_mutable_collection(CACHE):  # chunked: carry the last kt - 1 input frames
        past = self.variable(CACHE, "past", jnp.zeros, past_shape, x.dtype)
        x_with_past = jnp.concatenate([past.value, x], axis=1)
        past.value = x_with_past[:, -(kt - 1) :]
      else:
        x_with_past = jnp.concatenate([jnp.zeros(past_shape, x.dtype), x], axis=1)
      # Output j starts at padded frame j * stride; a chunk after the first starts at an odd
      # frame, one past a stride-2 boundary.
      x = x_with_past[:, 0 if first_chunk else self.temporal_stride - 1 :]
    else:
      time_padding = (0, 0)

    def conv(x):
      if self.temporal_stride == 1 and kh == kw:
        x = jnp.pad(x, ((0, 0), time_padding, (0, 0), (0, 0), (0, 0)))
        return lax.platform_dependent(x, kernel, cpu=_conv3d_as_2d_sum, default=_conv3d)
      return _conv3d(x, kernel, self.temporal_stride, time_padding)

    if self.row_slices > 1 and kh > 1:
      return _in_row_bands(conv, x, self.row_slices, kh // 2) + bias
    return conv(x) + bias


def _in_row_bands(conv, x: jnp.ndarray, bands: int, halo: int) -> jnp.ndarray:
  """`conv(x)` ("same" in H) computed one band of rows at a time from the band and `halo` rows
  on each side; the band's rows see exactly what they see in the whole image."""
  height = x.shape[2]
  if height % bands:
    raise ConfigError(f"row_slices={bands} does not divide the feature height {height}.")
  rows = height // bands
  padded = jnp.pad(x, ((0, 0), (0, 0), (halo, halo), (0, 0), (0, 0)))
  pieces = jnp.stack([padded[:, :, i * rows : (i + 1) * rows + 2 * halo] for i in range(bands)])
  out = lax.map(
    lambda piece: conv(piece)[:, :, halo : halo + rows], pieces
  )  # [bands, B, T, r, W, C]
  out = jnp.moveaxis(out, 0, 2)  # [B, T, bands, rows, W, C]
  return out.reshape(out.shape[:2] + (height,) + out.shape[4:])


def _conv3d(
  x: jnp.ndarray,
  kernel: jnp.ndarray,
  temporal_stride: int = 1,
  time_padding: tuple[int, int] = (0, 0),
) -> jnp.ndarray:
  """XLA's 3D conv, "same" in space, `time_padding` frames in time."""
  _, kh, kw = kernel.shape[:3]
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(temporal_stride, 1, 1),
    padding=(time_padding, (kh // 2, kh // 2), (kw // 2, kw // 2)),
    dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
  )


def _conv3d_as_2d_sum(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """The same valid-in-time conv as a sum over temporal taps of per-frame 2D convs
  (`conv2d`, whose kernel gradient is fast on CPU): 1.6x faster forward plus backward than
  XLA:CPU's 3D conv on a [8, 19, 32, 32, 16] input here."""
  kt = kernel.shape[0]
  batch, frames = x.shape[0], x.shape[1] - kt + 1
  out = None
  for i in range(kt):
    window = x[:, i : i + frames].reshape((batch * frames,) + x.shape[2:])
    term = conv2d(window, kernel[i])
    out = term if out is None else out + term
  return out.reshape((batch, frames) + out.shape[1:])
