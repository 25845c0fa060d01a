"""Console set-up shared by `train.py` and `sample.py`."""

import logging

from absl import logging as absl_logging


def configure_console_logging() -> None:
  """jvdm's own INFO messages on the console; other libraries (orbax, grain) only warnings."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("jvdm").setLevel(logging.INFO)
  absl_logging.get_absl_handler().setFormatter(logging.Formatter("%(levelname).1s %(message)s"))
