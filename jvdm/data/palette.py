"""The colours of the bouncing-shapes videos (`jvdm.data.synthetic`), their names (the caption
words of `jvdm.data.captions`) and RGB values."""

import numpy as np

# Saturated, mutually distant colours, so a metric can tell shapes apart by colour alone.
PALETTE_NAMES = ("red", "green", "blue", "yellow", "cyan", "magenta", "white", "orange")
PALETTE = np.array(
  [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [0, 255, 255],
    [255, 0, 255],
    [255, 255, 255],
    [255, 128, 0],
  ],
  dtype=np.uint8,
)  # [num_colours, 3]
