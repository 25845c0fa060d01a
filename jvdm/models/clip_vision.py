"""CLIP's image encoder (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision", sec. 2.4), the ViT of Dosovitskiy et al. 2021 that Wan 2.1's
image-to-video models take image features from.

The image is cut into patches by a strided conv (no bias); a learned class token goes first and
learned positions are added; a LayerNorm follows (CLIP's "pre_layrnorm"). Each layer is pre-norm:
LayerNorm, multi-head self-attention (biases on q, k, v and out), LayerNorm, an MLP (QuickGELU,
x sigmoid(1.702 x), in OpenAI's CLIP; exact GELU in OpenCLIP's ViT-H/14). The output is the
hidden states after `num_layers` layers: Wan's pipeline takes transformers' `hidden_states[-2]`,
the input of the last layer, so its loader builds all but the last layer and no final norm.
`jvdm.pretrained.clip_vision` maps transformers' `CLIPVisionModel` weights onto these names.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
  "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
  "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


class CLIPVisionLayer(nn.Module):
  """LayerNorm-attention-LayerNorm-MLP, each added back: `[B, L, D] -> [B, L, D]`."""

  num_heads: int
  mlp_dim: int
  activation: str
  epsilon: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    head_dim = width // self.num_heads
    norm = lambda name: nn.LayerNorm(epsilon=self.epsilon, dtype=self.dtype, name=name)
    dense = lambda features, name: nn.Dense(features, dtype=self.dtype, name=name)
    h = norm("attention_norm")(x)
    heads = lambda name: dense(width, name)(h).reshape(*h.shape[:2], self.num_heads, head_dim)
    attended = jax.nn.dot_product_attention(heads("query"), heads("key"), heads("value"))
    x = x + dense(width, "out")(attended.reshape(h.shape))
    h = norm("mlp_norm")(x)
    h = dense(width, "down")(ACTIVATIONS[self.activation](dense(self.mlp_dim, "up")(h)))
    return x + h


class CLIPVisionEncoder(nn.Module):
  """`pixels [B, S, S, 3]` (CLIP-normalized) -> hidden states `[B, 1 + (S / patch)^2, width]`
  after `num_layers` layers (the class token first)."""

  image_size: int
  patch_size: int
  width: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  # "quick_gelu" (OpenAI's CLIP) or "gelu" (exact; OpenCLIP's ViT-H/14, Wan's image encoder)
  activation: str = "quick_gelu"
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    patches = nn.Conv(
      self.width,
      (self.patch_size, self.patch_size),
      strides=(self.patch_size, self.patch_size),
      padding="VALID",
      use_bias=False,
      dtype=self.dtype,
      name="patch_embedding",
    )(pixels)
    patches = patches.reshape(patches.shape[0], -1, self.width)  # rows then columns, as torch
    class_token = self.param("class_embedding", nn.initializers.normal(0.02), (self.width,))
    num_positions = (self.image_size // self.patch_size) ** 2 + 1
    positions = self.param(
      "position_embedding", nn.initializers.normal(0.02), (num_positions, self.width)
    )
    class_tokens = jnp.broadcast_to(class_token, (patches.shape[0], 1, self.width))
    x = jnp.concatenate([class_tokens.astype(patches.dtype), patches], axis=1) + positions
    x = nn.LayerNorm(epsilon=self.epsilon, dtype=self.dtype, name="pre_norm")(x)
    for i in range(self.num_layers):
      x = CLIPVisionLayer(
        self.num_heads, self.mlp_dim, self.activation, self.epsilon, self.dtype, name=f"layer_{i}"
      )(x)
    return x
