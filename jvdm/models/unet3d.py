"""Spatiotemporal 3D UNet for video diffusion (Video Diffusion Models, Ho et al. 2022).

A DDPM-style UNet whose convs are factorized (2+1)D and whose attention is factorized into
spatial (within a frame) and temporal (across frames) blocks. Resolution is halved in space
only, never in time, so any number of frames works. Time is per frame: `t` of shape `[B, T]`
gives every frame its own noise level (FVDM, Liu et al. 2024; diffusion forcing, Chen et al.
2024), and `[B]` broadcasts.
"""

import einops
import flax.linen as nn
import jax.numpy as jnp

from jvdm.errors import ConfigError, ShapeError
from jvdm.models.layers.attention import VideoSelfAttention
from jvdm.models.layers.conv import SpatialConv
from jvdm.models.layers.embeddings import TimestepEmbedding
from jvdm.models.layers.long_attention import LongAttention
from jvdm.models.layers.norms import frame_group_norm
from jvdm.models.layers.resample import Downsample, Upsample
from jvdm.models.layers.resblock import ResBlock
from jvdm.parallel.axes import ACT_EMBED, BATCH, FRAMES, HEIGHT, WIDTH

VIDEO_AXES = (BATCH, FRAMES, HEIGHT, WIDTH, ACT_EMBED)
# The attention axes (see VideoSelfAttention) applied in turn, by kind of attention block.
ATTENTION_KINDS = {"factorized": ("spatial", "temporal"), "joint": ("joint",)}


def _constrain(x: jnp.ndarray) -> jnp.ndarray:
  """Logical sharding of a `[B, T, H, W, C]` activation at a block boundary."""
  return nn.with_logical_constraint(x, VIDEO_AXES)


class UNet3D(nn.Module):
  """Spatiotemporal UNet: `(x [B, T, H, W, C], t [B] or [B, T]) -> [B, T, H, W, out_channels]`.

  Attributes:
    out_channels: output channels (the data's channels; input channels are read from x).
    patch_size: space-to-depth factor applied to the input (and undone at the output), so the
      UNet's level 0 runs at `H / patch_size`; 1 = none. Cuts the cost of full-resolution
      convs by patch_size**2 (simple diffusion, Hoogeboom et al. 2023, sec. 3.2).
    base_channels: width of level 0; level i has `base_channels * channel_mults[i]`.
    channel_mults: one multiplier per resolution level; level i is at `H / 2**i`.
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attention_levels: levels (0 = full resolution) that get spatial then temporal
      self-attention after each residual block.
    middle_attention: the middle block's attention: "factorized" (spatial then temporal) or
      "joint" (one attention over all frames and pixels: objects are matched across frames
      wherever they moved; cheap at the coarsest level).
    level_attention: the same choice for the blocks of `attention_levels`.
    space_time_rope: spatial and joint attention also know the offset in rows and columns
      between two tokens (3D RoPE, `VideoSelfAttention.space_time_rope`); False: positions in
      space come only from the convs.
    head_dim: channels per attention head; must divide every attended level's width.
    num_groups: GroupNorm groups; must divide every level's width.
    dropout: dropout rate in residual blocks (train=True only).
    identity_init_temporal: start every temporal conv at zero, so the untrained network
      treats frames independently (for inflating an image model); False trains from scratch.
    remat: recompute residual and attention blocks in the backward pass (less memory).
    attention_implementation: `jvdm.parallel.context_attention.attention`'s: None (XLA's
      choice), "xla", "cudnn" or "chunked" (one head and chunk of queries at a time; faster
      on CPU for long sequences).
    causal_temporal_attention: temporal and joint attention see only the same and earlier
      frames (the temporal convs still see one frame on each side).
    pixel_head_channels: with `patch_size` > 1, a full-resolution head of this width (0 = none):
      the last conv unpatchifies to this many channels per pixel, which are joined with the
      network's input pixels and refined by a residual block at full resolution. Behind a
      patch stem every output pixel otherwise comes from a linear map of a coarse token: the
      old default's x0 estimates of nearly clean inputs were blurred (MSE 0.031 at sigma 0.04,
      as at sigma 0.33; benchmarks/one_step_denoising.py). With an 8-wide head, steps on 2 CPU
      cores are 36% slower and far more samples have the right sizes (docs/quality.md).
    long_attention: a sampling-time option for videos longer than the training clips:
      FreeNoise window fusion or FreeLong SpectralBlend in the temporal and joint attention
      (`jvdm.models.layers.long_attention`); set with `model.clone(long_attention=...)`, the
      params are unchanged.
    dtype: compute dtype (e.g. jnp.bfloat16); the output is always float32.
    param_dtype: storage dtype of params.
  """

  out_channels: int = 3
  patch_size: int = 1
  base_channels: int = 32
  channel_mults: tuple[int, ...] = (1, 2, 2)
  num_res_blocks: int = 1
  attention_levels: tuple[int, ...] = (1, 2)
  middle_attention: str = "factorized"
  level_attention: str = "factorized"
  space_time_rope: bool = False
  head_dim: int = 32
  num_groups: int = 8
  dropout: float = 0.0
  identity_init_temporal: bool = False
  remat: bool = False
  attention_implementation: str | None = None
  causal_temporal_attention: bool = False
  pixel_head_channels: int = 0
  long_attention: LongAttention | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    self._validate_fields()

  def _validate_fields(self):
    if not self.channel_mults or any(m <= 0 for m in self.channel_mults):
      raise ConfigError(f"model.channel_mults must be positive ints, got {self.channel_mults}")
    for name in (
      "out_channels",
      "patch_size",
      "base_channels",
      "num_res_blocks",
      "head_dim",
      "num_groups",
    ):
      if getattr(self, name) <= 0:
        raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
    if self.pixel_head_channels < 0 or self.pixel_head_channels % self.num_groups:
      raise ConfigError(
        f"model.pixel_head_channels must be 0 (none) or a positive multiple of "
        f"model.num_groups={self.num_groups}, got {self.pixel_head_channels}"
      )
    if self.pixel_head_channels and self.patch_size == 1:
      raise ConfigError(
        f"model.pixel_head_channels={self.pixel_head_channels} adds a "
        "full-resolution head behind a patch stem; with patch_size=1 the UNet "
        "already runs at full resolution (set pixel_head_channels=0)"
      )
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
    if self.long_attention is not None and not isinstance(self.long_attention, LongAttention):
      raise ConfigError(
        f"model.long_attention must be a LongAttention or None, got {self.long_attention!r}"
      )
    for field in ("middle_attention", "level_attention"):
      if getattr(self, field) not in ATTENTION_KINDS:
        raise ConfigError(
          f"model.{field} must be one of {tuple(ATTENTION_KINDS)}, got {getattr(self, field)!r}"
        )
    num_levels = len(self.channel_mults)
    bad_levels = [level for level in self.attention_levels if not 0 <= level < num_levels]
    if bad_levels:
      raise ConfigError(
        f"model.attention_levels {self.attention_levels} has levels {bad_levels} outside "
        f"0..{num_levels - 1} (channel_mults {self.channel_mults} has {num_levels} levels)"
      )
    widths = [self.base_channels * m for m in self.channel_mults]
    for width in [self.base_channels, *widths]:
      if width % self.num_groups:
        raise ConfigError(
          f"model.num_groups={self.num_groups} must divide every level's channels "
          f"{[self.base_channels, *widths]}; {width} is not divisible"
        )
    attended = [widths[level] for level in self.attention_levels] + [widths[-1]]
    for width in attended:
      if width % self.head_dim:
        raise ConfigError(
          f"model.head_dim={self.head_dim} must divide the channels of every attention "
          f"level (levels {self.attention_levels} and the middle: {attended}); "
          f"{width} is not divisible"
        )

  def _check_inputs(self, x: jnp.ndarray, t: jnp.ndarray):
    if x.ndim != 5:
      raise ShapeError(f"x must be a video [B, T, H, W, C], got shape {x.shape}")
    batch, num_frames, height, width, _ = x.shape
    if t.shape not in ((batch,), (batch, num_frames)):
      raise ShapeError(
        f"t must have shape [B]={(batch,)} or [B, T]={(batch, num_frames)} for x of shape "
        f"{x.shape}, got {t.shape}"
      )
    factor = self.patch_size * 2 ** (len(self.channel_mults) - 1)
    if height % factor or width % factor:
      raise ShapeError(
        f"x height and width must be divisible by patch_size * 2**(len(channel_mults) - 1) = "
        f"{factor} (patch_size {self.patch_size}, channel_mults {self.channel_mults}), got x of "
        f"shape {x.shape}"
      )

  @nn.compact
  def __call__(self, x: jnp.ndarray, t: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """Runs the UNet.

    Args:
      x: noisy video `[B, T, H, W, C]`, floats.
      t: continuous diffusion time in [0, 1] (0 = clean), `[B]` or `[B, T]` (per frame).
      train: enables dropout (needs a "dropout" rng when `dropout > 0`).

    Returns:
      float32 `[B, T, H, W, out_channels]`.
    """
    t = jnp.asarray(t)
    self._check_inputs(x, t)
    batch, num_frames = x.shape[:2]
    t = jnp.broadcast_to(t.reshape(batch, -1), (batch, num_frames)).astype(jnp.float32)

    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    time_embedding = TimestepEmbedding(
      4 * self.base_channels, self.base_channels, name="time_embedding", **kwargs
    )(t)  # [B, T, 4 * base_channels]: one embedding per frame

    # train (argument 3, counting self) is a Python bool and must stay static under remat.
    res_block_cls = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
    attention_cls = nn.remat(VideoSelfAttention) if self.remat else VideoSelfAttention

    def res_block(h, features, name):
      block = res_block_cls(
        features, self.num_groups, self.dropout, self.identity_init_temporal, name=name, **kwargs
      )
      return _constrain(block(h, time_embedding, train))

    def attention(h, name, kind=self.level_attention):
      for axis in ATTENTION_KINDS[kind]:
        h = attention_cls(
          axis,
          self.head_dim,
          self.num_groups,
          self.attention_implementation,
          self.causal_temporal_attention,
          self.long_attention,
          self.space_time_rope,
          name=f"{name}_{axis}_attention",
          **kwargs,
        )(h)
        h = _constrain(h)
      return h

    patch = self.patch_size
    h = einops.rearrange(x, "b t (h p) (w q) c -> b t h w (p q c)", p=patch, q=patch)
    h = _constrain(h.astype(self.dtype))
    h = _constrain(SpatialConv(self.base_channels, name="conv_in", **kwargs)(h))
    skips = [h]
    last_level = len(self.channel_mults) - 1

    for level, mult in enumerate(self.channel_mults):
      for i in range(self.num_res_blocks):
        h = res_block(h, self.base_channels * mult, f"down_{level}_res_{i}")
        if level in self.attention_levels:
          h = attention(h, f"down_{level}_{i}")
        skips.append(h)
      if level != last_level:
        h = _constrain(Downsample(h.shape[-1], name=f"down_{level}_downsample", **kwargs)(h))
        skips.append(h)

    middle_channels = h.shape[-1]
    h = res_block(h, middle_channels, "middle_res_0")
    h = attention(h, "middle", self.middle_attention)
    h = res_block(h, middle_channels, "middle_res_1")

    for level in reversed(range(len(self.channel_mults))):
      features = self.base_channels * self.channel_mults[level]
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = res_block(h, features, f"up_{level}_res_{i}")
        if level in self.attention_levels:
          h = attention(h, f"up_{level}_{i}")
      if level != 0:
        # Upsample straight to the finer level's width: this conv runs at 4x the pixels, and
        # keeping the coarse level's width there (64 -> 64 at 32x32 in the default config)
        # cost more FLOPs than a whole level-0 res block.
        finer_features = self.base_channels * self.channel_mults[level - 1]
        h = _constrain(Upsample(finer_features, name=f"up_{level}_upsample", **kwargs)(h))

    h = frame_group_norm(self.num_groups, name="norm_out", **kwargs)(h)
    h = nn.swish(h)
    if self.pixel_head_channels:  # full resolution: the input's pixels beside the features
      h = SpatialConv(self.pixel_head_channels * patch**2, name="conv_to_pixels", **kwargs)(h)
      h = einops.rearrange(h, "b t h w (p q c) -> b t (h p) (w q) c", p=patch, q=patch)
      h = jnp.concatenate([h, x.astype(self.dtype)], axis=-1)
      h = SpatialConv(self.pixel_head_channels, name="pixel_head_in", **kwargs)(h)
      h = res_block(h, self.pixel_head_channels, "pixel_head_res")
      h = frame_group_norm(self.num_groups, name="pixel_head_norm", **kwargs)(h)
      h = nn.swish(h)
      patch = 1
    # Zero-initialized output: the untrained network predicts 0 (improved DDPM habit).
    h = SpatialConv(self.out_channels * patch**2, zero_init=True, name="conv_out", **kwargs)(h)
    h = einops.rearrange(h, "b t h w (p q c) -> b t (h p) (w q) c", p=patch, q=patch)
    return h.astype(jnp.float32)
