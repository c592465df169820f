"""Corpus-level evaluation metrics: ``compute(predictions, references) -> MetricResult``."""

from __future__ import annotations

from dataclasses import dataclass, field

from rl4text.registry import METRICS


@dataclass
class MetricResult:
    """Corpus scores (``{"chrf": 51.2}``) and one score per prediction (``per_sample[i]``).

    ``per_item[key][i]``: prediction i's value of corpus key ``key``, given only for keys whose corpus score is
    exactly the mean of these values (ROUGE, METEOR, BERTScore; not sacrebleu's corpus BLEU/chrF/TER, which sum
    sufficient statistics, nor token-weighted perplexity). Evaluation stores them per row, for paired tests.
    """

    corpus: dict[str, float]
    per_sample: list[float] = field(default_factory=list)
    per_item: dict[str, list[float]] = field(default_factory=dict)


def build_metrics(names: list[str]) -> dict[str, object]:
    """Instantiate each named metric (an unknown name fails with the known names)."""
    from rl4text.registry import RegistryError

    out = {}
    for name in names:
        try:
            out[name] = METRICS.build(name)
        except RegistryError:
            raise
        except (ImportError, ValueError, TypeError, OSError, RuntimeError) as exc:  # e.g. an optional package
            raise RegistryError(f"metric {name!r} cannot be built: {type(exc).__name__}: {exc}") from exc
    return out
