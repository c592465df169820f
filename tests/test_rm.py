"""Reward models from human judgments: losses and agreement statistics against hand-worked numbers, the
judgment formats (malformed lines named), the leak-free split, save -> load, the learned_rm reward, the CLI."""

import json
import math
import os
from pathlib import Path

import pytest
import torch

from rl4text.cli import main
from rl4text.rm.config import load_rm_config
from rl4text.rm.data import (
    Group,
    load_groups,
    read_pairs,
    read_rankings,
    read_ratings,
    read_texts,
    split_groups,
)
from rl4text.rm.losses import bradley_terry, group_loss, plackett_luce, regression
from rl4text.rm.stats import agreement, average_ranks, kendall_tau_b, spearman
from rl4text.tasks import TaskDataError

DATA = Path(os.environ.get("RL4TEXT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TINY_RM = [
    "model.name_or_path=null",
    "model.random_init={model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
    "num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}",
    "model.tokenizer=char",
    "model.max_length=32",
]


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- losses -----------------------------------------------------------------------------------------------


def test_bradley_terry_hand_worked():
    r = torch.tensor([1.0, 0.0, 0.5])
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262
    assert bradley_terry(r, [(0, 1)]).item() == pytest.approx(0.313262, abs=1e-6)
    # margin 0.5: -log sigmoid(0.5) = 0.474077; mean with pair (1, 2): -log sigmoid(-0.5 - 0.5) = 1.313262
    assert bradley_terry(r, [(0, 1), (1, 2)], margin=0.5).item() == pytest.approx(
        (0.474077 + 1.313262) / 2, abs=1e-6
    )
    # the gradient raises the preferred completion and lowers the other
    r = torch.zeros(2, requires_grad=True)
    bradley_terry(r, [(0, 1)]).backward()
    assert r.grad[0] < 0 < r.grad[1]


def test_plackett_luce_hand_worked():
    r = torch.tensor([2.0, 1.0, 0.0])
    # [log(e^2 + e^1 + e^0) - 2] + [log(e^1 + e^0) - 1] + 0 = 0.407606 + 0.313262, averaged over 3 items
    assert plackett_luce(r, [3.0, 2.0, 1.0]).item() == pytest.approx((0.407606 + 0.313262) / 3, abs=1e-6)
    # the order comes from the scores, not the positions
    assert plackett_luce(r.flip(0), [1.0, 2.0, 3.0]).item() == pytest.approx(0.240289, abs=1e-6)
    # ties share a risk set (Breslow): both tied items see all three -> (log 3 + log 3 + 0) / 3
    assert plackett_luce(torch.zeros(3), [1.0, 1.0, 0.0]).item() == pytest.approx(2 * math.log(3) / 3)


def test_regression_and_group_loss_dispatch():
    assert regression(torch.tensor([1.0, 2.0]), [0.0, 4.0]).item() == pytest.approx((1 + 4) / 2)
    g = Group(key="k", prompt="", completions=["a", "b", "c"], scores=[2.0, 6.0, 4.0])
    # standardised targets (x - 4) / 2 = [-1, 1, 0]: squared errors of zeros are 1, 1, 0
    assert group_loss(torch.zeros(3), g, "regression", target_scale=(4.0, 2.0)).item() == pytest.approx(2 / 3)
    # ratings -> all pairs whose scores differ, better first: (1,0), (2,0), (1,2)
    assert sorted(g.preference_pairs()) == [(1, 0), (1, 2), (2, 0)]
    assert group_loss(torch.zeros(3), g, "bradley_terry").item() == pytest.approx(math.log(2))
    pairs_only = Group(key="k", prompt="", completions=["a", "b"], pairs=[(0, 1)])
    with pytest.raises(ValueError, match="pair data supports 'bradley_terry'"):
        group_loss(torch.zeros(2), pairs_only, "plackett_luce")


# --- agreement statistics ---------------------------------------------------------------------------------


def test_kendall_and_spearman_hand_worked():
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 12 / 60
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: C = 4, D = 0, one pair tied in x and one in y -> 4 / sqrt(5 * 5)
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    # average ranks [1, 2.5, 2.5, 4] and [1, 2, 3.5, 3.5]: r = 3.75 / 4.5
    assert average_ranks([1, 2, 2, 3]) == [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(3.75 / 4.5)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


def test_agreement_pairwise_accuracy_counts_metric_ties_as_half():
    groups = [
        Group(key="a", prompt="", completions=["x", "y", "z"], scores=[3.0, 2.0, 1.0]),
        Group(key="b", prompt="", completions=["x", "y"], scores=[1.0, 1.0]),  # human tie: no pair
    ]
    out = agreement(groups, [[0.9, 0.9, 0.1], [0.0, 5.0]])
    # pairs (0,1) tie -> 0.5, (0,2) right, (1,2) right -> 2.5 / 3
    assert out["pairwise_accuracy"] == pytest.approx(2.5 / 3)
    assert out["n_pairs"] == 3 and out["n_groups"] == 2 and out["n_items"] == 5
    assert out["kendall_tau"] == pytest.approx(kendall_tau_b([0.9, 0.9, 0.1], [3, 2, 1]))  # group b skipped


# --- formats ----------------------------------------------------------------------------------------------


def test_generic_formats(tmp_path):
    pairs = read_pairs(
        write_lines(
            tmp_path / "p.jsonl",
            [
                {"prompt": "q", "chosen": "good", "rejected": "bad"},
                {"prompt": "q", "chosen": "good", "rejected": "worse"},
                {"prompt": "", "chosen": "x", "rejected": "y", "references": ["x"]},
            ],
        )
    )
    assert [(g.key, g.completions, g.pairs) for g in pairs] == [
        ("q", ["good", "bad", "worse"], [(0, 1), (0, 2)]),
        ("", ["x", "y"], [(0, 1)]),
    ]
    assert pairs[1].references == ["x"]
    ranked = read_rankings(
        write_lines(
            tmp_path / "r.jsonl",
            [
                {"prompt": "a", "completions": ["1st", "2nd", "3rd"]},
                {"prompt": "b", "completions": ["u", "v", "w"], "ranks": [2, 1, 2]},
            ],
        )
    )
    assert ranked[0].preference_pairs() == [(0, 1), (0, 2), (1, 2)]
    assert sorted(ranked[1].preference_pairs()) == [(1, 0), (1, 2)]
    rated = read_ratings(
        write_lines(
            tmp_path / "s.jsonl",
            [
                {"prompt": "a", "completion": "x", "score": 1},
                {"prompt": "b", "completion": "y", "score": 0.5},
                {"prompt": "a", "completion": "z", "score": 3.5},
            ],
        )
    )
    assert [(g.key, g.completions, g.scores) for g in rated] == [
        ("a", ["x", "z"], [1.0, 3.5]),
        ("b", ["y"], [0.5]),
    ]


@pytest.mark.parametrize(
    "reader, bad_row, message",
    [
        (read_pairs, "{not json", "line 2: not valid JSON"),
        (read_pairs, {"prompt": "q", "chosen": "a"}, "line 2: field 'rejected'"),
        (read_pairs, {"prompt": "q", "chosen": "a", "rejected": "a"}, "line 2: 'chosen' and 'rejected'"),
        (read_rankings, {"prompt": "q", "completions": ["a"]}, "line 2: field 'completions'"),
        (read_rankings, {"prompt": "q", "completions": ["a", "b"], "ranks": [1]}, "line 2: field 'ranks'"),
        (read_ratings, {"prompt": "q", "completion": "a", "score": "high"}, "line 2: field 'score'"),
        (read_ratings, {"completion": "a", "score": 1}, "line 2: field 'prompt'"),
        (read_ratings, [1, 2], "line 2: expected a JSON object"),
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path, reader, bad_row, message):
    good = {
        read_pairs: {"prompt": "p", "chosen": "a", "rejected": "b"},
        read_rankings: {"prompt": "p", "completions": ["a", "b"]},
        read_ratings: {"prompt": "p", "completion": "a", "score": 1.0},
    }[reader]
    path = write_lines(tmp_path / "bad.jsonl", [good, bad_row])
    with pytest.raises(TaskDataError, match=message) as info:
        reader(path)
    assert str(path) in str(info.value)


def test_texts_to_score(tmp_path):
    assert read_texts(write_lines(tmp_path / "t.txt", ["one", "two"])) == (["", ""], ["one", "two"])
    jl = write_lines(tmp_path / "t.jsonl", [{"completion": "c"}, {"prompt": "p", "completion": "d"}])
    assert read_texts(jl) == (["", "p"], ["c", "d"])
    with pytest.raises(TaskDataError, match="line 1: field 'completion'"):
        read_texts(write_lines(tmp_path / "u.jsonl", [{"prompt": "p"}]))


# --- leak-free split --------------------------------------------------------------------------------------


def test_split_by_group_never_leaks():
    groups = [Group(key=f"doc{i % 10}", prompt="", completions=[str(i)], scores=[1.0]) for i in range(40)]
    train, held = split_groups(groups, 0.3, seed=1)
    assert {g.key for g in train}.isdisjoint({g.key for g in held})
    assert len({g.key for g in held}) == 3 and len(train) + len(held) == 40
    assert split_groups(groups, 0.3, seed=1) == (train, held)  # seeded
    assert split_groups(groups, 0.3, seed=2)[1] != held


@pytest.mark.skipif(not (DATA / "summeval").is_dir(), reason="needs the shared data folder")
def test_real_loaders_group_by_document_and_segment():
    summ = load_groups("summeval", DATA / "summeval" / "summeval_100docs.jsonl", aspect="relevance")
    assert len(summ) == 100 and all(len(g.completions) == 16 for g in summ)
    assert len({g.key for g in summ}) == 100 and all(len(g.references) == 11 for g in summ)
    train, held = split_groups(summ, 0.2)
    assert len(held) == 20 and {g.key for g in train}.isdisjoint({g.key for g in held})
    with pytest.raises(TaskDataError, match="no 'fluidity' score"):
        load_groups("summeval", DATA / "summeval" / "summeval_100docs.jsonl", aspect="fluidity")
    wmt = load_groups("wmt22", DATA / "wmt22_de_en")
    assert len({g.key for g in wmt}) == len(wmt) and all(len(g.completions) >= 2 for g in wmt)
    assert all(len(g.references) == 1 for g in wmt)
    hh = load_groups("hh_rlhf", DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz")
    assert sum(len(g.pairs) for g in hh) > 2000 and all(g.scores is None for g in hh)
    assert all(g.prompt.endswith("Assistant:") for g in hh if g.prompt)


def test_hh_rlhf_pairs_share_a_group_per_dialogue(tmp_path):
    """Answers to the same dialogue form one group; dialogues that differ before the last turn are compared
    whole, each pair its own group."""
    path = tmp_path / "hh.jsonl"
    turn = "\n\nHuman: hi\n\nAssistant:"
    rows = [
        {"chosen": turn + " hello", "rejected": turn + " go away"},
        {"chosen": turn + " hey there", "rejected": turn + " go away"},
        {"chosen": "\n\nHuman: a\n\nAssistant: fine", "rejected": "\n\nHuman: b\n\nAssistant: no"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    groups = load_groups("hh_rlhf", path)
    assert [(g.prompt, g.completions, g.pairs) for g in groups] == [
        (turn, ["hello", "go away", "hey there"], [(0, 1), (2, 1)]),
        ("", [rows[2]["chosen"], rows[2]["rejected"]], [(0, 1)]),
    ]
    assert groups[1].key == "pair-3"


# --- model, folder, reward, CLI ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rm_folder(tmp_path_factory):
    """A tiny RM trained for a few steps on synthetic vowel ratings, through the CLI."""
    from rl4text.rm.toy import main as write_toy

    root = tmp_path_factory.mktemp("rm")
    write_toy([str(root / "ratings.jsonl"), "--n-prompts", "40"])
    args = [f"data.path={root / 'ratings.jsonl'}", "train.epochs=1", "train.log_every=1"]
    assert main(["rm", "train", "configs/rm_smoke.yaml", *args, "--output-dir", str(root / "model")]) == 0
    return root


def test_rm_train_writes_the_folder(rm_folder):
    folder = rm_folder / "model"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "rm_meta.json",
        "eval.json",
        "metrics.jsonl",
    ):
        assert (folder / name).is_file(), name
    result = json.loads((folder / "eval.json").read_text())
    assert result["data"]["held_out_groups"] == 8 and result["data"]["train_groups"] == 32
    # chance is .5; this run reaches 41/45 = .911 (kendall_tau .80) on the 8 held-out prompts: a margin of ~.1
    held_out = result["held_out"]["reward_model"]
    assert held_out["n_pairs"] == 45 and held_out["pairwise_accuracy"] >= 0.8
    assert held_out["kendall_tau"] >= 0.6
    norm = json.loads((folder / "rm_meta.json").read_text())["normalization"]
    assert norm["n"] == 128 and norm["std"] > 0


def test_save_load_identical_scores(tmp_path):
    from rl4text.rm.model import RewardModel, build_backbone, model_inputs, save_reward_model

    cfg = load_rm_config("configs/rm_smoke.yaml", [*TINY_RM, "model.input=pair"])
    torch.manual_seed(0)
    scorer = build_backbone(cfg.model, "cpu")
    from rl4text.models import disable_dropout

    disable_dropout(scorer.model)
    prompts, completions = ["letters: abc", "q", ""], ["aeiou", "", "a much longer completion"]
    before = scorer.scores(*model_inputs("pair", prompts, completions), output="scalar")
    meta = {"input": "pair", "max_length": 32, "normalization": {"mean": 1.0, "std": 2.0}}
    save_reward_model(scorer, tmp_path, meta)
    rm = RewardModel(tmp_path, device="cpu")
    assert rm.raw(prompts, completions) == pytest.approx(before, abs=1e-6)
    assert rm.normalized(prompts, completions, batch_size=1) == pytest.approx(
        [(x - 1) / 2 for x in before], abs=1e-5
    )


def test_learned_rm_reward_normalises_and_calibrate_restores_mean0_std1(rm_folder, tmp_path, capsys):
    from rl4text.rewards import build_reward
    from rl4text.rm.model import RewardModel

    folder = rm_folder / "model"
    texts = ["aeiou", "zzz", "banana", "xkcd", "oui", ""]
    reward = build_reward({"name": "learned_rm", "args": {"path": str(folder)}})
    raw = RewardModel(folder).raw([""] * 6, texts)
    norm = json.loads((folder / "rm_meta.json").read_text())["normalization"]
    got = reward([""] * 6, texts, [[]] * 6)
    assert got == pytest.approx([(x - norm["mean"]) / norm["std"] for x in raw], abs=1e-5)
    # calibrate on these texts (a copy of the folder, the fixture is shared): then they have mean 0, std 1
    import shutil

    copy = tmp_path / "rm"
    shutil.copytree(folder, copy)
    file = write_lines(tmp_path / "samples.txt", texts)
    assert main(["rm", "calibrate", str(copy), str(file)]) == 0
    values = build_reward({"name": "learned_rm", "args": {"path": str(copy)}})([""] * 6, texts, [[]] * 6)
    mean = sum(values) / 6
    std = (sum((v - mean) ** 2 for v in values) / 5) ** 0.5
    assert mean == pytest.approx(0, abs=1e-5) and std == pytest.approx(1, abs=1e-5)
    # the learned reward ranks vowels above consonants (trained on vowel share)
    assert got[0] > got[1]
    capsys.readouterr()
    assert main(["rm", "score", str(copy), str(file)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["completion"] for r in rows] == texts and rows[0]["score"] == pytest.approx(values[0], abs=1e-5)


def test_cli_errors_speak(tmp_path, capsys, rm_folder):
    assert main(["rm", "train", "configs/rm_smoke.yaml", "train.epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epoch'" in err and "Did you mean 'epochs'?" in err
    out = ["--output-dir", str(rm_folder / "model")]
    assert (
        main(["rm", "train", "configs/rm_smoke.yaml", f"data.path={rm_folder / 'ratings.jsonl'}", *out]) == 2
    )
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["rm", "score", str(tmp_path), str(tmp_path / "x.txt")]) == 2
    assert "not a reward-model folder" in capsys.readouterr().err
    assert (
        main(
            [
                "rm",
                "train",
                "configs/rm_smoke.yaml",
                "data.format=pairs",
                f"data.path={tmp_path}/none.jsonl",
                "train.loss=regression",
            ]
        )
        == 2
    )
    assert "has pairs only: use 'bradley_terry'" in capsys.readouterr().err


def test_policy_trained_on_learned_rm_raises_it_and_the_vowel_share(rm_folder, tmp_path):
    from rl4text.config import load_config
    from rl4text.train import train

    overrides = [
        f"reward.components.0.args.path={rm_folder / 'model'}",
        "train.iterations=12",
        "eval.every=0",
        "eval.at_start=false",
        "train.save_final_model=false",
    ]
    train(load_config("configs/smoke_learned_rm.yaml", overrides), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "rollout/reward_mean" in r]

    def rise(key):
        values = [r[key] for r in rows]
        return sum(values[-3:]) / 3 - sum(values[:3]) / 3

    assert rise("reward/learned_rm") > 0.5, [r["reward/learned_rm"] for r in rows]
    assert rise("reward/char_fraction") > 0.1  # the true vowel share, logged with weight 0
