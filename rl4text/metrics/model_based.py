"""Metrics computed with a neural model: BERTScore (an encoder) and perplexity (a reference causal LM).

Both load their model once, at construction, and score the predictions in batches.
"""

from __future__ import annotations

import math

from rl4text.metrics import MetricResult
from rl4text.registry import register_metric

DEFAULT_LM = "HuggingFaceTB/SmolLM2-135M-Instruct"


@register_metric("bertscore")
class BERTScore:
    """Corpus BERTScore: mean P, R and F over the predictions, ×100 (the 0-100 scale of sacrebleu's metrics).

    ``corpus``: ``bertscore`` (F), ``bertscore_p``, ``bertscore_r``; ``per_sample``: each prediction's F ×100,
    best over its references (bert_score's rule); ``per_item``: each prediction's P, R and F (their means are
    the corpus scores). Arguments as the ``bertscore`` reward's; with ``idf=True``
    and no ``idf_sentences`` the idf weights come from each call's references, as ``bert_score.score`` does.
    """

    def __init__(
        self,
        model_type: str | None = None,
        num_layers: int | None = None,
        batch_size: int = 64,
        device: str = "auto",
        idf: bool = False,
        idf_sentences: list[str] | str | None = None,
        rescale_with_baseline: bool = False,
        baseline_path: str | None = None,
        lang: str = "en",
    ):
        from rl4text.rewards.bertscore import build_scorer

        self.scorer = build_scorer(
            model_type,
            num_layers,
            batch_size=batch_size,
            device=device,
            idf=idf,
            idf_sentences=idf_sentences,
            rescale_with_baseline=rescale_with_baseline,
            baseline_path=baseline_path,
            lang=lang,
        )
        self.idf_per_call = idf and idf_sentences is None

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        from rl4text.rewards.bertscore import score_prf, set_idf_from

        if self.idf_per_call:
            set_idf_from(self.scorer, references)
        prf = score_prf(self.scorer, predictions, references).double() * 100
        p, r, f = (prf[:, i].mean().item() if len(prf) else math.nan for i in range(3))
        items = {key: prf[:, i].tolist() for i, key in enumerate(("bertscore_p", "bertscore_r", "bertscore"))}
        return MetricResult(
            {"bertscore": f, "bertscore_p": p, "bertscore_r": r}, prf[:, 2].tolist(), per_item=items
        )


def _load_causal_lm(model: str, gguf_file: str | None, tokenizer: str | None, dtype: str):
    """Model and tokenizer through rl4text's loading rules (local folder, Hub, offline package, GGUF).

    Not ``load_model``: it may add a pad token and grow the vocabulary, which would change the softmax the
    perplexity is measured under. Padding here is masked out, so any existing id pads.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl4text.config import ModelConfig
    from rl4text.models import disable_dropout, resolve_source

    source, gguf = resolve_source(ModelConfig(name_or_path=model, gguf_file=gguf_file))
    kwargs = {"gguf_file": gguf} if gguf else {}
    if tokenizer == "char":
        from rl4text.char_tokenizer import char_tokenizer

        tok = char_tokenizer()
    else:
        tok = AutoTokenizer.from_pretrained(tokenizer or source, **({} if tokenizer else kwargs))
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **kwargs)
    if lm.config.is_encoder_decoder:
        raise ValueError(f"perplexity needs a causal LM; {model!r} is an encoder-decoder model")
    disable_dropout(lm)
    return lm, tok


@register_metric("perplexity")
class Perplexity:
    """Perplexity of the predictions under a reference causal LM (default SmolLM2-135M-Instruct, offline GGUF).

    Each prediction is scored as ``[start] + tokens(prediction)`` (+ EOS when ``add_eos``; off by default,
    as in Hugging Face ``evaluate``'s perplexity): every token of the text is predicted, the start token
    (``start_token``; default BOS, or EOS for tokenizers without one, GPT-2 style) only conditions; an
    instruct model's BOS may be a chat-turn marker (SmolLM2's is ``<|im_start|>``), hence the override. ``corpus["perplexity"]`` is
    token-weighted: exp(total NLL / total tokens); ``per_sample[i]`` is exp(mean NLL of prediction i)
    (NaN for a prediction with no token). Texts longer than ``max_length`` tokens (default: the model's
    positions) are cut, and their tail is not scored.
    """

    def __init__(
        self,
        model: str = DEFAULT_LM,
        gguf_file: str | None = None,
        tokenizer: str | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        add_eos: bool = False,
        start_token: str | None = None,
        device: str = "auto",
        dtype: str = "float32",
    ):
        from rl4text.rewards.learned import pick_device

        self.model, self.tokenizer = _load_causal_lm(model, gguf_file, tokenizer, dtype)
        self.device = pick_device(device)
        self.model.to(self.device)
        self.batch_size = batch_size
        self.add_eos = add_eos
        self.max_length = max_length or getattr(self.model.config, "max_position_embeddings", None)
        tok = self.tokenizer
        if start_token is not None:
            self.start_id = tok.convert_tokens_to_ids(start_token)
        else:
            self.start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if self.start_id is None:
            raise ValueError(f"the tokenizer of {model!r} has neither BOS nor EOS to start a text with")

    def _ids(self, text: str) -> list[int]:
        ids = [self.start_id, *self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        if self.add_eos:
            ids.append(self.tokenizer.eos_token_id)
        return ids[: self.max_length] if self.max_length else ids

    def token_nll(self, texts: list[str]) -> list[tuple[float, int]]:
        """``(summed NLL in nats, number of scored tokens)`` for each text."""
        import torch
        import torch.nn.functional as F

        seqs = [self._ids(t) for t in texts]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # like lengths together: less padding
        out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: a causal LM's real tokens never see the pads
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none") * mask[:, 1:]
            for row, i in enumerate(idx):
                out[i] = (nll[row].double().sum().item(), len(seqs[i]) - 1)
        return out

    def compute(self, predictions: list[str], references: list[list[str]] | None = None) -> MetricResult:
        pairs = self.token_nll(list(predictions))
        total_nll = sum(n for n, _ in pairs)
        total_tokens = sum(k for _, k in pairs)
        corpus = math.exp(total_nll / total_tokens) if total_tokens else math.nan
        per = [math.exp(n / k) if k else math.nan for n, k in pairs]
        return MetricResult({"perplexity": corpus}, per)
