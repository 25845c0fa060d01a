"""Video files in and out: mp4/gif/npz writing, video reading."""

from jvdm.io.video import iter_video
from jvdm.io.video import read_random_clip
from jvdm.io.video import read_video
from jvdm.io.video import read_video_frames
from jvdm.io.video import write_video
from jvdm.io.video_batch import load_npz
from jvdm.io.video_batch import save_npz
from jvdm.io.video_batch import tile_videos
from jvdm.io.video_batch import write_video_grid
