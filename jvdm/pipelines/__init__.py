"""Model-aware generation: the video sampler, KV-cache generation with a causal DiT and the
long-video methods (`jvdm.pipelines.long`: FIFO-Diffusion, FreeNoise, FreeLong, Gen-L-Video,
autoregressive extension)."""

from jvdm.pipelines.kv_cache_generation import CausalVideoSampler
from jvdm.pipelines.long.long_video import LongVideoSampler
from jvdm.pipelines.video_sampler import VideoSampler
