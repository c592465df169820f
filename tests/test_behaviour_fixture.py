"""Behaviour is pinned: smoke runs (PPO, NLPO, RLOO, SFT, reward model) give exactly the metrics recorded in
``tests/fixtures/*_metrics_before.jsonl`` before the restructuring of issue 12 (every key but wall-clock ones).

The values were checked to be the same at OMP_NUM_THREADS=1 and 2 (``python -m tests.behaviour_runs`` at each).
"""

from __future__ import annotations

import json

import pytest

from tests.behaviour_runs import RUNS, fixture_path, run


@pytest.mark.parametrize("name", sorted(RUNS))
def test_metrics_equal_the_recorded_run(tmp_path, name):
    expected = [json.loads(line) for line in fixture_path(name).read_text().splitlines()]
    got = run(name, tmp_path / "run")
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        assert have == want  # exact: the same floats, the same keys
