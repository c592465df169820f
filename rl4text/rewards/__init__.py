"""Rewards: batched callables ``(prompts, completions, references, **fields) -> list[float]``, composed by weight.

A reward factory is registered by name (``@rl4text.register_reward("name")``) and called with the component's
``args`` to give the callable. ``build_reward`` turns any of these into a :class:`ComposedReward`:
a registered name, a ``"module:factory"`` spec, a ``{name, weight, args}`` mapping, a list of those,
a :class:`~rl4text.config.RewardConfig`, or a plain callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rl4text.registry import REWARDS

RewardFn = Callable[..., Sequence[float]]


class RewardError(RuntimeError):
    """A reward component failed; the message names the component and the sample that broke it."""


@dataclass
class Component:
    name: str
    weight: float
    fn: RewardFn


class ComposedReward:
    """A weighted sum of reward components; ``score`` also returns each component's values."""

    def __init__(self, components: list[Component]):
        if not components:
            raise ValueError("a reward needs at least one component")
        self.components = components

    def __call__(
        self, prompts: list[str], completions: list[str], references: list[list[str]], **fields
    ) -> list[float]:
        return self.score(prompts, completions, references, **fields)[0]

    def score(
        self, prompts: list[str], completions: list[str], references: list[list[str]], **fields
    ) -> tuple[list[float], dict[str, list[float]]]:
        """``(total [B], {component name: values [B]})``; names repeat-proofed as ``name``, ``name_2``, ..."""
        total = [0.0] * len(completions)
        parts: dict[str, list[float]] = {}
        for comp in self.components:
            values = _call_component(comp, prompts, completions, references, fields)
            key = comp.name
            n = 2
            while key in parts:
                key, n = f"{comp.name}_{n}", n + 1
            parts[key] = values
            total = [t + comp.weight * v for t, v in zip(total, values)]
        return total, parts


def _call_component(comp: Component, prompts, completions, references, fields) -> list[float]:
    try:
        values = [float(v) for v in comp.fn(prompts, completions, references, **fields)]
    except Exception as exc:
        # find the sample that breaks it, so the user can look at it
        for i in range(len(completions)):
            one = {k: v[i : i + 1] if isinstance(v, list) else v for k, v in fields.items()}
            try:
                comp.fn(prompts[i : i + 1], completions[i : i + 1], references[i : i + 1], **one)
            except Exception as inner:
                raise RewardError(
                    f"reward component {comp.name!r} failed on sample {i} "
                    f"(prompt={prompts[i][:80]!r}, completion={completions[i][:80]!r}): {inner!r}"
                ) from exc
        raise RewardError(
            f"reward component {comp.name!r} failed on a batch of {len(completions)}: {exc!r}"
        ) from exc
    if len(values) != len(completions):
        raise RewardError(
            f"reward component {comp.name!r} returned {len(values)} values for {len(completions)} texts"
        )
    return values


def _component(spec: Any) -> Component:
    if callable(spec) and not isinstance(spec, str):
        return Component(getattr(spec, "__name__", "reward"), 1.0, spec)
    if isinstance(spec, str):
        spec = {"name": spec}
    if hasattr(spec, "name") and hasattr(spec, "args"):  # RewardComponentConfig
        spec = {"name": spec.name, "weight": spec.weight, "args": spec.args}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a reward component is a name, a callable or {{name, weight, args}}; got {spec!r}")
    unknown = set(spec) - {"name", "weight", "args"}
    if unknown:
        raise ValueError(
            f"reward component {spec['name']!r}: unknown keys {sorted(unknown)}; valid: name, weight, args"
        )
    factory = REWARDS.get(spec["name"])
    fn = factory(**(spec.get("args") or {}))
    short = spec["name"].rsplit(":", 1)[-1]
    return Component(short, float(spec.get("weight", 1.0)), fn)


def build_reward(spec: Any) -> ComposedReward:
    """A :class:`ComposedReward` from a name, spec, mapping, list, ``RewardConfig`` or callable."""
    if isinstance(spec, ComposedReward):
        return spec
    if hasattr(spec, "components"):
        spec = spec.components
    if isinstance(spec, (list, tuple)):
        return ComposedReward([_component(s) for s in spec])
    return ComposedReward([_component(spec)])
