"""Published models, read from their usual files: each module maps one model's checkpoint keys
and config onto the matching jvdm module."""

from jvdm.pretrained.pipelines import load
from jvdm.pretrained.wan_i2v_pipeline import WanImageToVideoPipeline
from jvdm.pretrained.wan_pipeline import WanPipeline

__all__ = ["WanImageToVideoPipeline", "WanPipeline", "load"]
