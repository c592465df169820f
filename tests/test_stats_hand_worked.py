"""The statistics of ``rl4text compare`` / ``rl4text bench`` (Student t intervals, verdicts) and of the reward-model
package (losses, agreement), on numbers worked out by hand in the comments, each case where its branch matters."""

import json
import math
from pathlib import Path

import pytest
import torch

from rl4text import compare as C
from rl4text.bench import _verdict, load_bench, summarize
from rl4text.rm.data import Group
from rl4text.rm.losses import bradley_terry, group_loss, plackett_luce
from rl4text.rm.stats import agreement, average_ranks, kendall_tau_b, pearson, spearman

SMOKE = Path(__file__).parent.parent / "configs" / "smoke.yaml"

# ------------------------------------------------------------------------------------------- t critical values


def _t_cdf(t: float, df: int, steps: int = 4000) -> float:
    """P(T <= t) by Simpson's rule on the Student t density (independent of the table)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    h = t / steps
    total = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 0.5 + total * h / 3


def test_t_between_table_rows_is_linear_in_one_over_df_by_hand():
    # t(df) = t_lo + (t_hi - t_lo) * (1/df - 1/df_lo) / (1/df_hi - 1/df_lo), df_hi < df < df_lo:
    #   df 35 in (30: 2.042, 40: 2.021): (1/35 - 1/40) / (1/30 - 1/40) = (1/280) / (1/120) = 3/7
    #         -> 2.021 + .021 * 3/7 = 2.030          (linear in df: 2.042 - .021 * .5 = 2.0315)
    #   df 50 in (40: 2.021, 60: 2.000): (1/50 - 1/60) / (1/40 - 1/60) = (1/300) / (1/120) = .4
    #         -> 2.000 + .021 * .4 = 2.0084          (linear in df: 2.0105)
    #   df 80 in (60: 2.000, 120: 1.980): (1/80 - 1/120) / (1/60 - 1/120) = (1/240) / (1/120) = .5
    #         -> 1.980 + .020 * .5 = 1.990           (linear in df: 1.99333)
    #   df 90: (1/90 - 1/120) / (1/120) = 1/3      -> 1.980 + .02/3 = 1.986667 (linear in df: 1.990)
    #   df 240 in (120: 1.980, inf: 1.960): (1/240) / (1/120) = .5 -> 1.970
    #   df 199: 120/199 -> 1.96 + .02 * 120/199 = 1.972060
    assert C.t_critical(35) == pytest.approx(2.030, abs=1e-12)
    assert C.t_critical(50) == pytest.approx(2.0084, abs=1e-12)
    assert C.t_critical(80) == pytest.approx(1.990, abs=1e-12)
    assert C.t_critical(90) == pytest.approx(1.98 + 0.02 / 3, abs=1e-12)
    assert C.t_critical(240) == pytest.approx(1.970, abs=1e-12)
    assert C.t_critical(199) == pytest.approx(1.96 + 0.02 * 120 / 199, abs=1e-12)


@pytest.mark.parametrize("df", [35, 45, 50, 55, 70, 80, 100, 150, 200, 1000])
def test_t_between_table_rows_is_within_half_a_thousandth_of_the_t_quantile(df):
    # critical values are nearly linear in 1/df, so interpolating there is within 2.5e-4 of the true quantile
    # (measured: df 55: 2.00382 vs 2.00404); linear in df misses by 1.2e-3 (df 55) to 2.7e-3 (df 80), and
    # beyond the last row (120) any scheme but 1/df -> 0 (the normal 1.96) is off by more
    t = C.t_critical(df)
    assert _t_cdf(t - 5e-4, df) < 0.975 < _t_cdf(t + 5e-4, df)


def test_mean_ci_for_two_three_and_many_values():
    # n = 2, [1, 3]: mean 2, s = sqrt(2) (n - 1 denominator), t_{.975, 1} = 12.706 -> 12.706 * sqrt(2)/sqrt(2)
    #   (the population sd 1 would give 8.985; t with df = n = 2 would give 4.303)
    assert C.mean_ci([1.0, 3.0]) == (2.0, pytest.approx(12.706))
    # n = 3, [1, 2, 6]: mean 3, s^2 = (4 + 1 + 9)/2 = 7, half = 4.303 * sqrt(7/3) = 6.572939
    assert C.mean_ci([1.0, 2.0, 6.0]) == (3.0, pytest.approx(4.303 * math.sqrt(7 / 3)))
    # n = 51, 0..50: mean 25, s^2 = n(n+1)/12 = 51 * 52 / 12 = 221, t_{.975, 50} = 2.0084 (interpolated)
    #   half = 2.0084 * sqrt(221 / 51) = 2.0084 * sqrt(13/3) = 4.180818
    mean, half = C.mean_ci([float(i) for i in range(51)])
    assert mean == 25.0 and half == pytest.approx(4.180818, abs=1e-6)
    # n = 200, a hundred 0s and a hundred 1s: s^2 = 50/199, t_{.975, 199} = 1.972060 -> half = .069898
    mean, half = C.mean_ci([0.0] * 100 + [1.0] * 100)
    assert mean == 0.5 and half == pytest.approx(0.069898, abs=1e-6)


def test_curves_count_a_resumed_iteration_once(tmp_path):
    # a resumed run logs iterations 2 again: the later row wins, so iteration 2's mean is (5 + 1)/2 = 3,
    # not the mean of three rows (4 + 5 + 1)/3
    rows = [
        {"iteration": 1, "rollout/reward_mean": 1.0},
        {"iteration": 2, "rollout/reward_mean": 4.0},
        {"iteration": 2, "rollout/reward_mean": 5.0},
    ]
    runs = [
        C.Run("a", tmp_path, {}, rows, {}),
        C.Run("b", tmp_path, {}, [{"iteration": 2, "rollout/reward_mean": 1.0}], {}),
    ]
    data = C.curves([C.Group("g", runs, {})], "rollout/reward_mean")["g"]
    assert data["x"] == [1, 2] and data["mean"] == [1.0, 3.0] and data["n"] == [1, 2]


# ------------------------------------------------------------------------------------------------ bench verdicts

START = {"chrf": 10.0, "ter": 50.0, "response_length": 20.0}
# three seeds at start + shift + [-1, 0, 1]: sd 1, half-width 4.303 / sqrt(3) = 2.484
SHIFTS = {"up": 5.0, "down": -5.0, "flat": 2.0}


def _bench_with_results(tmp_path):
    path = tmp_path / "bench.yaml"
    algorithms = {name: [] for name in [*SHIFTS, "lone"]}
    path.write_text(json.dumps({"base_config": str(SMOKE), "algorithms": algorithms, "seeds": [0, 1, 2]}))
    bench = load_bench(path, tmp_path / "out")
    (bench.output_dir / "start").mkdir(parents=True)
    (bench.output_dir / "start" / "eval.json").write_text(json.dumps({"metrics": START}))
    for label, shift in [*SHIFTS.items(), ("lone", 5.0)]:
        for seed, noise in zip(bench.seeds, (-1.0, 0.0, 1.0)):
            if label == "lone" and seed:
                continue  # one finished seed
            test = bench.run_dir(label, seed) / "test"
            test.mkdir(parents=True)
            metrics = {m: v + shift + noise for m, v in START.items()}
            (test / "eval.json").write_text(json.dumps({"metrics": metrics}))
    # training speed of "up": seed 0 logged 1, 2 and 3 s per iteration, seed 1 6 s, seed 2 nothing
    for seed, times in ((0, [1.0, 2.0, 3.0]), (1, [6.0])):
        rows = [{"iteration": i + 1, "time/iteration_s": t} for i, t in enumerate(times)] + [{"iteration": 0}]
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (bench.run_dir("up", seed) / "metrics.jsonl").write_text(lines)
    return summarize(bench)


def test_bench_verdicts_for_higher_lower_and_neither_better(tmp_path):
    results = _bench_with_results(tmp_path)
    s = results["summary"]
    half = 4.303 / math.sqrt(3)
    # up: +5 > 2.484 -> chrF (higher is better) better, TER (an error rate) worse, length just higher
    assert s["up"]["chrf"]["change"] == pytest.approx(5.0)
    assert s["up"]["ter"]["ci95_half_width"] == pytest.approx(half)
    assert {m: v["verdict"] for m, v in s["up"].items()} == {
        "chrf": "better than start",
        "ter": "worse than start",
        "response_length": "higher than start",
    }
    # down: -5 -> chrF worse, TER better, length lower
    assert {m: v["verdict"] for m, v in s["down"].items()} == {
        "chrf": "worse than start",
        "ter": "better than start",
        "response_length": "lower than start",
    }
    # flat: +2 inside the interval 2.484 -> no significant change in any direction
    assert {v["verdict"] for v in s["flat"].values()} == {"no significant change"}
    # lone: one seed, no interval, whatever the change
    assert s["lone"]["chrf"]["n"] == 1 and s["lone"]["chrf"]["ci95_half_width"] is None
    assert {v["verdict"] for v in s["lone"].values()} == {"one seed: no interval"}
    # seconds per iteration: the mean over all logged iterations, (1 + 2 + 3 + 6) / 4 = 3 (not the mean of the
    # seeds' means, (2 + 6) / 2 = 4, nor the total over the 3 seeds, 12 / 3 = 4); none logged: None
    assert results["seconds_per_iteration"] == {"up": 3.0, "down": None, "flat": None, "lone": None}


def test_bench_verdict_boundary_and_other_lower_is_better_metrics():
    # an interval that just reaches the start (|change| == half) is not a significant change
    assert _verdict(2.0, 2.0, "chrf") == "no significant change"
    assert _verdict(-2.0, 2.0, "ter") == "no significant change"
    assert _verdict(2.001, 2.0, "chrf") == "better than start"
    for lower in ("ter", "self_bleu", "perplexity"):
        assert _verdict(-3.0, 1.0, lower) == "better than start"
        assert _verdict(3.0, 1.0, lower) == "worse than start"
    assert _verdict(-3.0, 1.0, "eos_rate") == "lower than start"
    assert _verdict(3.0, 1.0, "bleu") == "better than start"


# --------------------------------------------------------------------------------------------- reward-model losses


def test_bradley_terry_without_pairs_is_zero_and_keeps_the_graph():
    r = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = bradley_terry(r, [])
    assert loss.item() == 0.0
    loss.backward()
    assert r.grad.tolist() == [0.0, 0.0]


def test_plackett_luce_with_a_tie_in_the_middle():
    # scores [4, 2, 2, 1] (items 1 and 2 tied), rewards r = [1, 0, 2, -1]; risk set of i = items not ranked above
    #   item 0: {0,1,2,3}: log(e + 1 + e^2 + e^-1) - 1 = 2.440190 - 1
    #   item 1: {1,2,3}:   log(1 + e^2 + e^-1)     - 0 = 2.169846
    #   item 2: {1,2,3} (Breslow: shares item 1's set)  = 2.169846 - 2
    #   item 3: {3}: 0
    #   mean over 4 items: (1.440190 + 2.169846 + .169846) / 4 = .944970
    # (breaking the tie by position, item 2's set {2, 3}: log(e^2 + e^-1) - 2 = .048587 -> .914655)
    r = torch.tensor([1.0, 0.0, 2.0, -1.0])
    assert plackett_luce(r, [4.0, 2.0, 2.0, 1.0]).item() == pytest.approx(0.944970, abs=1e-6)


def test_group_loss_dispatch_defaults_and_errors():
    g = Group(key="k", prompt="", completions=["a", "b"], scores=[3.0, 1.0])
    r = torch.tensor([0.5, 0.0])
    # ranked/rated groups: PL of 2 items = BT of their one pair / 2: log(1 + e^-.5) / 2 = .474077 / 2
    assert group_loss(r, g, "plackett_luce").item() == pytest.approx(0.474077 / 2, abs=1e-6)
    assert group_loss(r, g, "bradley_terry").item() == pytest.approx(0.474077, abs=1e-6)
    # margin .5: -log sigmoid(.5 - 0 - .5) = log 2
    assert group_loss(r, g, "bradley_terry", margin=0.5).item() == pytest.approx(math.log(2))
    # regression without target_scale: the raw ratings: ((.5 - 3)^2 + (0 - 1)^2) / 2 = (6.25 + 1) / 2
    assert group_loss(r, g, "regression").item() == pytest.approx(3.625)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        group_loss(r, g, "hinge")
    pairs = Group(key="k", prompt="", completions=["a", "b"], pairs=[(1, 0)])
    with pytest.raises(ValueError, match="needs scored or ranked groups"):
        group_loss(r, pairs, "regression")
    # explicit pairs: item 1 preferred: -log sigmoid(0 - .5) = log(1 + e^.5) = .974077
    assert group_loss(r, pairs, "bradley_terry").item() == pytest.approx(0.974077, abs=1e-6)


# ---------------------------------------------------------------------------------------------- agreement statistics


def test_pearson_spearman_and_errors():
    # x [1, 2, 3], y [1, 3, 2]: deviations [-1, 0, 1] and [-1, 1, 0]: sxy = 1, sxx = syy = 2 -> r = .5
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # Spearman is Pearson on ranks, so a monotone but non-linear relation scores 1 where Pearson does not:
    #   x [1, 2, 3], y [1, 4, 100] -> rho = 1; Pearson: deviations [-1, 0, 1], [-34, -31, 65]: 99 / sqrt(2 * 6342)
    assert spearman([1, 2, 3], [1, 4, 100]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [1, 4, 100]) == pytest.approx(99 / math.sqrt(2 * 6342))
    assert math.isnan(pearson([1.0], [2.0])) and math.isnan(pearson([1, 1], [1, 2]))
    with pytest.raises(ValueError, match="different lengths"):
        pearson([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="different lengths"):
        kendall_tau_b([1, 2], [1])
    # average ranks with two tie blocks: [5, 1, 5, 1, 3] -> 1s take ranks 1, 2 -> 1.5; 3 -> 3; 5s -> 4.5
    assert average_ranks([5, 1, 5, 1, 3]) == [4.5, 1.5, 4.5, 1.5, 3.0]


def test_kendall_tau_b_corrects_for_ties_that_tau_a_ignores():
    # x [1, 1, 2], y [1, 1, 2]: pairs (0,1) tied in both, (0,2) and (1,2) concordant; n0 = 3, n1 = n2 = 1
    #   tau-b = 2 / sqrt((3 - 1)(3 - 1)) = 1 (identical rankings);   tau-a = 2 / 3
    assert kendall_tau_b([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)
    # ties in y only: x [1, 2, 3], y [1, 1, 2]: C = 2, D = 0, n1 = 0, n2 = 1 -> 2 / sqrt(3 * 2) = .816497
    assert kendall_tau_b([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / math.sqrt(6))


def test_agreement_within_groups_versus_pooled():
    # two groups, each ordered perfectly by the scorer, but group b's scores are all higher:
    #   within groups: tau = rho = 1 in each, pairwise accuracy 6/6
    #   pooled: scorer [.3, .2, .1, 10, 9, 8], human [3, 2, 1, 3, 2, 1]
    #     Kendall: 6 within pairs concordant; 9 cross pairs: 3 human-tied, 3 concordant (human a < b),
    #     3 discordant -> C = 9, D = 3, n0 = 15, ties in human 3 -> (9 - 3) / sqrt(15 * 12) = .447214
    #     Spearman: scorer ranks [3, 2, 1, 6, 5, 4], human ranks [5.5, 3.5, 1.5, 5.5, 3.5, 1.5]
    #     deviations [-.5, -1.5, -2.5, 2.5, 1.5, .5] and [2, 0, -2, 2, 0, -2]: sxy = 8, sxx = 17.5, syy = 16
    #     -> 8 / sqrt(280) = .478091
    # a third group of pair data adds its pair to the accuracy but nothing to the rank statistics
    groups = [
        Group(key="a", prompt="", completions=["x", "y", "z"], scores=[3.0, 2.0, 1.0]),
        Group(key="b", prompt="", completions=["x", "y", "z"], scores=[3.0, 2.0, 1.0]),
        Group(key="c", prompt="", completions=["x", "y"], pairs=[(1, 0)]),
    ]
    out = agreement(groups, [[0.3, 0.2, 0.1], [10.0, 9.0, 8.0], [0.0, -1.0]])
    # pair (1, 0) of group c: scorer says 0 > -1, wrong -> 6 / 7
    assert out["pairwise_accuracy"] == pytest.approx(6 / 7)
    assert out["n_pairs"] == 7 and out["n_groups"] == 3 and out["n_items"] == 8
    assert out["kendall_tau"] == pytest.approx(1.0) and out["spearman_rho"] == pytest.approx(1.0)
    assert out["kendall_tau_pooled"] == pytest.approx(6 / math.sqrt(180))
    assert out["spearman_rho_pooled"] == pytest.approx(8 / math.sqrt(280))
    # pair data only: accuracy, no rank statistics
    only_pairs = agreement(groups[2:], [[1.0, 0.0]])
    assert only_pairs["pairwise_accuracy"] == 0.0 and "kendall_tau" not in only_pairs
