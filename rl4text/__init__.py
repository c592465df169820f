"""rl4text: reinforcement learning for text generators (causal and encoder-decoder Hugging Face models).

``import rl4text`` is cheap: it registers the Gymnasium id ``rl4text/TextGen-v0`` and the registries; models,
algorithms and metrics are imported when first used.
"""

from __future__ import annotations

import gymnasium

from rl4text.registry import (
    ALGORITHMS,
    METRICS,
    REWARDS,
    TASKS,
    Registry,
    RegistryError,
    register_algorithm,
    register_metric,
    register_reward,
    register_task,
)

__version__ = "0.1.0"

ENV_ID = "rl4text/TextGen-v0"
if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="rl4text.envs.text_gen:TextGenEnv")

__all__ = [
    "ALGORITHMS",
    "ENV_ID",
    "METRICS",
    "REWARDS",
    "TASKS",
    "Registry",
    "RegistryError",
    "register_algorithm",
    "register_metric",
    "register_reward",
    "register_task",
]
