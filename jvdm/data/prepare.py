"""Writes a video dataset once as a TFDS dataset in ArrayRecord format (read by `tfds_source`).

  python -m jvdm.data.prepare --source=video_folder --root=/data/videos --num_frames=16 \
      --height=64 --width=64 --clips_per_video=4 --validation_fraction=0.05 \
      --output_dir=/data/tfds --name=my_videos
  python -m jvdm.data.prepare --source=bouncing_shapes --num_videos=1000 --num_frames=16 \
      --height=32 --width=32 --output_dir=/tmp/tfds --name=shapes_1k

then train on it with `--config.data.name=tfds --config.data.tfds.name=my_videos
--config.data.tfds.data_dir=/data/tfds`.

The dataset has one `tfds.features.Tensor` feature per example: "video", uint8
[T, H, W, 3] clips, or "latents", float32 [t, h, w, c], when `prepare` is given an
`encode` function (a VAE encoder). Writing and reading it needs no TensorFlow (unlike
`tfds.features.Video` and `tfds.dataset_builders.store_as_tfds_dataset`). Examples are
stored in TFDS's own hashed order, which is fixed for a given dataset; the pipeline shuffles
anyway.
"""

import dataclasses
import itertools
import logging
import re
import sys
import tempfile
from typing import Any, Callable, Iterable, Iterator, Sequence

from absl import app, flags
from etils import epath
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from jvdm.errors import ConfigError, DataError, JvdmError

logger = logging.getLogger(__name__)

# uint8 clips [N, T, H, W, 3] -> float32 latents [N, t, h, w, c].
Encoder = Callable[[np.ndarray], np.ndarray]
# (key, example array); keys are unique ints within a split.
_Examples = Iterator[tuple[int, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
  """What `prepare` wrote."""

  path: epath.Path  # the dataset's folder, OUTPUT_DIR/NAME/VERSION
  feature: str  # "video" (uint8 pixels) or "latents" (float32)
  shape: tuple[int, ...]  # of one example
  num_examples: dict[str, int]  # split -> clips written
  skipped: tuple[int, ...]  # source items that gave no clip (unreadable or too short)


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder whose name, version, features and examples are given when it is made.

  TFDS builders are usually one class per dataset, named after it.
  """

  def __init__(
    self,
    *,
    name: str,
    version: str,
    features: tfds.features.FeaturesDict,
    splits: dict[str, Iterable[tuple[int, dict[str, np.ndarray]]]],
    description: str,
    **kwargs: Any,
  ):
    self.name = name
    self.VERSION = tfds.core.Version(version)  # pylint: disable=invalid-name
    self._features = features
    self._splits = splits
    self._description = description
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # Not `dataset_info_from_configs`: it looks for metadata files beside the builder's module,
    # and fails when that module is __main__ (`python -m jvdm.data.prepare`).
    return tfds.core.DatasetInfo(
      builder=self, description=self._description, features=self._features
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return self._splits

  def _generate_examples(self):
    raise NotImplementedError("Examples come from the `splits` given to the builder.")


def prepare(
  source: Sequence[dict[str, np.ndarray] | None],
  *,
  output_dir: str,
  name: str,
  clips_per_item: int = 1,
  validation_fraction: float = 0.0,
  encode: Encoder | None = None,
  encode_batch_size: int = 16,
  seed: int = 0,
  overwrite: bool = False,
  version: str = "1.0.0",
) -> PreparedDataset:
  """Writes the clips of `source` as the TFDS dataset `name` under `output_dir`.

  Args:
    source: a random-access source whose items are {"video": uint8 [T, H, W, 3]}, or None for
      an item that gives no clip (a bad file), which is skipped, counted and logged; e.g.
      `VideoFolderSource` or `BouncingShapes`.
    output_dir: the TFDS data_dir; the dataset goes to `output_dir/name/version`.
    name: the dataset name, a letter then letters, digits or underscores.
    clips_per_item: clips written per source item. Clip 0 is `source[i]`; clips 1, 2, ... are
      `source.load(i, np.random.default_rng([seed, i, j]))` (`VideoFolderSource.load`).
    validation_fraction: fraction in [0, 1) of the items, drawn at random with `seed`, whose
      clips go to a "validation" split; the rest go to "train". Items, not clips, are split,
      so no video gives clips to both.
    encode: when given, maps uint8 clips [N, T, H, W, 3] to latents [N, t, h, w, c], which are
      stored as float32 under the feature "latents" instead of the clips under "video". Every
      call gets exactly `encode_batch_size` clips (the last batch of a split is padded by
      repeating its last clip), so a jitted encoder compiles once.
    encode_batch_size: clips per `encode` call.
    seed: draws the validation items and the extra clips.
    overwrite: replace an existing dataset `output_dir/name/version`; without it that is an
      error (TFDS itself would silently keep the old one).
    version: the dataset version, "MAJOR.MINOR.PATCH".

  Returns:
    What was written.

  Raises:
    ConfigError: a bad name, count or fraction.
    DataError: `source` is empty, a split gets no clip, `encode` returns a bad array, or the
      dataset exists and `overwrite` is False.
  """
  if not re.fullmatch(r"[a-zA-Z]\w*", name):
    raise ConfigError(
      f"Dataset name {name!r} is not valid; expected a letter followed by "
      "letters, digits or underscores, e.g. 'my_videos'."
    )
  for arg, value in (("clips_per_item", clips_per_item), ("encode_batch_size", encode_batch_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"{arg} must be an integer >= 1, got {value!r}.")
  if clips_per_item > 1 and not hasattr(source, "load"):
    raise ConfigError(
      f"clips_per_item={clips_per_item} needs a source with a `load(index, rng)` "
      f"method (e.g. VideoFolderSource) to draw more clips per item; {source!r} "
      "has none."
    )
  if not len(source):  # pylint: disable=g-explicit-length-test
    raise DataError(f"Source {source!r} is empty; expected at least one item to write.")
  split_items = _split_items(len(source), validation_fraction, seed)

  path = epath.Path(output_dir) / name / version
  if path.exists() and not overwrite:
    raise DataError(
      f"Dataset {name!r} version {version} already exists at {path}; pass "
      "overwrite=True (--overwrite) to replace it, or choose another name."
    )

  skipped = []
  with tqdm.tqdm(total=len(source), unit="video", desc=f"Preparing {name}") as progress:
    splits = {}
    for split, items in split_items.items():
      examples = _clips(source, items, clips_per_item, seed, skipped, progress)
      if encode is not None:
        examples = _encoded(examples, encode, encode_batch_size)
      splits[split] = _checked_nonempty(examples, split, source)
    # The features' shape is that of the first example: take it now and put it back.
    first_key, first = next(splits["train"])
    splits["train"] = itertools.chain([(first_key, first)], splits["train"])
    if path.exists():  # overwrite: deleted only now that the source has given a clip
      logger.info("Deleting the existing dataset at %s.", path)
      path.rmtree()
    feature = "video" if encode is None else "latents"
    features = tfds.features.FeaturesDict(
      {feature: tfds.features.Tensor(shape=first.shape, dtype=first.dtype)}
    )
    builder = _Builder(
      name=name,
      version=version,
      features=features,
      data_dir=output_dir,
      file_format="array_record",
      splits={
        split: ((key, {feature: array}) for key, array in examples)
        for split, examples in splits.items()
      },
      description=(
        f"Written by jvdm.data.prepare from {source!r}: {clips_per_item} clip(s) "
        f"per item, validation_fraction={validation_fraction}, seed={seed}"
        + (", VAE-encoded." if encode is not None else ".")
      ),
    )
    # TFDS makes a downloads/ folder under download_dir; keep it out of output_dir.
    with tempfile.TemporaryDirectory() as download_dir:
      builder.download_and_prepare(download_dir=download_dir)

  num_examples = {split: builder.info.splits[split].num_examples for split in splits}
  if skipped:
    logger.warning(
      "Skipped %d of %d items that gave no clip (unreadable or too short).",
      len(skipped),
      len(source),
    )
  logger.info("Wrote %s to %s: %s.", name, builder.data_path, num_examples)
  return PreparedDataset(
    path=builder.data_path,
    feature=feature,
    shape=tuple(first.shape),
    num_examples=num_examples,
    skipped=tuple(sorted(skipped)),
  )


def _split_items(num_items: int, validation_fraction: float, seed: int) -> dict[str, list[int]]:
  """Item indices per split: a random `validation_fraction` of them to "validation"."""
  if not 0.0 <= validation_fraction < 1.0:
    raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
  num_validation = round(validation_fraction * num_items)
  if validation_fraction > 0 and not 0 < num_validation < num_items:
    raise ConfigError(
      f"validation_fraction={validation_fraction} of {num_items} items gives {num_validation} "
      "validation items; expected at least one for validation and one for train."
    )
  validation = np.random.default_rng(seed).permutation(num_items)[:num_validation]
  train = np.setdiff1d(np.arange(num_items), validation)
  splits = {"train": [int(i) for i in train]}
  if num_validation:
    splits["validation"] = sorted(int(i) for i in validation)
  return splits


def _clips(
  source: Sequence[dict[str, np.ndarray] | None],
  items: list[int],
  clips_per_item: int,
  seed: int,
  skipped: list[int],
  progress: tqdm.tqdm,
) -> _Examples:
  """Each item's clips, keyed `item * clips_per_item + j`; items giving None go to `skipped`."""
  for index in items:
    item = source[index]
    progress.update()
    if item is None:  # a file that cannot be read, or too short: every clip of it fails
      skipped.append(index)
      continue
    yield index * clips_per_item, item["video"]
    for j in range(1, clips_per_item):
      item = source.load(index, np.random.default_rng([seed, index, j]))
      if item is not None:
        yield index * clips_per_item + j, item["video"]


def _encoded(examples: _Examples, encode: Encoder, batch_size: int) -> _Examples:
  """`examples` with each clip replaced by its float32 latents, encoded `batch_size` at a time."""
  while batch := list(itertools.islice(examples, batch_size)):
    keys, clips = zip(*batch)
    clips = np.stack(clips)  # [n, T, H, W, 3]
    padding = np.repeat(clips[-1:], batch_size - len(clips), axis=0)
    padded = np.concatenate([clips, padding])
    latents = np.asarray(encode(padded))  # [batch_size, t, h, w, c]
    if latents.ndim != 5 or latents.shape[0] != batch_size:
      raise DataError(
        f"encode returned an array of shape {latents.shape} for clips of shape "
        f"{padded.shape}; expected latents [{batch_size}, t, h, w, c]."
      )
    if not np.isfinite(latents).all():
      raise DataError(f"encode returned non-finite latents for clips with keys {list(keys)}.")
    yield from zip(keys, latents[: len(keys)].astype(np.float32))


def _checked_nonempty(examples: _Examples, split: str, source: Any) -> _Examples:
  """`examples`, raising DataError at their end if there were none."""
  count = 0
  for count, example in enumerate(examples, 1):
    yield example
  if not count:
    raise DataError(
      f"No item of {source!r} for the {split!r} split gave a clip; every one was "
      "unreadable or too short."
    )


def _define_flags() -> None:
  """The command line's flags (defined only when run as a script: this module is a library too)."""
  flags.DEFINE_enum(
    "source",
    None,
    ["video_folder", "bouncing_shapes"],
    "What to write: clips of a folder's videos, or synthetic videos.",
  )
  flags.DEFINE_string(
    "root", None, "--source=video_folder: the folder of videos (searched recursively)."
  )
  flags.DEFINE_integer("num_videos", 1000, "--source=bouncing_shapes: how many videos.")
  flags.DEFINE_integer("num_frames", None, "Frames per clip.")
  flags.DEFINE_integer("height", None, "Clip height in pixels.")
  flags.DEFINE_integer("width", None, "Clip width in pixels.")
  flags.DEFINE_integer("frame_stride", 1, "--source=video_folder: take every n-th frame.")
  flags.DEFINE_integer(
    "clips_per_video", 1, "--source=video_folder: clips drawn at random starts from each video."
  )
  flags.DEFINE_float(
    "validation_fraction", 0.0, "Fraction of the videos written to a 'validation' split."
  )
  flags.DEFINE_integer(
    "seed", 0, "Seed of the clip starts, the synthetic videos and the validation videos."
  )
  flags.DEFINE_string("output_dir", None, "The TFDS data_dir to write to.")
  flags.DEFINE_string("name", None, "The dataset name, e.g. my_videos.")
  flags.DEFINE_string(
    "vae_workdir",
    None,
    "Write the clips' latents (the posterior means of "
    "the VAE trained in this workdir) instead of their pixels.",
  )
  flags.DEFINE_bool("overwrite", False, "Replace an existing dataset of this name and version.")
  flags.mark_flags_as_required(["source", "num_frames", "height", "width", "output_dir", "name"])


def _make_source(args: flags.FlagValues) -> Sequence[dict[str, np.ndarray] | None]:
  """The source the flags describe."""
  size = dict(num_frames=args.num_frames, height=args.height, width=args.width)
  if args.source == "video_folder":
    from jvdm.data.video_folder import VideoFolderSource  # pylint: disable=g-import-not-at-top

    if not args.root:
      raise ConfigError("--source=video_folder needs --root, a folder of video files.")
    return VideoFolderSource(args.root, frame_stride=args.frame_stride, seed=args.seed, **size)
  from jvdm.data.synthetic import BouncingShapes  # pylint: disable=g-import-not-at-top

  return BouncingShapes(num_videos=args.num_videos, seed=args.seed, **size)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  args = flags.FLAGS
  tfds.disable_progress_bar()  # prepare() shows its own, with a total
  try:
    source = _make_source(args)
    encode = None
    if args.vae_workdir:
      from jvdm.workdir import vae_encoder  # pylint: disable=g-import-not-at-top

      encode = vae_encoder(args.vae_workdir)
    prepared = prepare(
      source,
      output_dir=args.output_dir,
      name=args.name,
      clips_per_item=args.clips_per_video,
      validation_fraction=args.validation_fraction,
      encode=encode,
      seed=args.seed,
      overwrite=args.overwrite,
    )
  except JvdmError as error:
    sys.exit(f"error: {error}")
  print(
    f"jvdm: wrote {prepared.num_examples} clips of {prepared.feature} "
    f"{list(prepared.shape)} ({len(prepared.skipped)} videos skipped) to {prepared.path}.\n"
    f"Train on it with --config.data.name=tfds --config.data.tfds.name={args.name} "
    f"--config.data.tfds.data_dir={args.output_dir}"
    + (f" --config.data.tfds.feature={prepared.feature}" if prepared.feature != "video" else "")
  )


if __name__ == "__main__":
  from jvdm.cli import configure_console_logging  # pylint: disable=g-import-not-at-top

  _define_flags()
  configure_console_logging()
  app.run(main)
