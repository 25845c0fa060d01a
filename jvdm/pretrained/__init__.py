"""Published models, read from their usual files: each module maps one model's checkpoint keys
and config onto the matching jvdm module."""

from jvdm.pretrained.wan_pipeline import WanPipeline, load

__all__ = ["WanPipeline", "load"]
