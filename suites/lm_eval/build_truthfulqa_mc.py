"""Build lm-eval's TruthfulQA multiple-choice layout from the TruthfulQA generation CSV.

    python suites/lm_eval/build_truthfulqa_mc.py            # writes suites/lm_eval/data/truthfulqa_mc.jsonl
    python suites/lm_eval/build_truthfulqa_mc.py IN.csv OUT.jsonl

Each CSV row (Question, Best Answer, Correct Answers, Incorrect Answers; answers ';'-separated)
becomes one line in the layout of lm-eval's `truthfulqa_mc1` / `truthfulqa_mc2` tasks
(the `multiple_choice` config of the `truthful_qa` dataset):

    {"question": ..., "category": ...,
     "mc1_targets": {"choices": [best, false_1, ...], "labels": [1, 0, ...]},
     "mc2_targets": {"choices": [true_1, ..., false_1, ...], "labels": [1, ..., 0, ...]}}

Labelling follows the harness's own `truthfulqa_mc` scorer: the best answer and the correct
answers are true, the incorrect answers false; an answer listed as both (a few rows have one, e.g.
"Unknown") is left out; duplicates are dropped, order kept. Rows whose best answer is also listed
as incorrect, or that keep no false answer, are skipped (reported on stderr). These choice sets are
built from the generation CSV, so scores are close to, not identical with, lm-eval's official
`truthfulqa_mc1/mc2` (whose choice lists were curated separately). Standard library only.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_IN = HERE.parent / "data" / "external" / "truthfulqa.csv"
DEFAULT_OUT = HERE / "data" / "truthfulqa_mc.jsonl"


def split_answers(text: str) -> list[str]:
    seen: list[str] = []
    for part in (text or "").split(";"):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return seen


def convert_row(row: dict[str, str]) -> dict | None:
    best = row["Best Answer"].strip()
    true = split_answers(row["Correct Answers"])
    false = split_answers(row["Incorrect Answers"])
    both = set(true) & set(false)
    if best in both or best in false:
        return None
    if best not in true:
        true.insert(0, best)
    true = [a for a in true if a not in both]
    false = [a for a in false if a not in both]
    if not false:
        return None
    return {
        "question": row["Question"].strip(),
        "category": row.get("Category", ""),
        "mc1_targets": {"choices": [best] + false, "labels": [1] + [0] * len(false)},
        "mc2_targets": {"choices": true + false, "labels": [1] * len(true) + [0] * len(false)},
    }


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_IN
    target = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out, skipped = [], []
    for number, row in enumerate(rows, start=2):
        converted = convert_row(row)
        if converted is None:
            skipped.append(number)
        else:
            out.append(converted)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        for item in out:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"{len(out)} questions -> {target}" + (f"; skipped CSV lines {skipped}" if skipped else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
