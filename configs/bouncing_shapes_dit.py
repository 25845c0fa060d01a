"""Video DiT on the embedded bouncing-shapes videos; the data, diffusion, optimizer and
sampler settings are those of configs/bouncing_shapes_unet.py.

Run:
  python train.py --config configs/bouncing_shapes_dit.py --workdir /tmp/jvdm_dit
Variants (`--config configs/bouncing_shapes_dit.py:VARIANT`):
  default  a small DiT (patch 1x4x4: 16 frames of 64 tokens, width 192, depth 6); 7.4 s per
           step of 8 videos on 2 CPU cores (factorized layout: 2.8 s), so meant for accelerators.
  causal   the same, frame-causal, for autoregressive generation with a KV cache.
  caption  a CPU-sized caption-conditioned DiT (patch 2x4x4: 8 frames of 64 tokens, width 128,
           depth 4, factorized) with its text encoder; 0.67 s per step on 2 CPU cores
           (benchmarks/train_throughput.py), 1500 steps. Sample with guidance:
           sample.py --prompt "red blue" --guidance_scale 3.
  tiny     a few-second smoke config used by the tests.
  S, B, L, XL  DiT sizes of Peebles & Xie 2023 (Table 1) with 1x2x2 patches, for accelerators.
"""

import ml_collections

from configs import bouncing_shapes_unet

# name -> (hidden size, depth, heads): DiT-S/B/L/XL.
SIZES = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}
VARIANTS = ("default", "causal", "caption", "tiny") + tuple(SIZES)


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the config for `variant` (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
  config = bouncing_shapes_unet.get_config("tiny" if variant == "tiny" else "default")
  with config.unlocked():
    config.model = ml_collections.ConfigDict(
      dict(
        name="dit",
        patch_size=(1, 4, 4),  # (frames, rows, columns) per token
        hidden_size=192,
        depth=6,
        num_heads=6,
        mlp_ratio=4.0,
        layout="full",  # full | factorized (Latte) | windowed (temporal window)
        causal=False,  # frame-causal attention (for KV-cache generation)
        temporal_window=4,  # frames, for layout="windowed"
        position="rope",  # rope (3D rotary) | sincos (3D, added)
        scan_layers=False,  # nn.scan over blocks: compile time independent of depth
        remat="none",  # none | full | dots
        attention_implementation=None,  # None (XLA) | "cudnn" (GPU) | "chunked" (CPU)
        # Split attention's token sequence over the mesh's context axis: "all_to_all"
        # (DeepSpeed-Ulysses; heads must divide by context x tensor) or "ring" (ring
        # attention; any head count); set mesh.shape.context > 1 to use it. None = off.
        context_parallel=None,
        cond_dim=0,  # width of conditioning embeddings to cross-attend to; 0 = unconditional
        # none | caption: cross-attend to the videos' captions (the colours they hold) through
        # a small text encoder trained with the DiT (sets cond_dim to its width).
        condition="none",
        text_encoder=ml_collections.ConfigDict(dict(width=128, depth=2, num_heads=4)),
        dtype="float32",
        param_dtype="float32",
      )
    )
    # adaLN-Zero and zero-initialized outputs train well with plain AdamW at this rate.
    config.optim.learning_rate = 1e-3
    if variant != "tiny":  # the UNet's budget fits its cheaper steps; a DiT step costs 11x
      config.train.num_steps = 1000
      config.train.sample_every = 500
    # Caption-conditioned models: 10% of training videos are shown the empty caption.
    config.train.condition_dropout = 0.1
  if variant == "causal":
    config.model.causal = True
    # Frame-as-prompt training: each video keeps up to 4 leading frames clean, as the
    # context a chunk continues from (ViD-GPT, Ca2-VDM).
    config.diffusion.context_frames = 4
  elif variant == "caption":
    config.model.update(
      dict(
        patch_size=(2, 4, 4),
        hidden_size=128,
        depth=4,
        num_heads=4,
        layout="factorized",
        condition="caption",
      )
    )
    config.train.num_steps = 1500
  elif variant == "tiny":
    config.model.update(dict(patch_size=(1, 4, 4), hidden_size=48, depth=2, num_heads=4))
    config.model.text_encoder.update(dict(width=32, depth=1, num_heads=4))
  elif variant in SIZES:
    hidden, depth, heads = SIZES[variant]
    config.model.update(
      dict(
        patch_size=(1, 2, 2),
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        scan_layers=True,
        remat="dots",
        dtype="bfloat16",
      )
    )
  config.lock()
  return config
