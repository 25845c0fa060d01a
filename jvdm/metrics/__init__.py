"""Metrics on generated videos."""

from jvdm.metrics.synthetic_video import VideoReport
from jvdm.metrics.synthetic_video import analyze_video
from jvdm.metrics.synthetic_video import continuous_motion
from jvdm.metrics.synthetic_video import reference_validity
from jvdm.metrics.synthetic_video import synthetic_video_validity
from jvdm.metrics.synthetic_video import caption_match_fraction
from jvdm.metrics.synthetic_video import video_colours
