"""How much agreement can any scorer reach with WMT22 de->en segment-level DA scores? A data check.

    RL4TEXT_DATA=../shared/data .venv/bin/python benchmarks/wmt22_da_noise.py

Two systems that output the *same* translation of the same segment should get about the same human score if the
scores measure the text. This compares the absolute z-score difference of such identical pairs with that of random
pairs of scored items, and prints the sentence-chrF vs DA-z Pearson correlation over all scored items.
"""

from __future__ import annotations

import itertools
import random
import statistics

from sacrebleu.metrics import CHRF

from rl4text.tasks import data_root
from rl4text.tasks.judgments import read_wmt22


def main() -> None:
    root = data_root()
    if root is None:
        raise SystemExit("set RL4TEXT_DATA to the folder holding wmt22_de_en/")
    records = read_wmt22(root / "wmt22_de_en")
    same = []
    for rec in records:
        scored = [s for s in rec["systems"].values() if "da_z" in s]
        same += [
            abs(a["da_z"] - b["da_z"]) for a, b in itertools.combinations(scored, 2) if a["text"] == b["text"]
        ]
    z = [s["da_z"] for r in records for s in r["systems"].values() if "da_z" in s]
    rng = random.Random(0)
    rand = [abs(rng.choice(z) - rng.choice(z)) for _ in range(20000)]
    chrf = CHRF()
    xs, ys = [], []
    for rec in records:
        for s in rec["systems"].values():
            if "da_z" in s:
                xs.append(chrf.sentence_score(s["text"], [rec["reference"]]).score)
                ys.append(s["da_z"])
    print(f"scored items: {len(z)}")
    print(
        f"identical translations of the same segment: {len(same)} pairs, mean |z difference| {statistics.fmean(same):.3f}"
    )
    print(f"random pairs of scored items: mean |z difference| {statistics.fmean(rand):.3f}")
    print(f"Pearson r(sentence chrF, DA z) over all scored items: {statistics.correlation(xs, ys):.3f}")


if __name__ == "__main__":
    main()
