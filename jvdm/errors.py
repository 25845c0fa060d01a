"""Errors raised for bad user input (configs, files, flags, shapes).

Every message names what was given and what was expected. Catching ``JvdmError``
at an entry point lets the scripts print the message without a deep traceback.
"""


class JvdmError(ValueError):
  """Base class: invalid input given to jvdm."""


class ConfigError(JvdmError):
  """A config value is missing, unknown or out of range."""


class DataError(JvdmError):
  """A dataset could not be read (for example: no readable videos in a folder)."""


class CheckpointError(JvdmError):
  """A workdir has no checkpoint, or one that does not fit the model."""


class ShapeError(JvdmError):
  """An array given to a public function has a shape it cannot take."""
