"""What `train.py` and `sample.py` share: console logging, and flag parsing that turns every bad
input into one line on stderr and exit status 1, never a traceback."""

import contextlib
import logging
import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import flags
from absl import logging as absl_logging

from jvdm.errors import JvdmError


def configure_console_logging() -> None:
  """jvdm's own INFO messages on the console; other libraries (orbax, grain) only warnings."""
  absl_logging.use_absl_handler()  # as absl's app.run does
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("jvdm").setLevel(logging.INFO)
  absl_logging.get_absl_handler().setFormatter(logging.Formatter("%(levelname).1s %(message)s"))


def fail(message: object) -> NoReturn:
  """Exits with status 1 and `error: <message>` as one line."""
  sys.exit("error: " + " ".join(str(message).split()))


def _describe(error: Exception, argv: Sequence[str]) -> str:
  overrides = [arg for arg in argv[1:] if arg.startswith("--config.")]
  if isinstance(error, KeyError | AttributeError):  # ml_collections: a field the config lacks
    return f"unknown config field in {overrides}: {str(error).strip(chr(34) + chr(39))}"
  if isinstance(error, OSError):  # config_flags: the config file cannot be read
    return f"cannot read the config file: {str(error).splitlines()[-1].strip()}"
  message = " ".join(str(error).split())
  literal = re.search(
    r"^flag (\S+): (?:invalid literal for|could not convert string to) (int|float)", message
  )
  if literal:  # absl's parser of a typed field
    expected = "an integer" if literal.group(2) == "int" else "a number"
    return f"{literal.group(1)} is not valid; expected {expected} ({message})"
  if "Traceback (most recent call last)" in message:  # config_flags wraps get_config's error
    raised = list(re.finditer(r"\b\w+Error: ", message))
    return message[raised[-1].start() :] if raised else message
  return message


@contextlib.contextmanager
def reported_errors(argv: Sequence[str]):
  """Turns what a bad flag, config file, variant or config field raises into `fail`."""
  try:
    yield
  except (flags.Error, JvdmError, KeyError, AttributeError, ValueError, TypeError, OSError) as e:
    fail(_describe(e, argv))


def parse_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
  """Parses `argv` into `flag_values` (inside `reported_errors`). `--help` prints the flags
  and exits; positional arguments are an error."""
  if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in argv[1:]):
    print(flag_values.get_help())
    sys.exit(0)
  remaining = flag_values(list(argv))
  if len(remaining) > 1:
    fail(f"unexpected arguments {remaining[1:]}; flags are written --name=value")


def run_script(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None = None) -> None:
  """The scripts' entry point: console logging, then `main(argv)` (default sys.argv); a
  JvdmError (bad input found later, such as a workdir that does not fit) ends as one line too."""
  configure_console_logging()
  flags.FLAGS.mark_as_parsed()  # absl's own flags (logging) keep their defaults
  try:
    main(sys.argv if argv is None else argv)
  except JvdmError as error:
    fail(error)
