"""`load(folder)`: the jvdm pipeline of a diffusers-format folder, by the pipeline class its
`model_index.json` names."""

import pathlib
from typing import Any

from jvdm.errors import ConfigError
import jvdm.pretrained.wan_i2v_pipeline as wan_i2v_pipeline
import jvdm.pretrained.wan_pipeline as wan_pipeline
from jvdm.pretrained.diffusers_folder import pipeline_options

# diffusers' pipeline class -> the loader of the jvdm pipeline that samples as it does.
LOADERS = {
  "WanPipeline": wan_pipeline.load,
  wan_i2v_pipeline.PIPELINE_CLASS: wan_i2v_pipeline.load,
}


def load(folder: str | pathlib.Path, **settings) -> Any:
  """A `WanPipeline` (text-to-video) or `WanImageToVideoPipeline` (image-to-video) from a
  diffusers-format folder; `settings` go to that loader (`wan_pipeline.load`,
  `wan_i2v_pipeline.load`)."""
  class_name = pipeline_options(folder).get("_class_name")
  if class_name not in LOADERS:
    raise ConfigError(
      f"{folder} holds a {class_name!r} (model_index.json's _class_name); jvdm builds "
      f"{list(LOADERS)}."
    )
  return LOADERS[class_name](folder, **settings)
