"""rl4text: reinforcement learning for text generators (causal and encoder-decoder Hugging Face models).

``import rl4text`` is cheap: it registers the Gymnasium id ``rl4text/TextGen-v0`` (when Gymnasium is installed) and the registries; models,
algorithms and metrics are imported when first used.
"""

from __future__ import annotations

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
try:  # training never needs Gymnasium (the fast rollout is the same MDP): a GPU box without it still trains
    import gymnasium
except ImportError:  # pragma: no cover - exercised by benchmarks/gpu_check.sh
    gymnasium = None
if gymnasium is not None and ENV_ID not in gymnasium.registry:
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
