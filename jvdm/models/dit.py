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

from jvdm.diffusion.flow import FlowProcess
from jvdm.errors import ConfigError, ShapeError
from jvdm.models.dit_block import (
  CROSS_ATTENTION_NORMS,
  MODULATIONS,
  TOKEN_AXES,
  BlockContext,
  DiTBlock,
)
from jvdm.models.layers.dense import dense
from jvdm.models.layers.embeddings import TimestepEmbedding, sinusoidal_embedding
from jvdm.models.layers.kv_cache import KVCache, LayerCache
from jvdm.models.layers.long_attention import LongAttention
from jvdm.models.text_encoder import TextEncoder
from jvdm.parallel.axes import EMBED, LAYERS

LAYOUTS = ("full", "factorized", "windowed")
POSITIONS = ("rope", "sincos")


class CachedChunk(NamedTuple):
  """`VideoDiT.with_cache`'s output: the denoised chunk and its keys and values to cache."""

  video: jax.Array  # [B, T, H, W, out_channels]
  keys: jax.Array  # [L, B, F, P, N, D]
  values: jax.Array  # like keys


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

  Switches for Wan 2.1's layout (`jvdm.pretrained.wan_dit` sets them from a diffusers
  config; jvdm's own networks keep the defaults):
    modulation: "adaln_zero" (a projection of the time embedding in every block) or "table"
      (one projection of it shared by all blocks, plus each block's learned
      `scale_shift_table`; the output head's shift and scale are its own table plus the time
      embedding itself).
    time_order: the sinusoids of the timestep, "sin_cos" or "cos_sin" (diffusers'
      `flip_sin_to_cos`).
    cond_projection: project the conditioning embeddings to `hidden_size` with
      Linear-GELU(tanh)-Linear before the blocks (PixArt-alpha's caption projection, Wan's
      `text_embedder`).
    attention_bias, qk_norm, rope_pairs: of every attention layer (`jvdm.models.dit_attention`).
    cross_attention_norm: "plain" (the blocks' LayerNorm without scale), "affine" or "none".
    mlp_dim: the feed-forward width when set, instead of `mlp_ratio * hidden_size`.
    image_dim: width of image embeddings (CLIP features) that every cross-attention also
      attends to, after Wan's image embedder (LayerNorm-Linear-GELU-Linear-LayerNorm); 0 = none.
    integer_timesteps: embed floor(1000 t) instead of 1000 t, as diffusers' UniPC and
      DPM-Solver schedulers call the networks they run (their timesteps are integers); set
      from an imported model's scheduler, so every sampler calls it the same way.
    time_shift: embed the flow process's shifted time s = shift t / (1 + (shift - 1) t)
      (`jvdm.diffusion.flow`), diffusers' sigma, instead of t: networks trained by diffusers
      and the Wan repository are conditioned on s. jvdm's own networks see t (1.0).
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
  modulation: str = "adaln_zero"
  time_order: str = "sin_cos"
  cond_projection: bool = False
  attention_bias: bool = False
  qk_norm: bool = False
  rope_pairs: str = "halves"
  cross_attention_norm: str = "plain"
  mlp_dim: int = 0
  image_dim: int = 0
  integer_timesteps: bool = False
  time_shift: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _check(self, x):
    if self.layout not in LAYOUTS:
      raise ConfigError(f"Unknown DiT layout {self.layout!r}; valid: {list(LAYOUTS)}.")
    if self.position not in POSITIONS:
      raise ConfigError(f"Unknown position embedding {self.position!r}; valid: {list(POSITIONS)}.")
    if self.modulation not in MODULATIONS:
      raise ConfigError(f"Unknown modulation {self.modulation!r}; valid: {list(MODULATIONS)}.")
    if self.cross_attention_norm not in CROSS_ATTENTION_NORMS:
      raise ConfigError(
        f"cross_attention_norm must be one of {CROSS_ATTENTION_NORMS}, "
        f"got {self.cross_attention_norm!r}."
      )
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

  def __call__(self, x, t, train: bool = False, cond=None, cond_mask=None, image=None):
    del train  # no dropout
    video, _ = self.forward(x, t, None, 0, cond, cond_mask, image)
    return video

  def with_cache(
    self, x, t, cache: KVCache, first_frame, cond=None, cond_mask=None, image=None
  ) -> CachedChunk:
    video, (keys, values) = self.forward(x, t, cache, first_frame, cond, cond_mask, image)
    return CachedChunk(video, keys, values)

  @nn.compact
  def forward(self, x, t, cache: KVCache | None, first_frame, cond, cond_mask, image=None):
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
    if self.time_shift != 1.0:
      t = FlowProcess(self.time_shift).shifted(t)
    embedding = TimestepEmbedding(
      self.hidden_size,
      256,
      order=self.time_order,
      integer_times=self.integer_timesteps,
      name="time_embedding",
      **kwargs,
    )(t)
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
    if self.cond_projection and cond is not None:  # PixArt-alpha's caption projection
      cond = dense(self.hidden_size, name="cond_projection_in", **kwargs)(cond)
      cond = dense(self.hidden_size, name="cond_projection_out", **kwargs)(nn.gelu(cond))
    image = self._embed_image(image, batch)
    kinds = 2 if self.layout == "factorized" else 1
    block_time = embedding
    if self.modulation == "table":  # one projection shared by every block's table
      block_time = dense(3 * self.hidden_size * (kinds + 1), name="time_projection", **kwargs)(
        nn.silu(embedding)
      )
    context = BlockContext(block_time, frames, rows, cols, cond, cond_mask, image)

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
      modulation=self.modulation,
      mlp_dim=self.mlp_dim,
      attention_bias=self.attention_bias,
      qk_norm=self.qk_norm,
      rope_pairs=self.rope_pairs,
      cross_attention_norm=self.cross_attention_norm,
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

    if self.modulation == "table":  # Wan's head: its table plus the time embedding itself
      table = self.param(
        "final_scale_shift_table",
        nn.with_logical_partitioning(nn.initializers.normal(self.hidden_size**-0.5), (None, EMBED)),
        (2, self.hidden_size),
        self.param_dtype,
      )
      final = jnp.concatenate([embedding, embedding], axis=-1) + table.reshape(-1)
    else:
      final = dense(2 * self.hidden_size, zero_init=True, name="final_modulation", **kwargs)(
        nn.silu(embedding)
      )
    shift, scale = jnp.split(final[:, :, None, :], 2, axis=-1)
    tokens = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(tokens)
    tokens = tokens * (1 + scale) + shift
    out = dense(pt * ph * pw * self.out_channels, zero_init=True, name="unpatchify", **kwargs)(
      tokens
    )
    out = einops.rearrange(
      out, "b f (h w) (pt ph pw c) -> b (f pt) (h ph) (w pw) c", h=rows_out, pt=pt, ph=ph, pw=pw
    ).astype(jnp.float32)
    return out, new_kv

  def _embed_image(self, image, batch: int):
    """Wan 2.1's image embedder: `[B, L, image_dim] -> [B, L, hidden_size]`; None passes."""
    if not self.image_dim:
      if image is not None:
        raise ConfigError("This DiT takes no image embeddings (image_dim = 0).")
      return None
    if image is None or image.ndim != 3 or image.shape[0] != batch:
      raise ShapeError(
        f"This DiT cross-attends to image embeddings [{batch}, L, {self.image_dim}] as well; "
        f"got {None if image is None else image.shape}."
      )
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    layer_norm = lambda name: nn.LayerNorm(epsilon=1e-5, name=name, **kwargs)
    image = layer_norm("image_norm_in")(image)
    image = dense(self.image_dim, name="image_projection_in", **kwargs)(image)
    image = dense(self.hidden_size, name="image_projection_out", **kwargs)(
      nn.gelu(image, approximate=False)
    )
    return layer_norm("image_norm_out")(image)
