"""rl4text's built-in character tokenizer, for randomly initialised models in tests and smoke runs."""

from __future__ import annotations

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 .,!?'-:"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def char_tokenizer():
    """A lower-casing character-level fast tokenizer: ``<pad>``=0, ``<s>``=1, ``</s>``=2 (EOS), ``<unk>``=3."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(CHARS))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
