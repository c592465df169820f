"""Progress display: ETA formatting, summary lines in logs, a bar on terminals."""

import pytest

from rl4text.progress import Progress, format_seconds

ROW = {"rollout/reward_mean": 0.5, "kl/mean": 0.25, "rollout/response_length": 12.0, "policy/approx_kl": 0.01}


@pytest.mark.parametrize(("seconds", "text"), [(7.2, "7s"), (65, "1m05s"), (3725, "1h02m05s"), (0, "0s")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_lines_mode_prints_every_n_with_eta(capsys, monkeypatch):
    clock = iter([100.0, 120.0])  # start; read again only when a line is printed (after 2 iterations)
    monkeypatch.setattr("rl4text.progress.time.perf_counter", lambda: next(clock))
    p = Progress(total=10, start=0, mode="lines", print_every=2)
    p.iteration_done(1, {**ROW, "time/iteration_s": 10.0})
    assert capsys.readouterr().out == ""  # only every 2nd iteration
    p.iteration_done(2, {**ROW, "time/iteration_s": 10.0})
    line = capsys.readouterr().out
    # 2 iterations in 20 s -> 10 s each, 8 left -> eta 1m20s
    assert "iter    2/10" in line and "reward +0.5000" in line and "len 12.0" in line and "eta 1m20s" in line


def test_resumed_run_counts_from_its_start(monkeypatch):
    clock = iter([0.0, 5.0])
    monkeypatch.setattr("rl4text.progress.time.perf_counter", lambda: next(clock))
    p = Progress(total=20, start=10, mode="none")
    assert p.eta(11) == pytest.approx(5.0 * 9)  # one iteration done since the resume, 9 left


def test_bar_mode_tracks_phase_and_count(capsys):
    p = Progress(total=3, start=1, mode="bar")
    p.phase("rollout", 2)
    p.iteration_done(2, ROW)
    assert p.bar.n == 2 and "rollout" in p.bar.desc
    p.close()
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never to stdout
