"""Named registries of components (algorithms, rewards, metrics, tasks).

A component is found, in order, by: a name registered with a decorator or a lazy ``"module:attr"`` entry;
a ``"package.module:Name"`` spec written in a config; a third-party package's entry point in the group
``rl4text.plugins`` (looked up only on a miss, so a plugin cannot slow down ``import rl4text``).
An unknown name fails with the known names and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

PLUGIN_GROUP = "rl4text.plugins"


class RegistryError(KeyError):
    """An unknown or conflicting registry name. ``str()`` gives the full message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def import_spec(spec: str) -> Any:
    """Import ``"package.module:Attr"`` (attributes may be dotted) and return the object."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"not an import spec {spec!r}: expected 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import module {module_name!r} named in {spec!r}: {exc}") from exc
    except Exception as exc:  # the user's module itself is broken (SyntaxError, an error at import time)
        raise RegistryError(
            f"importing module {module_name!r} named in {spec!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RegistryError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj


class Registry:
    """A map from names to components (classes or factory functions).

    >>> REWARDS = Registry("reward")
    >>> @REWARDS.register("length")
    ... def length_reward(prompts, completions, references): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}  # name -> object, or "module:attr" string for lazy entries
        self._plugins_loaded = False

    def register(self, name: str, obj: Any = None, *, override: bool = False) -> Callable[[Any], Any]:
        """Register ``obj`` under ``name``; used bare as a decorator when ``obj`` is omitted."""

        def add(target: Any) -> Any:
            existing = self._entries.get(name)
            lazy = isinstance(existing, str)  # a lazy entry is replaced by the object it names, on import
            if not override and existing is not None and existing is not target and not lazy:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered ({self._describe(name)}); "
                    "pass override=True to replace it"
                )
            self._entries[name] = target
            return target

        return add if obj is None else add(obj)

    def register_lazy(self, name: str, spec: str) -> None:
        """Register ``name`` to be imported from ``"module:attr"`` on first use (keeps imports cheap)."""
        self._entries.setdefault(name, spec)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except RegistryError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Any:
        """Return the component called ``name`` (or named by a ``"module:Name"`` spec)."""
        if name not in self._entries and ":" in name:
            return import_spec(name)
        if name not in self._entries:
            self._load_plugins()
        if name not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}. "
                f"A component from your own code can be named as 'package.module:Name'."
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = import_spec(entry)
            self._entries[name] = entry
        return entry

    def build(self, name: str, **kwargs: Any) -> Any:
        """Look ``name`` up and call it with ``kwargs`` (a class is instantiated, a factory called).

        Arguments the component does not take fail with a :class:`RegistryError` listing those it does."""
        self.check_args(name, kwargs)
        return self.get(name)(**kwargs)

    def check_args(self, name: str, kwargs: dict[str, Any], where: str | None = None) -> None:
        """Raise :class:`RegistryError` when ``kwargs`` do not fit the signature of the component ``name``
        (unknown or missing arguments); ``where`` names the config key in the message."""
        import inspect

        obj = self.get(name)
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):  # a builtin without a signature: let the call decide
            return
        try:
            sig.bind(**kwargs)
        except TypeError as exc:
            accepted = [
                p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            unknown = sorted(set(kwargs) - set(accepted))
            hint = ""
            if unknown:
                close = difflib.get_close_matches(unknown[0], accepted, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"{where or self.kind + ' ' + repr(name)}: {exc}.{hint} "
                f"{self.kind} {name!r} takes: {', '.join(accepted) or '(no arguments)'}"
            ) from None

    def _describe(self, name: str) -> str:
        entry = self._entries[name]
        if isinstance(entry, str):
            return entry
        return f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', repr(entry))}"

    def _load_plugins(self) -> None:
        """Import every ``rl4text.plugins`` entry point once; plugins register themselves on import.

        An entry point may also name a registry directly: ``reward.my_metric = "pkg.mod:MyMetric"``
        registers ``my_metric`` in the reward registry without importing it yet.
        """
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=PLUGIN_GROUP):
            kind, dot, comp_name = ep.name.partition(".")
            if dot:
                if kind == self.kind:
                    self.register_lazy(comp_name, ep.value)
                continue
            try:
                ep.load()
            except Exception as exc:  # a broken plugin must not break the whole framework
                import warnings

                warnings.warn(f"rl4text plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)


ALGORITHMS = Registry("algorithm")
REWARDS = Registry("reward")
METRICS = Registry("metric")
TASKS = Registry("task")

REGISTRIES: dict[str, Registry] = {
    "algorithms": ALGORITHMS,
    "rewards": REWARDS,
    "metrics": METRICS,
    "tasks": TASKS,
}


def register_algorithm(name: str) -> Callable[[Any], Any]:
    """Decorator: register an algorithm (see ``rl4text.algorithms.base.Algorithm``)."""
    return ALGORITHMS.register(name)


def register_reward(name: str) -> Callable[[Any], Any]:
    """Decorator: register a reward factory; calling it with ``args`` gives a batched reward callable."""
    return REWARDS.register(name)


def register_metric(name: str) -> Callable[[Any], Any]:
    """Decorator: register a corpus-level metric factory."""
    return METRICS.register(name)


def register_task(name: str) -> Callable[[Any], Any]:
    """Decorator: register a task factory returning a ``rl4text.tasks.Task``."""
    return TASKS.register(name)


# Built-in components are registered lazily so that `import rl4text` imports no model code.
for _name, _spec in {
    "ppo": "rl4text.algorithms.ppo:PPO",
    "a2c": "rl4text.algorithms.a2c:A2C",
    "trpo": "rl4text.algorithms.trpo:TRPO",
    "nlpo": "rl4text.algorithms.nlpo:NLPO",
    "rloo": "rl4text.algorithms.rloo:RLOO",
    "grpo": "rl4text.algorithms.grpo:GRPO",
}.items():
    ALGORITHMS.register_lazy(_name, _spec)

for _name, _spec in {
    "chrf": "rl4text.rewards.lexical:chrf_reward",
    "bleu": "rl4text.rewards.lexical:bleu_reward",
    "chrf++": "rl4text.rewards.lexical:chrf_plus_plus_reward",
    "ter": "rl4text.rewards.lexical:ter_reward",
    "rouge": "rl4text.rewards.lexical:rouge_reward",
    "meteor": "rl4text.rewards.lexical:meteor_reward",
    "bertscore": "rl4text.rewards.bertscore:bertscore_reward",
    "classifier": "rl4text.rewards.learned:classifier_reward",
    "learned_rm": "rl4text.rm.reward:learned_rm_reward",
    "char_fraction": "rl4text.rewards.toy:char_fraction_reward",
    "length": "rl4text.rewards.toy:length_reward",
    "length_ratio": "rl4text.rewards.task:length_ratio_reward",
    "missing_eos": "rl4text.rewards.task:missing_eos_reward",
    "repetition": "rl4text.rewards.task:repetition_reward",
}.items():
    REWARDS.register_lazy(_name, _spec)

for _name, _spec in {
    "chrf": "rl4text.metrics.lexical:ChrF",
    "bleu": "rl4text.metrics.lexical:Bleu",
    "chrf++": "rl4text.metrics.lexical:ChrFPlusPlus",
    "ter": "rl4text.metrics.lexical:Ter",
    "rouge": "rl4text.metrics.lexical:Rouge",
    "meteor": "rl4text.metrics.lexical:Meteor",
    "bertscore": "rl4text.metrics.model_based:BERTScore",
    "perplexity": "rl4text.metrics.model_based:Perplexity",
    "distinct": "rl4text.metrics.diversity:Distinct",
    "msttr": "rl4text.metrics.diversity:MSTTR",
    "self_bleu": "rl4text.metrics.diversity:SelfBleu",
}.items():
    METRICS.register_lazy(_name, _spec)

for _name, _spec in {
    "toy_letters": "rl4text.tasks.toy:toy_letters_task",
    "multi30k": "rl4text.tasks.translation:multi30k_task",
    "wmt22": "rl4text.tasks.translation:wmt22_task",
    "wmt16": "rl4text.tasks.translation:wmt16_task",
    "iwslt2017": "rl4text.tasks.translation:iwslt2017_task",
    "scitldr": "rl4text.tasks.summarization:scitldr_task",
    "cnn_dailymail": "rl4text.tasks.summarization:cnn_dailymail_task",
    "xsum": "rl4text.tasks.summarization:xsum_task",
    "jsonl": "rl4text.tasks.generic:jsonl_task",
    "csv": "rl4text.tasks.generic:csv_task",
    "files": "rl4text.tasks.generic:files_task",
}.items():
    TASKS.register_lazy(_name, _spec)
