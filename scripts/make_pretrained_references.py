"""Writes the reference fixtures of published-model imports (`tests/pretrained/`): tiny
random-weight instances saved in their usual folder layout, with inputs and the reference
implementation's outputs.

  pip install torch==2.13.0 transformers safetensors diffusers==0.42.1 accelerate
  python scripts/make_pretrained_references.py

Written in `tests/fixtures/pretrained/`:
- `wan_t2v_tiny/`: a tiny diffusers-format Wan 2.1 text-to-video folder, component by component:
  - `text_encoder/`: a UMT5 encoder (transformers' `UMT5EncoderModel`): `config.json`,
    `model.safetensors`, and `io.npz` (token ids, mask, last hidden state);
  - `tokenizer/`: a tiny tokenizer in the layout of Wan's (a unigram `tokenizer.json`, T5's
    `</s>` appended, `tokenizer_config.json`), and `prompts.npz`: what transformers' tokenizer
    and diffusers' `WanPipeline._get_t5_prompt_embeds` give for a few prompts with the tiny
    encoder (ids, mask, embeddings zeroed after each prompt);
  - `transformer/`: diffusers' `WanTransformer3DModel` (see `wan_dit_i2v_tiny/` below);
  - `vae/`: diffusers' `AutoencoderKLWan`, and `io.npz` (a 9-frame video, the posterior mean
    and logvar of `encode`, and `decode` of the mean);
  - `scheduler/`, `model_index.json`: Wan 2.1's; and `pipeline.npz`: diffusers' `WanPipeline`
    run on the folder for a few steps from given initial latents, with a negative prompt;
- `wan_dit_i2v_tiny/` (and `wan_t2v_tiny/transformer/`): diffusers' `WanTransformer3DModel`
  (image-to-video with image embeddings and 8 input channels; text-to-video) saved by
  `save_pretrained`, with `io.npz`: inputs, the output at one timestep per video, and at one
  timestep per latent frame (diffusers' per-token timesteps, each frame's tokens sharing one);
  and `original_keys.json`: each diffusers key's name in the Wan repository's layout, checked
  by converting them back with diffusers' own single-file converter;
- `wan_rope.npz`: diffusers' `WanRotaryPosEmbed` cos and sin tables on a 3 x 4 x 5 grid;
- `wan_i2v_tiny/`: a tiny Wan 2.1 image-to-video folder (`wan_i2v_folder`): the T2V folder's
  text encoder, tokenizer, VAE and scheduler, an I2V transformer, a tiny `CLIPVisionModel` with
  `io.npz` (images, transformers' pixel values, penultimate hidden states) and its
  `CLIPImageProcessor`, and `pipeline.npz`: diffusers' `WanImageToVideoPipeline` on the folder.
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


def _randomize(model: torch.nn.Module, scale: float) -> None:
  """Weights of a realistic scale: init leaves tiny logits and zero biases untested."""
  torch.manual_seed(0)
  with torch.no_grad():
    for name, parameter in model.named_parameters():
      if name.endswith("norm_q.weight") or "norm" in name and name.endswith("weight"):
        parameter.copy_(1.0 + 0.2 * torch.randn_like(parameter))  # norm scales around 1
      else:
        parameter.normal_(0.0, scale)


WAN_DIT_TINY = dict(  # a head of 12: RoPE parts of 4 (frames), 4 (rows), 4 (columns)
  patch_size=(1, 2, 2),
  num_attention_heads=2,
  attention_head_dim=12,
  out_channels=4,
  text_dim=32,  # the width of umt5_tiny
  freq_dim=256,
  ffn_dim=40,
  num_layers=2,
  cross_attn_norm=True,
  qk_norm="rms_norm_across_heads",
  eps=1e-6,
  rope_max_seq_len=32,
)


def wan_dit_tiny(out: pathlib.Path, image_to_video: bool) -> None:
  """A tiny `WanTransformer3DModel`, its inputs and outputs (the module docstring)."""
  from diffusers import WanTransformer3DModel  # pylint: disable=g-import-not-at-top

  if image_to_video:  # diffusers splits the context at 512 text tokens: image tokens first
    config = dict(WAN_DIT_TINY, in_channels=8, image_dim=12, added_kv_proj_dim=24)
    text_length, image = 512, torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(3))
  else:
    config = dict(WAN_DIT_TINY, in_channels=4)
    text_length, image = 7, None
  model = WanTransformer3DModel(**config).eval()
  _randomize(model, 0.3)
  model.save_pretrained(out)
  generator = torch.Generator().manual_seed(1)
  video = torch.randn(2, config["in_channels"], 3, 4, 6, generator=generator)
  text = torch.randn(2, text_length, config["text_dim"], generator=generator)
  timestep = torch.tensor([999, 250])
  frame_timesteps = torch.tensor([[999, 500, 3], [0, 250, 990]])  # [B, F]
  tokens_per_frame = (4 // 2) * (6 // 2)
  with torch.no_grad():
    output = model(video, timestep, text, image, return_dict=False)[0]
    per_frame = model(
      video,
      frame_timesteps.repeat_interleave(tokens_per_frame, dim=1),
      text,
      image,
      return_dict=False,
    )[0]
  arrays = dict(
    video=video,
    text=text,
    timestep=timestep,
    frame_timesteps=frame_timesteps,
    output=output,
    per_frame_output=per_frame,
  )
  if image is not None:
    arrays["image"] = image
  np.savez(out / "io.npz", **{k: v.numpy() for k, v in arrays.items()})
  _original_keys(model, out)
  print(f"wrote {out}")


# diffusers' name -> the Wan repository's (WanModel in wan/modules/model.py), most specific first.
_TO_ORIGINAL = (
  ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
  ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
  ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
  ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
  ("condition_embedder.time_proj", "time_projection.1"),
  ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
  ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
  ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
  ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
  ("proj_out", "head.head"),
  ("attn1", "self_attn"),
  ("attn2", "cross_attn"),
  (".to_out.0.", ".o."),
  (".to_q.", ".q."),
  (".to_k.", ".k."),
  (".to_v.", ".v."),
  (".add_k_proj.", ".k_img."),
  (".add_v_proj.", ".v_img."),
  (".norm_added_k.", ".norm_k_img."),
  (".norm2.", ".norm3."),
  ("ffn.net.0.proj", "ffn.0"),
  ("ffn.net.2", "ffn.2"),
)


def _original_keys(model, out: pathlib.Path) -> None:
  from diffusers.loaders.single_file_utils import (  # pylint: disable=g-import-not-at-top
    convert_wan_transformer_to_diffusers,
  )

  names = {}
  for key in model.state_dict():
    original = key
    if key == "scale_shift_table":
      original = "head.modulation"
    elif key.endswith(".scale_shift_table"):
      original = key.replace(".scale_shift_table", ".modulation")
    for diffusers_name, original_name in _TO_ORIGINAL:
      original = original.replace(diffusers_name, original_name)
    names["model." + original] = key  # under "model.", as CausVid/Self-Forcing save them
  converted = convert_wan_transformer_to_diffusers(
    {k.replace("model.", "model.diffusion_model.", 1): torch.zeros(1) for k in names}
  )
  assert sorted(converted) == sorted(names.values()), "diffusers reads these keys otherwise"
  (out / "original_keys.json").write_text(json.dumps(names, indent=1))


WAN_SCHEDULER = {  # Wan2.1-T2V-1.3B-Diffusers/scheduler/scheduler_config.json, the keys it sets
  "_class_name": "UniPCMultistepScheduler",
  "beta_end": 0.02,
  "beta_schedule": "linear",
  "beta_start": 0.0001,
  "disable_corrector": [],
  "dynamic_thresholding_ratio": 0.995,
  "final_sigmas_type": "zero",
  "flow_shift": 3.0,
  "lower_order_final": True,
  "num_train_timesteps": 1000,
  "predict_x0": True,
  "prediction_type": "flow_prediction",
  "rescale_betas_zero_snr": False,
  "sample_max_value": 1.0,
  "solver_order": 2,
  "solver_p": None,
  "solver_type": "bh2",
  "steps_offset": 0,
  "thresholding": False,
  "timestep_spacing": "linspace",
  "trained_betas": None,
  "use_beta_sigmas": False,
  "use_dynamic_shifting": False,
  "use_exponential_sigmas": False,
  "use_flow_sigmas": True,
  "use_karras_sigmas": False,
}
WAN_INDEX = {
  "_class_name": "WanPipeline",
  "_diffusers_version": "0.42.1",
  "scheduler": ["diffusers", "UniPCMultistepScheduler"],
  "text_encoder": ["transformers", "UMT5EncoderModel"],
  "tokenizer": ["transformers", "T5TokenizerFast"],
  "transformer": ["diffusers", "WanTransformer3DModel"],
  "vae": ["diffusers", "AutoencoderKLWan"],
}
PIPELINE_PROMPTS = ["a red square bounces", "the blue circle"]
PIPELINE_SETTINGS = dict(  # 9 frames (3 latent frames) of 32 x 48, 6 steps, guidance 5
  num_frames=9,
  height=32,
  width=48,
  num_inference_steps=6,
  guidance_scale=5.0,
  max_sequence_length=MAX_LENGTH,
)


def wan_folder(out: pathlib.Path) -> None:
  """The index and scheduler of the tiny diffusers-format Wan 2.1 folder `out` (its other
  components are written by the functions above), and `pipeline.npz`: diffusers'
  `WanPipeline` on it from given initial latents, with a negative prompt."""
  from diffusers import WanPipeline  # pylint: disable=g-import-not-at-top

  (out / "scheduler").mkdir(parents=True, exist_ok=True)
  (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(WAN_SCHEDULER, indent=2))
  (out / "model_index.json").write_text(json.dumps(WAN_INDEX, indent=2))
  pipeline = WanPipeline.from_pretrained(out, dtype=torch.float32)
  latents = torch.randn(2, 4, 3, 4, 6, generator=torch.Generator().manual_seed(5))
  run = lambda output_type: (
    pipeline(
      PIPELINE_PROMPTS,
      negative_prompt="a green circle",
      latents=latents,
      output_type=output_type,
      **PIPELINE_SETTINGS,
    ).frames
  )
  final, video = run("latent"), run("np")  # video: decoded, [0, 1], [B, T, H, W, 3]
  np.savez(
    out / "pipeline.npz",
    prompts=np.array(PIPELINE_PROMPTS),
    negative_prompt=np.array("a green circle"),
    initial_latents=latents.numpy(),
    final_latents=final.numpy(),
    video=video,
    **{k: np.array(v) for k, v in PIPELINE_SETTINGS.items()},
  )
  print(f"wrote {out}")


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


CLIP_TINY = dict(  # CLIP ViT's layout (Wan 2.1 I2V's image_encoder acts with "gelu") at width 16
  hidden_size=16,
  intermediate_size=32,
  num_hidden_layers=3,
  num_attention_heads=2,
  image_size=24,
  patch_size=8,
  hidden_act="gelu",
  layer_norm_eps=1e-5,
  projection_dim=8,
)
CLIP_PROCESSOR = dict(  # CLIP's preprocessing at the tiny encoder's size: resize, crop, normalize
  crop_size={"height": 24, "width": 24},
  size={"shortest_edge": 24},
  do_center_crop=True,
  do_convert_rgb=True,
  do_normalize=True,
  do_rescale=True,
  do_resize=True,
  image_mean=[0.48145466, 0.4578275, 0.40821073],
  image_std=[0.26862954, 0.26130258, 0.27577711],
  resample=3,
  rescale_factor=1 / 255,
)
I2V_SETTINGS = dict(  # 9 frames (3 latent frames) of 32 x 48 from a 40 x 56 image, 4 steps
  num_frames=9,
  height=32,
  width=48,
  num_inference_steps=4,
  guidance_scale=5.0,
  max_sequence_length=512,  # diffusers' Wan attention splits image tokens off at 512 text tokens
)


def _random_image(seed: int, height: int, width: int):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
  return Image.fromarray(pixels)


def clip_vision_tiny(out: pathlib.Path) -> None:
  """A tiny `CLIPVisionModel` (`image_encoder/`) and its `CLIPImageProcessor`
  (`image_processor/`); `io.npz`: two images, their pixel values as transformers' processor
  gives them, and the penultimate hidden states (as Wan's I2V pipeline takes them) with
  `hidden_act` "gelu" and "quick_gelu"."""
  from transformers import (  # pylint: disable=g-import-not-at-top
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
  )

  torch.manual_seed(0)
  model = CLIPVisionModel(CLIPVisionConfig(**CLIP_TINY)).eval()
  _randomize(model, 0.3)
  model.save_pretrained(out / "image_encoder")
  processor = CLIPImageProcessor(**CLIP_PROCESSOR)
  processor.save_pretrained(out / "image_processor")
  images = [_random_image(7, 40, 56), _random_image(8, 30, 20)]
  pixels = processor(images=images, return_tensors="pt")["pixel_values"]
  quick = CLIPVisionModel(CLIPVisionConfig(**dict(CLIP_TINY, hidden_act="quick_gelu"))).eval()
  quick.load_state_dict(model.state_dict())
  with torch.no_grad():
    hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    hidden_quick = quick(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
  np.savez(
    out / "image_encoder" / "io.npz",
    image_0=np.asarray(images[0]),
    image_1=np.asarray(images[1]),
    pixel_values=pixels.numpy(),
    hidden=hidden.numpy(),
    hidden_quick_gelu=hidden_quick.numpy(),
  )
  print(f"wrote {out / 'image_encoder'}")


WAN_I2V_INDEX = dict(
  WAN_INDEX,
  _class_name="WanImageToVideoPipeline",
  image_encoder=["transformers", "CLIPVisionModel"],
  image_processor=["transformers", "CLIPImageProcessor"],
  transformer_2=[None, None],
  boundary_ratio=None,
  expand_timesteps=False,
)


def wan_i2v_folder(out: pathlib.Path, t2v: pathlib.Path) -> None:
  """The tiny Wan 2.1 image-to-video folder (the module docstring): the T2V folder's text
  encoder, tokenizer, VAE and scheduler, a tiny I2V transformer (in_channels 2 z + 4, image
  embeddings of the tiny CLIP's width), the tiny CLIP, and `pipeline.npz`: diffusers'
  `WanImageToVideoPipeline` from given initial latents, one image for two prompts, with a
  negative prompt."""
  import shutil  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top

  from diffusers import (  # pylint: disable=g-import-not-at-top
    WanImageToVideoPipeline,
    WanTransformer3DModel,
  )
  from diffusers.pipelines.wan import pipeline_wan_i2v  # pylint: disable=g-import-not-at-top

  if not hasattr(pipeline_wan_i2v, "ftfy"):  # without ftfy installed: it leaves ASCII prompts be
    pipeline_wan_i2v.ftfy = types.SimpleNamespace(fix_text=lambda text: text)

  references = lambda folder, names: [n for n in names if n.endswith(".npz")]
  for name in ("text_encoder", "tokenizer", "vae", "scheduler"):
    shutil.copytree(t2v / name, out / name, dirs_exist_ok=True, ignore=references)
  clip_vision_tiny(out)
  z_dim = json.loads((t2v / "vae" / "config.json").read_text())["z_dim"]
  transformer = WanTransformer3DModel(
    **dict(WAN_DIT_TINY, in_channels=2 * z_dim + 4, out_channels=z_dim),
    image_dim=CLIP_TINY["hidden_size"],
    added_kv_proj_dim=WAN_DIT_TINY["num_attention_heads"] * WAN_DIT_TINY["attention_head_dim"],
  ).eval()
  _randomize(transformer, 0.3)
  transformer.save_pretrained(out / "transformer")
  (out / "model_index.json").write_text(json.dumps(WAN_I2V_INDEX, indent=2))
  pipeline = WanImageToVideoPipeline.from_pretrained(out, dtype=torch.float32)
  image = _random_image(9, 40, 56)  # resized to the video's 32 x 48 by diffusers (Lanczos)
  latents = torch.randn(2, z_dim, 3, 4, 6, generator=torch.Generator().manual_seed(5))
  final = pipeline(
    image,
    PIPELINE_PROMPTS,
    negative_prompt="a green circle",
    latents=latents,
    output_type="latent",
    **I2V_SETTINGS,
  ).frames
  resized = pipeline.video_processor.preprocess(image, height=32, width=48)  # [1, 3, H, W]
  with torch.no_grad():
    image_embeds = pipeline.encode_image(image, torch.device("cpu"))
  np.savez(
    out / "pipeline.npz",
    image=np.asarray(image),
    resized_image=resized.numpy(),
    image_embeds=image_embeds.numpy(),
    prompts=np.array(PIPELINE_PROMPTS),
    negative_prompt=np.array("a green circle"),
    initial_latents=latents.numpy(),
    final_latents=final.numpy(),
    **{k: np.array(v) for k, v in I2V_SETTINGS.items()},
  )
  print(f"wrote {out}")


if __name__ == "__main__":
  TINY = OUT / "wan_t2v_tiny"  # a diffusers-format Wan 2.1 folder, component by component
  umt5_tiny(TINY / "text_encoder")
  tokenizer_tiny(TINY / "tokenizer", TINY / "text_encoder")
  wan_dit_tiny(TINY / "transformer", image_to_video=False)
  wan_vae_tiny(TINY / "vae")
  wan_folder(TINY)
  wan_dit_tiny(OUT / "wan_dit_i2v_tiny", image_to_video=True)
  wan_rope(OUT)
  wan_i2v_folder(OUT / "wan_i2v_tiny", TINY)
