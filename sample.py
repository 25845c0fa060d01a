"""Samples videos from a trained workdir (EMA params of its latest checkpoint).

  python sample.py --workdir runs/bouncing_shapes_unet
  python sample.py --workdir W --num_samples 16 --num_frames 16 --steps 100 --seed 1 --out out/
  python sample.py --workdir W --sampler dpmpp_2m --steps 20 --frame_stagger 0
  python sample.py --workdir W_causal_dit --chunks 32    # 128 frames, chunk by chunk
  python sample.py --workdir W_caption_dit --prompt "red blue" --guidance_scale 3
  python sample.py --workdir W --num_frames 128 --long fifo      # 8x the training length
  python sample.py --workdir W --num_frames 64 --long freenoise --stride 4
  python sample.py --workdir W_caption_dit --num_frames 16 --long gen_l_video --stride 8 --prompt "red | blue"
  python sample.py --workdir W_caption_dit --num_frames 16 --long freenoise --stride 8 --prompt "red | blue"
  python sample.py --workdir runs/bouncing_shapes_latent --decode_chunk_frames 2   # latents -> pixels
  python sample.py --pretrained Wan2.1-T2V-1.3B-Diffusers --prompt "a red fox in the snow" \
      --num_frames 81 --out out/ [--negative_prompt "..."] [--long freenoise --num_frames 161]
  python sample.py --pretrained Wan2.1-I2V-14B-480P-Diffusers --image first.png --prompt "..." --out out/

Writes samples.mp4 and samples.gif (a grid), samples.npz (key `videos`, uint8
[N, T, H, W, C]) and, for models trained on the synthetic data, metrics.json.
"""

import json

from typing import Any, Sequence

from absl import flags

from jvdm.cli import fail, parse_flags, reported_errors, run_script
from jvdm.pipelines.long.long_video import METHODS as LONG_METHODS
from jvdm.pretrained.sample_folder import sample_pretrained
from jvdm.sampling import sample_from_workdir

FLAGS = flags.FlagValues()  # this script's own flags (train.py has its own)

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "The --workdir given to train.py (or give --pretrained).", flag_values=FLAGS
)
_PRETRAINED = flags.DEFINE_string(
  "pretrained",
  None,
  "A diffusers-format Wan 2.1 text-to-video folder (model_index.json, transformer/, vae/, "
  "text_encoder/, tokenizer/, scheduler/) to sample from instead of a workdir.",
  flag_values=FLAGS,
)
_NEGATIVE_PROMPT = flags.DEFINE_string(
  "negative_prompt",
  None,
  "--pretrained: guidance pushes away from it; default ''.",
  flag_values=FLAGS,
)
_IMAGE = flags.DEFINE_string(
  "image",
  None,
  "--pretrained with an image-to-video folder: the first frame (an image file).",
  flag_values=FLAGS,
)
_HEIGHT = flags.DEFINE_integer(
  "height", None, "--pretrained: video height, a multiple of 16; default 480.", flag_values=FLAGS
)
_WIDTH = flags.DEFINE_integer(
  "width", None, "--pretrained: video width, a multiple of 16; default 832.", flag_values=FLAGS
)
_OUT = flags.DEFINE_string(
  "out", None, "Output folder; default WORKDIR/samples/sample_seed<SEED>.", flag_values=FLAGS
)
_NUM_SAMPLES = flags.DEFINE_integer(
  "num_samples", None, "Number of videos; default 8 (--pretrained: 1).", flag_values=FLAGS
)
_NUM_FRAMES = flags.DEFINE_integer(
  "num_frames", None, "Frames per video; default: as trained.", flag_values=FLAGS
)
_STEPS = flags.DEFINE_integer(
  "steps", None, "Sampler steps; default: the config's.", flag_values=FLAGS
)
_ETA = flags.DEFINE_float(
  "eta", None, "DDIM eta (0 = deterministic); default: the config's.", flag_values=FLAGS
)
_FRAME_STAGGER = flags.DEFINE_float(
  "frame_stagger",
  None,
  "In [0, 1): later frames lag on the time grid (Diffusion Forcing's "
  "pyramid schedule); default: the config's.",
  flag_values=FLAGS,
)
_SAMPLER = flags.DEFINE_string(
  "sampler",
  None,
  "ddim | ddpm | euler | euler_ancestral | heun | dpmpp_2m | dpmpp_2m_sde | "
  "unipc | lcm | flow_euler; default: the config's.",
  flag_values=FLAGS,
)
_SPACING = flags.DEFINE_string(
  "spacing",
  None,
  "uniform | linspace | leading | trailing | karras (diffusers' timestep "
  "spacings; lcm and flow_euler have their own); default: the config's.",
  flag_values=FLAGS,
)
_TIME_POWER = flags.DEFINE_float(
  "time_power",
  None,
  "spacing uniform: each frame's time is level**time_power; > 1 crowds "
  "the steps near clean data; default: the config's.",
  flag_values=FLAGS,
)
_GUIDANCE_SCALE = flags.DEFINE_float(
  "guidance_scale",
  None,
  "Classifier-free guidance scale (needs a conditional model); default: the config's.",
  flag_values=FLAGS,
)
_CHUNKS = flags.DEFINE_integer(
  "chunks",
  None,
  "Generate autoregressively, this many chunks of config.sample.chunk_frames "
  "frames, with the KV cache (a causal DiT: configs/bouncing_shapes_dit.py:causal).",
  flag_values=FLAGS,
)
_PROMPT = flags.DEFINE_string(
  "prompt",
  None,
  "Caption of every video, for a caption-conditioned model: colour names, e.g. "
  "'red blue' ('' = unconditional); with --long gen_l_video, 'red | blue' gives one per "
  "window; with --long freenoise, any number spread over the video (motion injection); "
  "default: captions of held-out synthetic videos.",
  flag_values=FLAGS,
)
_LONG = flags.DEFINE_enum(
  "long",
  None,
  list(LONG_METHODS),
  "Generate --num_frames beyond the training length with "
  "this long-video method (docs/long_videos.md).",
  flag_values=FLAGS,
)
_WINDOW = flags.DEFINE_integer(
  "window", None, "--long: frames per window; default: the training length.", flag_values=FLAGS
)
_STRIDE = flags.DEFINE_integer(
  "stride",
  None,
  "--long freenoise | gen_l_video: frames between window starts; default: window / 2.",
  flag_values=FLAGS,
)
_NUM_PARTITIONS = flags.DEFINE_integer(
  "num_partitions",
  None,
  "--long fifo: windows in the queue (steps per frame = partitions x window); default 4.",
  flag_values=FLAGS,
)
_FIFO_TAIL = flags.DEFINE_enum(
  "fifo_tail",
  None,
  ["gaussian", "ouroboros"],
  "--long fifo: new tail frames; default gaussian.",
  flag_values=FLAGS,
)
_CONTEXT_FRAMES = flags.DEFINE_integer(
  "context_frames",
  None,
  "--long autoregressive: frames each clip continues from; default: window / 2.",
  flag_values=FLAGS,
)
_DECODE_CHUNK_FRAMES = flags.DEFINE_integer(
  "decode_chunk_frames",
  None,
  "Latent diffusion: latent frames the VAE decodes at a time "
  "(memory stays flat in the video's length); 0 = all at once; default the config's.",
  flag_values=FLAGS,
)
_DECODE_TILE = flags.DEFINE_integer(
  "decode_tile",
  None,
  "Latent diffusion: latent pixels per spatial tile when decoding (tiles "
  "overlap and are blended); 0 = whole frames; default the config's.",
  flag_values=FLAGS,
)
_DECODE_TILE_OVERLAP = flags.DEFINE_integer(
  "decode_tile_overlap",
  None,
  "Latent pixels shared by neighbouring decode tiles.",
  flag_values=FLAGS,
)
_DECODE_ROW_SLICES = flags.DEFINE_integer(
  "decode_row_slices",
  None,
  "Latent diffusion: the VAE decoder's convs run in this many bands "
  "of rows (feature slicing: the same result, less memory); default the config's.",
  flag_values=FLAGS,
)
_SEED = flags.DEFINE_integer("seed", 0, "The same seed gives the same videos.", flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer(
  "batch_size", None, "Videos per jitted call; default 8 (--pretrained: 1).", flag_values=FLAGS
)
# Flags of workdir sampling that a published model's folder fixes (its scheduler) or lacks.
_WORKDIR_ONLY = ("eta", "frame_stagger", "sampler", "spacing", "time_power", "chunks")


def _given(**flag_values):
  """The flags that were given (not None), by field name."""
  return {name: value for name, value in flag_values.items() if value is not None}


def _decode_settings():
  """The decode flags given, as `LatentSpace` fields."""
  return _given(
    decode_chunk_frames=_DECODE_CHUNK_FRAMES.value,
    decode_tile=_DECODE_TILE.value,
    decode_tile_overlap=_DECODE_TILE_OVERLAP.value,
    decode_row_slices=_DECODE_ROW_SLICES.value,
  )


def _long_settings():
  """The --long flags given, as `LongVideoSampler` fields."""
  return _given(
    window=_WINDOW.value,
    stride=_STRIDE.value,
    num_partitions=_NUM_PARTITIONS.value,
    tail=_FIFO_TAIL.value,
    context_frames=_CONTEXT_FRAMES.value,
  )


def parse_arguments(argv: Sequence[str]) -> dict[str, Any]:
  """The command line as `sample_from_workdir`'s arguments (or `sample_pretrained`'s, with
  "pretrained" set); a bad flag exits with one line (`jvdm.cli`)."""
  FLAGS.unparse_flags()
  with reported_errors(argv):
    parse_flags(FLAGS, argv)
  if (_WORKDIR.value is None) == (_PRETRAINED.value is None):
    fail("Give one of --workdir (a training run) or --pretrained (a diffusers-format folder).")
  if _PRETRAINED.value is not None:
    return _pretrained_arguments()
  pretrained_only = ("negative_prompt", "height", "width", "image")
  given = [name for name in pretrained_only if FLAGS[name].present]
  if given:
    fail(f"--{given[0]} applies to --pretrained only.")
  return dict(
    workdir=_WORKDIR.value,
    out=_OUT.value,
    num_samples=8 if _NUM_SAMPLES.value is None else _NUM_SAMPLES.value,
    num_frames=_NUM_FRAMES.value,
    steps=_STEPS.value,
    seed=_SEED.value,
    eta=_ETA.value,
    frame_stagger=_FRAME_STAGGER.value,
    sampler=_SAMPLER.value,
    spacing=_SPACING.value,
    time_power=_TIME_POWER.value,
    guidance_scale=_GUIDANCE_SCALE.value,
    chunks=_CHUNKS.value,
    prompt=_PROMPT.value,
    batch_size=8 if _BATCH_SIZE.value is None else _BATCH_SIZE.value,
    long=_LONG.value,
    long_settings=_long_settings(),
    decode_settings=_decode_settings(),
  )


def _pretrained_arguments() -> dict[str, Any]:
  """`sample_pretrained`'s arguments, under the key "pretrained"."""
  given = [name for name in _WORKDIR_ONLY + tuple(_decode_settings()) if FLAGS[name].present]
  if given:
    fail(f"--{given[0]} does not apply to --pretrained: the folder's scheduler sets it.")
  if _PROMPT.value is None:
    fail("--pretrained needs --prompt, the text of the videos.")
  if _OUT.value is None:
    fail("--pretrained needs --out, the folder to write the videos to.")
  settings = _given(
    negative_prompt=_NEGATIVE_PROMPT.value,
    image=_IMAGE.value,
    num_samples=_NUM_SAMPLES.value,
    num_frames=_NUM_FRAMES.value,
    height=_HEIGHT.value,
    width=_WIDTH.value,
    steps=_STEPS.value,
    guidance_scale=_GUIDANCE_SCALE.value,
    batch_size=_BATCH_SIZE.value,
  )
  return dict(
    pretrained=dict(
      folder=_PRETRAINED.value,
      prompt=_PROMPT.value,
      out=_OUT.value,
      seed=_SEED.value,
      long=_LONG.value,
      long_settings=_long_settings(),
      **settings,
    )
  )


def main(argv: Sequence[str]) -> None:
  arguments = parse_arguments(argv)
  if "pretrained" in arguments:
    print(json.dumps(sample_pretrained(**arguments["pretrained"]), indent=2))
  else:
    print(json.dumps(sample_from_workdir(**arguments), indent=2))


if __name__ == "__main__":
  run_script(main)
