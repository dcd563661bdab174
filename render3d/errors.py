"""Exceptions that carry a one-line, user-facing message.

Everything render3d raises for bad user input derives from :class:`Render3DError`;
the CLI prints its message on one line and exits with status 2.
"""


class Render3DError(Exception):
    """Base class: the message alone must tell the user what is wrong and where."""


class DataError(Render3DError, ValueError):
    """A dataset folder, file or image is missing, unreadable or inconsistent."""


class ConfigError(Render3DError, ValueError):
    """An argument or configuration value is invalid (names the argument)."""


class BackendError(Render3DError, RuntimeError):
    """The requested compute backend cannot run on the given inputs."""


class TrainingError(Render3DError, RuntimeError):
    """Optimisation diverged (for example a NaN loss); the run directory is left intact."""


class DataWarning(UserWarning):
    """Data that loads, but not all of it (e.g. frames whose image file is missing); the CLI
    prints it as one ``note:`` line, and ``--strict`` (or ``warnings.simplefilter("error",
    DataWarning)``) refuses such data instead."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when the message is empty
    (for one-line reports of an exception that came from elsewhere)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
