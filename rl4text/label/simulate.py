"""Scripted annotators for trying a project end to end without people (tests, the README's walkthrough).

``python -m rl4text.label.simulate URL --prefer chrf --noise 0.05`` runs annotators against a served project
(``rl4text label serve``) through its JSON API, as a script of real annotators would: each asks
``/api/next``, scores the candidates (``vowels``: share of vowels, the smoke task's reward; ``chrf``: sentence
chrF against the references the project shows, ``--show-references``), adds Gaussian noise of its own,
calls a tie within ``--tie-margin``, and posts the order. They stand in for people; they are not people.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import urllib.request


def preference(text: str, references: list[str], prefer: str) -> float:
    if prefer == "vowels":
        from rl4text.rm.toy import vowel_fraction

        return vowel_fraction(text)
    if not references:
        raise ValueError("--prefer chrf needs references: make the project with --show-references")
    import sacrebleu

    return sacrebleu.sentence_chrf(text, references).score / 100.0


def judgment(
    item: dict, annotator: str, rng: random.Random, *, prefer: str, noise: float, tie_margin: float
) -> dict:
    """The POST body an annotator with this taste sends for ``item`` (an ``/api/next`` answer)."""
    refs = item.get("references", [])
    score = [preference(c["text"], refs, prefer) + rng.gauss(0.0, noise) for c in item["candidates"]]
    order = sorted(range(len(score)), key=lambda i: -score[i])
    tie = len(score) == 2 and abs(score[0] - score[1]) < tie_margin
    return {"item": item["item"], "annotator": annotator, "order": order, "tie": tie}


def _call(url: str, token: str | None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Label-Token"] = token
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers)) as resp:
        return json.loads(resp.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="the served project, e.g. http://127.0.0.1:8765")
    parser.add_argument("--annotators", nargs="+", default=["sim1", "sim2", "sim3"])
    parser.add_argument("--prefer", choices=("vowels", "chrf"), default="chrf")
    parser.add_argument("--noise", type=float, default=0.05, help="sd of each annotator's score noise")
    parser.add_argument("--tie-margin", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    total = 0
    for k, name in enumerate(args.annotators):
        rng = random.Random(args.seed * 1000 + k)
        while (item := _call(f"{base}/api/next?annotator={name}", args.token))["item"]:
            body = judgment(item, name, rng, prefer=args.prefer, noise=args.noise, tie_margin=args.tie_margin)
            _call(f"{base}/api/judgments", args.token, body)
            total += 1
        print(f"{name}: done ({item['progress']['judged']} judged)", file=sys.stderr)
    print(json.dumps({"judgments_posted": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
