"""Building blocks shared by jvdm's video backbones."""

from jvdm.models.layers.attention import VideoSelfAttention
from jvdm.models.layers.conv import Conv2Plus1D, SpatialConv, TemporalConv
from jvdm.models.layers.conv2d import conv2d
from jvdm.models.layers.dense import dense
from jvdm.models.layers.embeddings import TimestepEmbedding, sinusoidal_embedding
from jvdm.models.layers.norms import frame_group_norm
from jvdm.models.layers.resample import Downsample, Upsample
from jvdm.models.layers.resblock import ResBlock
from jvdm.models.layers.rope import apply_rope

__all__ = [
  "Conv2Plus1D",
  "Downsample",
  "ResBlock",
  "SpatialConv",
  "TemporalConv",
  "TimestepEmbedding",
  "Upsample",
  "VideoSelfAttention",
  "apply_rope",
  "conv2d",
  "dense",
  "frame_group_norm",
  "sinusoidal_embedding",
]
