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


class RewardBuildError(RewardError, ValueError):
    """A reward component could not be built from its ``args`` (a ``ValueError`` too, as the factory raised)."""


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


def as_references(refs: Any) -> list[str]:
    """One sample's references as a list: a plain string is one reference (the convention of evaluate and
    sacrebleu users), a sequence of strings is several, and none at all is one empty reference."""
    if isinstance(refs, str):
        return [refs]
    refs = list(refs) if refs is not None else []
    return refs or [""]


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
        """Every component on the batch; repeated names are logged as ``name``, ``name_2``, ...

        A plain string in ``references`` is one reference: components always receive ``[B]`` lists of strings."""
        B = len(completions)
        if len(references) != B or len(prompts) != B:
            raise RewardError(
                f"a reward needs one prompt and one reference list per completion; got {len(prompts)} prompts, "
                f"{B} completions, {len(references)} reference lists"
            )
        references = [as_references(r) for r in references]
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

    def __call__(self, values: list[float], *, population: list[float] | None = None) -> list[float]:
        """Scale ``values``; the running statistics first take in ``population`` (default ``values``): in a
        multi-process run, every process's rewards, so all processes normalise alike."""
        out = list(values)
        if self.normalize:
            self.update(values if population is None else population)
            shift = self.mean if self.center else 0.0
            out = [(x - shift) / (self.std + self.eps) for x in out]
        if self.clip is not None:
            out = [min(max(x, -self.clip), self.clip) for x in out]
        return out

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


def _values(raw: Any, name: str, n: int, is_token: bool) -> list:
    """A component's output as ``n`` floats (or ``n`` lists of floats), or a :class:`RewardError` saying why not."""
    what = "a list of per-token lists" if is_token else "a list of numbers"
    try:
        size = None if isinstance(raw, (str, bytes, dict)) else len(raw)
    except TypeError:  # None, a number, a 0-d tensor
        size = None
    if size is None:
        raise RewardError(
            f"reward component {name!r} returned {type(raw).__name__} {_short(raw)}; a reward returns {what}, "
            f"one per completion ({n} here)"
        )
    if size != n:
        raise RewardError(
            f"reward component {name!r} returned {size} values for {n} texts; it must return one per text"
        )
    out = []
    for i, v in enumerate(raw):
        try:
            if is_token:
                if isinstance(v, (str, bytes)):
                    raise TypeError
                out.append([_number(x) for x in v])
            else:
                out.append(_number(v))
        except (TypeError, ValueError):
            raise RewardError(
                f"reward component {name!r} returned {type(v).__name__} {_short(v)} for sample {i}; a reward "
                f"returns {what}"
            ) from None
    return out


def _number(x: Any) -> float:
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(x)
    return float(x)


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _call_component(comp: Component, prompts, completions, references, fields) -> list[float]:
    is_token = getattr(comp.fn, "token_level", False)
    try:
        raw = comp.fn(prompts, completions, references, **fields)
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
    values = _values(raw, comp.name, len(completions), is_token)
    if is_token:
        for i, (vals, ids) in enumerate(zip(values, fields["response_token_ids"])):
            if len(vals) != len(ids):
                raise RewardError(
                    f"token-level reward {comp.name!r} gave {len(vals)} values for the {len(ids)} tokens of sample {i}"
                )
    return values


def is_reward_callable(obj: Any) -> bool:
    """Is ``obj`` a reward itself (``f(prompts, completions, references, **fields)``) rather than a factory?

    A factory takes only keyword arguments (the component's ``args``); a reward takes three positional ones.
    """
    import inspect

    if isinstance(obj, type) or not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
    return len(required) >= 3


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
    args = spec.get("args") or {}
    if is_reward_callable(factory):  # `module:f` naming a reward function itself, not a factory
        if args:
            raise RewardError(
                f"reward component {spec['name']!r} is a reward function (prompts, completions, references), "
                f"not a factory, so it takes no args; got args {sorted(args)}"
            )
        fn = factory
    else:
        REWARDS.check_args(spec["name"], args)
        try:
            fn = factory(**args)
        except OSError:  # a file the args name: its message names it, and the CLI reports it as is
            raise
        except Exception as exc:  # a bad value, a missing optional package, a model that fails to load
            raise RewardBuildError(
                f"reward component {spec['name']!r} with args {args}: building it failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if not callable(fn):
        raise RewardError(
            f"reward component {spec['name']!r}: its factory returned {type(fn).__name__}, not a callable "
            "(prompts, completions, references, **fields) -> list of numbers"
        )
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
