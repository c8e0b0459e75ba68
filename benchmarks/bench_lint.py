"""Timing benchmark for harness.lint (not a test; prints wall-clock time and planted-vs-found counts).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_lint.py [--n 100000] [--seed 0] [--keep DIR]

Generates `n` synthetic chat examples (90% a training file, 10% a holdout file): Zipf-distributed
pseudo-words, a mix of free text, templated support tickets (a shared template, as real
fine-tuning data has), system prompts and multi-turn dialogues. Into them it plants exact
duplicates (case / whitespace / punctuation changed), near-duplicates (one word changed in a
long text), contradictions (same input, a different answer) and exact and near leaks from the
training file into the holdout, then lints both files and compares what was planted with what
was found.

Target: 100,000 examples in < 30 s on a 2-core machine (the near-duplicate search is MinHash +
LSH banding, linear in the number of examples).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

try:
    from harness.lint import LintThresholds, lint_files
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.lint import LintThresholds, lint_files

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "gu", "ran", "tel", "bor", "dim", "sa", "quo",
             "fe", "zu", "ly", "nor", "che", "wa", "xi", "jo", "pra", "stu", "ble", "ich"]


def make_vocab(rng: random.Random, size: int = 20_000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = make_vocab(self.rng)
        # Zipf-like weights: common words recur across examples, as in real text
        self.cum = []
        total = 0.0
        for rank in range(1, len(self.vocab) + 1):
            total += 1 / rank**1.05
            self.cum.append(total)

    def words(self, n: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=n)

    def sentence(self, lo: int, hi: int) -> str:
        ws = self.words(self.rng.randint(lo, hi))
        ws[0] = ws[0].capitalize()
        return " ".join(ws) + self.rng.choice([".", "?", "!", "."])

    def example(self, i: int) -> dict:
        rng = self.rng
        kind = rng.random()
        if kind < 0.3:  # templated support ticket
            user = (f"Customer {self.words(1)[0].capitalize()} {self.words(1)[0].capitalize()} writes about order "
                    f"{rng.randint(10000, 99999)}: {self.sentence(12, 40)} Classify the request and extract the order.")
            answer = json.dumps({"category": rng.choice(["refund", "replacement", "question", "complaint"]),
                                 "order": rng.randint(10000, 99999), "note": " ".join(self.words(rng.randint(3, 12)))})
        else:
            user = self.sentence(8, 60)
            answer = self.sentence(3, 30)
        messages = []
        if rng.random() < 0.2:
            messages.append({"role": "system", "content": "You are a helpful, concise support assistant."})
        if rng.random() < 0.1:  # an earlier exchange
            messages += [{"role": "user", "content": self.sentence(5, 20)},
                         {"role": "assistant", "content": self.sentence(3, 15)}]
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return {"id": f"ex{i}", "messages": messages}


def last_user(row: dict) -> dict:
    return [m for m in row["messages"] if m["role"] == "user"][-1]


def restyle(text: str, rng: random.Random) -> str:
    """Same text after normalisation: case, whitespace and punctuation changed."""
    text = text.upper() if rng.random() < 0.5 else text.lower()
    text = text.replace(" ", "  ", 3).rstrip(".?!") + rng.choice(["", "!!", " ?", "..."])
    return "  " + text


def change_one_word(text: str, gen: Generator) -> str:
    words = text.split(" ")
    k = gen.rng.randrange(len(words) // 4, 3 * len(words) // 4)
    words[k] = gen.words(1)[0] + "x"
    return " ".join(words)


def build(n: int, seed: int, out: Path) -> dict[str, int]:
    gen = Generator(seed)
    rng = gen.rng
    n_holdout = n // 10
    n_train = n - n_holdout
    planted = {"exact-duplicate": n_train // 200, "near-duplicate": n_train // 200,
               "contradiction": n_train // 300, "leakage": n_holdout // 50, "near-leakage": n_holdout // 50}
    n_fresh_train = n_train - planted["exact-duplicate"] - planted["near-duplicate"] - planted["contradiction"]
    n_fresh_held = n_holdout - planted["leakage"] - planted["near-leakage"]
    train = [gen.example(i) for i in range(n_fresh_train)]
    held = [gen.example(n_train + i) for i in range(n_fresh_held)]

    def long_enough(row: dict) -> bool:  # one changed word must keep Jaccard clearly above 0.8
        return len(last_user(row)["content"].split()) >= 40 and sum(m["role"] == "user" for m in row["messages"]) == 1

    sources = list(range(len(train)))
    rng.shuffle(sources)
    long_sources = [i for i in sources if long_enough(train[i])]
    short_sources = [i for i in sources if not long_enough(train[i])]
    used: set[int] = set()

    def take(pool: list[int]) -> int:
        while True:
            i = pool.pop()
            if i not in used:
                used.add(i)
                return i

    extra = []
    for _ in range(planted["exact-duplicate"]):
        src = json.loads(json.dumps(train[take(short_sources)]))
        for m in src["messages"]:
            m["content"] = restyle(m["content"], rng)
        extra.append(src)
    for _ in range(planted["near-duplicate"]):
        src = json.loads(json.dumps(train[take(long_sources)]))
        last_user(src)["content"] = change_one_word(last_user(src)["content"], gen)
        extra.append(src)
    for _ in range(planted["contradiction"]):
        src = json.loads(json.dumps(train[take(short_sources)]))
        src["messages"][-1]["content"] = gen.sentence(15, 30)  # same input, another answer
        extra.append(src)
    for _ in range(planted["leakage"]):
        src = json.loads(json.dumps(train[take(short_sources)]))
        last_user(src)["content"] = restyle(last_user(src)["content"], rng)
        src["messages"][-1]["content"] = gen.sentence(3, 20)
        held.append(src)
    for _ in range(planted["near-leakage"]):
        src = json.loads(json.dumps(train[take(long_sources)]))
        last_user(src)["content"] = change_one_word(last_user(src)["content"], gen)
        held.append(src)
    for row in extra:
        train.insert(rng.randrange(len(train) + 1), row)
    rng.shuffle(held)
    for name, rows in (("train.jsonl", train), ("holdout.jsonl", held)):
        with (out / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="examples in all (train + holdout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write the data here (default: a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        planted = build(args.n, args.seed, out)
        size = sum((out / f).stat().st_size for f in ("train.jsonl", "holdout.jsonl"))
        print(f"generated {args.n:,} examples ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        t0, c0 = time.perf_counter(), time.process_time()
        report = lint_files([out / "train.jsonl"], holdout=[out / "holdout.jsonl"], thresholds=LintThresholds())
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"lint_files: {elapsed:.1f} s wall, {cpu:.1f} s CPU for {args.n:,} examples (target < 30 s); "
          f"peak RSS {rss:.0f} MB; exit code {report.exit_code}")
    print(f"{'finding':<20}{'planted':>10}{'found':>10}")
    for code, count in planted.items():
        found = sum(f.count for f in report.by_code(code))
        print(f"{code:<20}{count:>10,}{found:>10,}")
    others = sorted({f.code for f in report.findings} - set(planted))
    for code in others:
        print(f"{code:<20}{'-':>10}{sum(f.count for f in report.by_code(code)):>10,}   (not planted)")


if __name__ == "__main__":
    main()
