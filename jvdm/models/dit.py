"""Video diffusion transformer (DiT, Peebles & Xie 2023; Latte, Ma et al. 2024), frame-causal
when asked, with a key/value cache for autoregressive generation.

The video is cut into 3D patches (pt x ph x pw) that become tokens, grouped by latent frame:
`[B, F, P, C]` with F = T / pt frames of P = (H / ph) * (W / pw) tokens. Every block is
adaLN-Zero modulated by the timestep embedding of the token's own frame, so a `[B, T]`
timestep gives each frame its own noise level (FVDM; diffusion forcing). Attention layouts:
  full        every token attends to every token (CogVideoX, Wan);
  factorized  spatial attention within a frame, then temporal attention across frames at
              each patch position (Latte's variant 1);
  windowed    full attention restricted to frames less than `temporal_window` apart.
`causal` makes attention frame-causal (block-causal): a token attends to its own frame and
earlier ones (ViD-GPT, Ca2-VDM). Positions are 3D rotary embeddings factorized over
(frame, row, column) (`rope`), or fixed 3D sincos embeddings added to the tokens (`sincos`).

With a `KVCache` (full or windowed layout, causal), `VideoDiT.with_cache` denoises a chunk of
frames attending also to the cached keys and values of earlier frames, and returns the chunk's
own keys and values (`CachedChunk`), which the caller writes once the chunk is final (Ca2-VDM's
cache sharing: the denoising steps of a chunk all reuse one cache of clean frames).

With `long_attention` (sampling videos longer than the training clips), the temporal, full and
windowed attention over more than `long_attention.window` latent frames use FreeNoise's window
fusion or FreeLong's SpectralBlend (`jvdm.models.layers.long_attention`).
"""

from typing import Any, NamedTuple

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError, ShapeError
from jvdm.models.dit_attention import Attention, CrossAttention
from jvdm.models.layers.dense import dense
from jvdm.models.layers.embeddings import TimestepEmbedding, sinusoidal_embedding
from jvdm.models.layers.kv_cache import KVCache, LayerCache
from jvdm.models.layers.long_attention import LongAttention
from jvdm.models.text_encoder import TextEncoder
from jvdm.parallel.axes import ACT_EMBED, BATCH, FRAMES, LAYERS, LENGTH

LAYOUTS = ("full", "factorized", "windowed")
POSITIONS = ("rope", "sincos")
TOKEN_AXES = (BATCH, FRAMES, LENGTH, ACT_EMBED)


class BlockContext(NamedTuple):
  """What every block sees besides the tokens."""

  embedding: jax.Array  # [B, F, C], the time embedding of each latent frame
  frames: jax.Array  # [F], absolute latent frame indices
  rows: jax.Array  # [P], each token's row
  cols: jax.Array  # [P], each token's column
  cond: jax.Array | None  # [B, L, D] or [B, F, L, D] conditioning embeddings
  cond_mask: jax.Array | None  # [B, L] or [B, F, L], False = padding


class CachedChunk(NamedTuple):
  """`VideoDiT.with_cache`'s output: the denoised chunk and its keys and values to cache."""

  video: jax.Array  # [B, T, H, W, out_channels]
  keys: jax.Array  # [L, B, F, P, N, D]
  values: jax.Array  # like keys


class DiTBlock(nn.Module):
  """adaLN-Zero block (Peebles & Xie 2023, sec. 3.2): each sub-layer's input is normalized,
  scaled and shifted, and its output gated, by per-frame projections of the time embedding;
  the gates start at zero, so the block starts as the identity."""

  num_heads: int
  mlp_ratio: float
  layout: str
  causal: bool
  temporal_window: int | None
  rope: bool
  attention_implementation: str | None
  context_parallel: str | None
  dtype: Any
  param_dtype: Any
  long_attention: LongAttention | None = None
  grid: tuple[int, int] | None = None

  @nn.compact
  def __call__(self, x, context: BlockContext, layer_cache: LayerCache | None):
    """x `[B, F, P, C]`. Returns (x, this chunk's (keys, values))."""
    channels = x.shape[-1]
    kinds = ("spatial", "temporal") if self.layout == "factorized" else (self.layout,)
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    modulation = dense(
      3 * channels * (len(kinds) + 1), zero_init=True, name="modulation", **kwargs
    )(nn.silu(context.embedding))[:, :, None, :]  # [B, F, 1, 3C * (n + 1)]
    modulation = jnp.split(modulation, 3 * (len(kinds) + 1), axis=-1)
    norm = lambda h: nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(h)
    new_kv = None
    for i, kind in enumerate(kinds):
      shift, scale, gate = modulation[3 * i : 3 * i + 3]
      attention = Attention(
        self.num_heads,
        kind,
        self.causal,
        self.temporal_window,
        self.rope,
        self.attention_implementation,
        self.context_parallel,
        self.long_attention,
        self.grid,
        name=f"attention_{kind}",
        **kwargs,
      )
      out, kv = attention(
        norm(x) * (1 + scale) + shift,
        context.frames,
        context.rows,
        context.cols,
        layer_cache if kind != "spatial" else None,
      )
      new_kv = kv if kind != "spatial" else new_kv
      x = nn.with_logical_constraint(x + gate * out, TOKEN_AXES)
    if context.cond is not None:
      x = x + CrossAttention(
        self.num_heads, self.attention_implementation, name="cross_attention", **kwargs
      )(norm(x), context.cond, context.cond_mask)
    shift, scale, gate = modulation[-3:]
    h = norm(x) * (1 + scale) + shift
    h = dense(int(channels * self.mlp_ratio), name="mlp_in", **kwargs)(h)
    h = dense(channels, name="mlp_out", **kwargs)(nn.gelu(h))
    return nn.with_logical_constraint(x + gate * h, TOKEN_AXES), new_kv


class VideoDiT(nn.Module):
  """`(x [B, T, H, W, C], t [B] or [B, T]) -> [B, T, H, W, out_channels]`.

  `with_cache(x, t, cache, first_frame)` denoises a chunk after the frames in `cache` (a
  `KVCache`; first_frame is the traced index of x's first latent frame) and returns a
  `CachedChunk`: the output and the chunk's keys and values `[L, B, F, P, N, D]` to write.

  Attributes:
    out_channels: channels of the output (the data's).
    patch_size: (pt, ph, pw), the 3D patch.
    hidden_size, depth, num_heads, mlp_ratio: the transformer's size.
    layout: "full", "factorized" or "windowed" (see the module docstring).
    causal: frame-causal attention.
    temporal_window: frames of the "windowed" layout's window.
    position: "rope" (3D rotary) or "sincos" (3D sincos added to the tokens).
    scan_layers: one `nn.scan` over the blocks (compile time independent of depth).
    remat: recompute each block in the backward pass ("none", "full", "dots": keep matmul
      outputs without batch dims, `jax.checkpoint_policies.dots_with_no_batch_dims_saveable`).
    cond_dim: width of conditioning embeddings `cond [B, L, cond_dim]` (e.g. text encoder
      outputs) that every block cross-attends to; 0 = unconditional. A null condition (e.g.
      zeros, or the empty prompt's embeddings) is the unconditional path of guidance.
    context_parallel: split the token sequence of full/windowed attention over the mesh's
      `context` axis: "all_to_all" (Ulysses) or "ring" (`jvdm.parallel.context_attention`); the
      activations between blocks are sharded over it by the logical rules either way.
    text_encoder: a `TextEncoder` trained with the DiT; then `cond` is caption tokens `[B, L]`
      and `cond_dim` must be the encoder's width.
    long_attention: a sampling-time option for videos longer than the training clips:
      FreeNoise window fusion or FreeLong SpectralBlend in the temporal, full and windowed
      attention (`jvdm.models.layers.long_attention`); set with `model.clone(long_attention=...)`,
      the params are unchanged. Not with a KV cache. With "sincos" positions the tokens keep
      their absolute frame embeddings (FreeNoise's window-relative positions need "rope").
  """

  out_channels: int
  patch_size: tuple[int, int, int] = (1, 2, 2)
  hidden_size: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_ratio: float = 4.0
  layout: str = "full"
  causal: bool = False
  temporal_window: int = 4
  position: str = "rope"
  scan_layers: bool = False
  remat: str = "none"
  attention_implementation: str | None = None
  context_parallel: str | None = None  # None | all_to_all | ring
  cond_dim: int = 0
  text_encoder: TextEncoder | None = None
  long_attention: LongAttention | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _check(self, x):
    if self.layout not in LAYOUTS:
      raise ConfigError(f"Unknown DiT layout {self.layout!r}; valid: {list(LAYOUTS)}.")
    if self.position not in POSITIONS:
      raise ConfigError(f"Unknown position embedding {self.position!r}; valid: {list(POSITIONS)}.")
    if self.context_parallel and self.layout == "factorized":
      raise ConfigError(
        "context_parallel splits the token sequence of the 'full' and 'windowed' "
        "layouts; the 'factorized' layout attends within frames and across them."
      )
    if self.long_attention is not None and not isinstance(self.long_attention, LongAttention):
      raise ConfigError(
        f"long_attention must be a LongAttention or None, got {self.long_attention!r}."
      )
    if self.hidden_size % self.num_heads:
      raise ConfigError(
        f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}."
      )
    if x.ndim != 5:
      raise ShapeError(f"Expected a video [B, T, H, W, C], got shape {x.shape}.")
    for axis, size, patch in zip("THW", x.shape[1:4], self.patch_size):
      if size % patch:
        raise ShapeError(
          f"The video's {axis} = {size} frames/pixels is not divisible by the "
          f"patch size {patch} along {axis} (patch_size={self.patch_size})."
        )

  def __call__(self, x, t, train: bool = False, cond=None, cond_mask=None):
    del train  # no dropout
    video, _ = self.forward(x, t, None, 0, cond, cond_mask)
    return video

  def with_cache(self, x, t, cache: KVCache, first_frame, cond=None, cond_mask=None) -> CachedChunk:
    video, (keys, values) = self.forward(x, t, cache, first_frame, cond, cond_mask)
    return CachedChunk(video, keys, values)

  @nn.compact
  def forward(self, x, t, cache: KVCache | None, first_frame, cond, cond_mask):
    """Both calls: (output, the keys and values of x's frames in every layer)."""
    self._check(x)
    batch, num_frames, height, width, _ = x.shape
    pt, ph, pw = self.patch_size
    frames_out, rows_out, cols_out = num_frames // pt, height // ph, width // pw
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if cache is not None and (self.layout == "factorized" or not self.causal):
      raise ConfigError(
        "A KV cache needs a causal DiT with the 'full' or 'windowed' layout; "
        f"got layout={self.layout!r}, causal={self.causal}."
      )
    if cache is not None and self.long_attention is not None:
      raise ConfigError(
        f"long_attention={self.long_attention} does not work with a KV cache: "
        "a cached chunk attends to earlier frames outside any window; use "
        "model.clone(long_attention=None) for autoregressive generation."
      )

    tokens = einops.rearrange(
      x, "b (f pt) (h ph) (w pw) c -> b f (h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw
    )
    tokens = dense(self.hidden_size, name="patch_embed", **kwargs)(tokens)  # [B, F, P, C]
    frames = first_frame + jnp.arange(frames_out)
    rows = jnp.repeat(jnp.arange(rows_out), cols_out)
    cols = jnp.tile(jnp.arange(cols_out), rows_out)
    if self.position == "sincos":
      third = 2 * (self.hidden_size // 6)
      grid = (frames_out, rows.shape[0])
      embedding = jnp.concatenate(
        [
          jnp.broadcast_to(
            sinusoidal_embedding(frames, self.hidden_size - 2 * third)[:, None],
            grid + (self.hidden_size - 2 * third,),
          ),
          jnp.broadcast_to(sinusoidal_embedding(rows, third)[None], grid + (third,)),
          jnp.broadcast_to(sinusoidal_embedding(cols, third)[None], grid + (third,)),
        ],
        axis=-1,
      )
      tokens = tokens + embedding.astype(tokens.dtype)
    tokens = nn.with_logical_constraint(tokens, TOKEN_AXES)

    t = jnp.broadcast_to(t[:, None], (batch, num_frames)) if t.ndim == 1 else t
    if t.shape != (batch, num_frames):
      raise ShapeError(
        f"Timesteps must be [B]=({batch},) or [B, T]=({batch}, {num_frames}); got {t.shape}."
      )
    t = t.reshape(batch, frames_out, pt).mean(axis=-1)  # one level per latent frame
    embedding = TimestepEmbedding(self.hidden_size, 256, name="time_embedding", **kwargs)(t)
    if self.text_encoder is not None:
      if self.text_encoder.width != self.cond_dim:
        raise ConfigError(
          f"cond_dim={self.cond_dim} must equal the text encoder's width {self.text_encoder.width}."
        )
      if cond is None or cond.ndim not in (2, 3):
        raise ShapeError(
          f"This DiT is caption-conditioned: pass caption tokens [{batch}, L] "
          f"(or [{batch}, T, L], one caption per frame) as cond (the null caption "
          f"for an unconditional sample); got "
          f"{None if cond is None else cond.shape}."
        )
      leading = cond.shape[:-1]  # [B] or [B, T]: one caption per video or per frame
      cond, cond_mask = self.text_encoder(cond.reshape(-1, cond.shape[-1]))
      cond = cond.reshape(leading + cond.shape[1:])
      cond_mask = cond_mask.reshape(leading + cond_mask.shape[1:])
    if self.cond_dim and (
      cond is None
      or cond.ndim not in (3, 4)
      or cond.shape[0] != batch
      or cond.shape[-1] != self.cond_dim
      or (cond.ndim == 4 and cond.shape[1] != num_frames)
    ):
      raise ShapeError(
        f"This DiT cross-attends to conditioning embeddings [B, L, {self.cond_dim}]"
        f" (or [B, T, L, {self.cond_dim}], one per frame) with B = {batch}, "
        f"T = {num_frames}; got {None if cond is None else cond.shape}."
      )
    if cond is not None and cond.ndim == 4:  # the first frame of each temporal patch speaks
      cond = cond[:, ::pt]
      cond_mask = None if cond_mask is None else cond_mask[:, ::pt]
    if not self.cond_dim and cond is not None:
      raise ConfigError("This DiT is unconditional (cond_dim = 0) but got a condition.")
    context = BlockContext(embedding, frames, rows, cols, cond, cond_mask)

    block_kwargs = dict(
      num_heads=self.num_heads,
      mlp_ratio=self.mlp_ratio,
      layout=self.layout,
      causal=self.causal,
      temporal_window=self.temporal_window,
      rope=self.position == "rope",
      attention_implementation=self.attention_implementation,
      context_parallel=self.context_parallel,
      long_attention=self.long_attention,
      grid=(rows_out, cols_out),
      **kwargs,
    )
    block_cls = DiTBlock
    if self.remat != "none":
      policy = (
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable if self.remat == "dots" else None
      )
      block_cls = nn.remat(DiTBlock, policy=policy)
    layer_caches = None if cache is None else (cache.keys, cache.values)
    slot_frames = None if cache is None else cache.slot_frames
    if self.scan_layers:

      def body(block, h, shared, layer_cache):
        block_context, block_slot_frames = shared
        full_cache = None if layer_cache is None else LayerCache(*layer_cache, block_slot_frames)
        return block(h, block_context, full_cache)

      blocks = nn.scan(
        body,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(nn.broadcast, 0),
        length=self.depth,
        metadata_params={nn.PARTITION_NAME: LAYERS},
      )
      tokens, new_kv = blocks(
        block_cls(name="blocks", **block_kwargs), tokens, (context, slot_frames), layer_caches
      )
    else:
      collected = []
      for i in range(self.depth):
        layer_cache = (
          None if cache is None else LayerCache(cache.keys[i], cache.values[i], slot_frames)
        )
        tokens, kv = block_cls(name=f"block_{i}", **block_kwargs)(tokens, context, layer_cache)
        collected.append(kv)
      new_kv = jax.tree.map(lambda *a: jnp.stack(a), *collected)

    shift, scale = jnp.split(
      dense(2 * self.hidden_size, zero_init=True, name="final_modulation", **kwargs)(
        nn.silu(embedding)
      )[:, :, None, :],
      2,
      axis=-1,
    )
    tokens = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(tokens)
    tokens = tokens * (1 + scale) + shift
    out = dense(pt * ph * pw * self.out_channels, zero_init=True, name="unpatchify", **kwargs)(
      tokens
    )
    out = einops.rearrange(
      out, "b f (h w) (pt ph pw c) -> b (f pt) (h ph) (w pw) c", h=rows_out, pt=pt, ph=ph, pw=pw
    ).astype(jnp.float32)
    return out, new_kv
