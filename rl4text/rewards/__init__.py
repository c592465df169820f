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


@dataclass
class RewardOutput:
    """Rewards of a batch of ``B`` finished texts."""

    total: list[float]
    """``[B]`` the episode return before any KL penalty: weighted sequence rewards + summed token rewards."""
    sequence: list[float]
    """``[B]`` weighted sum of the sequence-level components (placed on the last response token)."""
    token: list[list[float]] | None
    """``[B][T_i]`` weighted sum of the token-level components per response token, or None when there are none."""
    parts: dict[str, list[float]]
    """``{component: [B]}`` unweighted values (token-level components summed over tokens), logged as reward/<name>."""


def token_level(fn: RewardFn) -> RewardFn:
    """Mark a reward callable as token-level: it receives ``response_token_ids`` ([B] lists of token ids, EOS
    included) and returns one list of per-token rewards per text, of the same lengths."""
    fn.token_level = True
    return fn


class ComposedReward:
    """A weighted sum of reward components; ``evaluate`` also returns each component's values.

    Extra per-sample fields reach every component as keyword arguments: the training loop, the env and evaluation
    pass ``ended_with_eos`` ([B] bool), ``response_token_ids`` ([B] lists of ids, EOS included) and ``meta``.
    """

    def __init__(self, components: list[Component]):
        if not components:
            raise ValueError("a reward needs at least one component")
        self.components = components

    def __call__(
        self, prompts: list[str], completions: list[str], references: list[list[str]], **fields
    ) -> list[float]:
        return self.evaluate(prompts, completions, references, **fields).total

    def score(
        self, prompts: list[str], completions: list[str], references: list[list[str]], **fields
    ) -> tuple[list[float], dict[str, list[float]]]:
        """``(total [B], {component: values [B]})``."""
        out = self.evaluate(prompts, completions, references, **fields)
        return out.total, out.parts

    def evaluate(
        self, prompts: list[str], completions: list[str], references: list[list[str]], **fields
    ) -> RewardOutput:
        """Every component on the batch; repeated names are logged as ``name``, ``name_2``, ..."""
        B = len(completions)
        sequence = [0.0] * B
        token: list[list[float]] | None = None
        parts: dict[str, list[float]] = {}
        for comp in self.components:
            values = _call_component(comp, prompts, completions, references, fields)
            if getattr(comp.fn, "token_level", False):
                token = token or [[0.0] * len(ids) for ids in fields["response_token_ids"]]
                token = [[t + comp.weight * v for t, v in zip(row, vals)] for row, vals in zip(token, values)]
                values = [sum(v) for v in values]
            else:
                sequence = [t + comp.weight * v for t, v in zip(sequence, values)]
            key, n = comp.name, 2
            while key in parts:
                key, n = f"{comp.name}_{n}", n + 1
            parts[key] = values
        total = [s + (sum(t) if token else 0.0) for s, t in zip(sequence, token or [[]] * B)]
        return RewardOutput(total, sequence, token, parts)


class RewardScaler:
    """Training-time transform of the sequence reward: running normalisation, then clipping.

    Normalisation divides by the running standard deviation of all rewards seen so far (Welford's algorithm,
    updated with each batch before use), and also subtracts the running mean when ``center``. Evaluation and
    ``reward/<name>`` logs always report raw rewards.
    """

    def __init__(
        self, normalize: bool = False, center: bool = True, clip: float | None = None, eps: float = 1e-8
    ):
        self.normalize, self.center, self.clip, self.eps = normalize, center, clip, eps
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: list[float]) -> None:
        for x in values:  # Welford: numerically stable running mean and variance
            self.count += 1
            delta = x - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return (self.m2 / (self.count - 1)) ** 0.5 if self.count > 1 else 1.0

    def __call__(self, values: list[float]) -> list[float]:
        out = list(values)
        if self.normalize:
            self.update(values)
            shift = self.mean if self.center else 0.0
            out = [(x - shift) / (self.std + self.eps) for x in out]
        if self.clip is not None:
            out = [min(max(x, -self.clip), self.clip) for x in out]
        return out

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


def _call_component(comp: Component, prompts, completions, references, fields) -> list[float]:
    is_token = getattr(comp.fn, "token_level", False)
    try:
        raw = comp.fn(prompts, completions, references, **fields)
        values = [[float(x) for x in v] for v in raw] if is_token else [float(v) for v in raw]
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
    if is_token:
        for i, (vals, ids) in enumerate(zip(values, fields["response_token_ids"])):
            if len(vals) != len(ids):
                raise RewardError(
                    f"token-level reward {comp.name!r} gave {len(vals)} values for the {len(ids)} tokens of sample {i}"
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
    if hasattr(spec, "components"):  # a RewardConfig
        spec = spec.components
    if isinstance(spec, (list, tuple)):
        return ComposedReward([_component(s) for s in spec])
    return ComposedReward([_component(spec)])
