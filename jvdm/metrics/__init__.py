"""Metrics on generated videos."""

from jvdm.metrics.factor_distribution import DIRECTIONS
from jvdm.metrics.factor_distribution import FACTORS
from jvdm.metrics.factor_distribution import factor_distance
from jvdm.metrics.factor_distribution import factor_histograms
from jvdm.metrics.factor_distribution import histogram_distance
from jvdm.metrics.factor_distribution import reference_factor_distance
from jvdm.metrics.factor_distribution import video_factors
from jvdm.metrics.shape_segmentation import ShapeTrack
from jvdm.metrics.synthetic_video import VideoReport
from jvdm.metrics.synthetic_video import analyze_video
from jvdm.metrics.synthetic_video import continuous_motion
from jvdm.metrics.synthetic_video import reference_validity
from jvdm.metrics.shape_segmentation import shape_tracks
from jvdm.metrics.synthetic_video import synthetic_video_validity
from jvdm.metrics.synthetic_video import caption_match_fraction
from jvdm.metrics.shape_segmentation import video_colours
