"""Exceptions that carry a message meant for the user.

The CLI prints these as one line (``Error: ...``) instead of a traceback, so each message must say
what is wrong and how to fix it.
"""

from __future__ import annotations

#: How to go on after the retrieval service stopped, shared by the client's retry error and the training
#: loop's stop message (which wraps it and must not repeat it).
RESTART_SERVICE_HINT = (
    "Restart the service (./runs/run_retrieval.sh), then rerun the same command with --resume."
)


class Rl4recError(Exception):
    """Base class of errors whose message is shown to the user as-is."""


class DataError(Rl4recError, ValueError):
    """A dataset file is missing, malformed or inconsistent."""


class ConfigError(Rl4recError, ValueError):
    """A flag, config file value or argument is invalid."""


class ServiceNotFoundError(Rl4recError, RuntimeError):
    """The named Ray retrieval service could not be reached."""


class ServiceError(Rl4recError, RuntimeError):
    """The retrieval service was reached but failed or stayed unreachable past the retry budget."""
