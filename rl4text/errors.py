"""The errors a command reports as one line (``rl4text CMD: error: ...``, exit code 2) instead of a traceback.

Each names what is wrong (a config key, a file and line, a component) and what would be valid. Set
``RL4TEXT_DEBUG=1`` to get the traceback as well.
"""

from __future__ import annotations

import os


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types caused by the user's input (config, data, components, run folder, files)."""
    from rl4text.checkpoint import CheckpointError
    from rl4text.config import ConfigError
    from rl4text.models import ModelLoadError
    from rl4text.registry import RegistryError
    from rl4text.rewards import RewardError
    from rl4text.runtime import RunError
    from rl4text.tasks import TaskDataError

    # OSError: a path the user gave cannot be read or written (its message names the file)
    return (
        ConfigError,
        RegistryError,
        TaskDataError,
        RunError,
        RewardError,
        CheckpointError,
        ModelLoadError,
        OSError,
    )


def debug() -> bool:
    """``RL4TEXT_DEBUG=1``: let errors raise with their traceback."""
    return os.environ.get("RL4TEXT_DEBUG", "0").lower() not in ("", "0", "false", "no")


def one_paragraph(exc: BaseException) -> str:
    """The message of ``exc`` on one line (YAML and library messages span several)."""
    return " ".join(str(exc).split())
