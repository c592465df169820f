"""The errors a run reports to the user as one paragraph (the CLI prints them without a traceback, exit 2)."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run cannot start or cannot go on; the message says why and what is kept on disk."""


class RunDirError(RunError):
    """The run folder cannot be used as asked (it holds another run, or no run to resume)."""


class NonFiniteError(RunError):
    """A reward, loss, gradient or weight became NaN or infinite; nothing non-finite was saved."""
