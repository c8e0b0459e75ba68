"""`harness lint-data`: catch bad fine-tuning data and leaky holdouts before any model runs.

    report = lint_files([Path("train.jsonl")], holdout=[Path("eval.jsonl")])
    print(report.render_text()); sys.exit(report.exit_code)

Every finding has a level (error / warning / info), a code, a message, the file and the first
offending line numbers. Codes:

- structure (error): `bad-json`, `missing-messages`, `bad-message`, `missing-user`,
  `missing-answer` (last turn is not the assistant's), `empty-assistant`, `empty-user`,
  `assistant-first`, `system-not-first`, `repeated-role` (two user or two assistant turns in a
  row), `bad-row` (a field-mapped row the suite's `data.fields` cannot read), `empty-file`,
  `unsupported-format` (CSV without a field map).
- `exact-duplicate`, `near-duplicate`: whole examples identical after normalising case,
  whitespace and punctuation / near-identical (MinHash over word shingles, verified Jaccard).
  Warning; error above `max_duplicate_rate` / `max_near_duplicate_rate`.
- `leakage`, `near-leakage`: a holdout (evaluation) example whose user turns are identical /
  near-identical to a training example's; `fewshot-leakage`: the same for the few-shot examples
  a variant puts in every prompt. Level `leakage` (error).
- `contradiction`: the same normalised input with different answers (level `contradictions`);
  `near-contradiction`: near-identical inputs (same system prompt) whose answers differ in a way
  the input's difference does not explain (level `near_contradictions`).
- `format-failures`: share of answers failing the suite's own format-axis checks (warning;
  error above `max_format_failure_rate`); `format-inconsistent`: without a suite, most answers
  are JSON but some are not (warning).
- `too-few-examples` (warning): a training set smaller than `min_examples`.
- `answer-too-long` (warning): answers longer than the suite's `generation.max_tokens`;
  `tokenizer-unavailable` (info). Length statistics (not findings) are in each file's summary:
  prompt and answer lengths in whitespace words, or in tokens of a model's tokenizer when one is
  named (`tokenizer=`; off by default because loading a tokenizer costs seconds).

What is compared. Text is normalised (NFKC, case-folded, punctuation and extra whitespace
dropped). Duplicates compare whole examples; leakage compares the user turns (a multiple-choice
case's options count as part of its input); contradictions compare the input turns (system, user,
earlier assistant turns). Similarity ignores system prompts (a shared one would make everything
alike) and shingles that more than `boilerplate` of the distinct texts share (templates, long
shared instructions): it measures what varies between examples.

How. Near-duplicate search is MinHash (128 hash functions over `shingle_words`-word shingles,
texts padded at both ends) with LSH banding tuned to `near_duplicate`; a large LSH bucket is
compared within a sliding window, so the work grows with the number of examples, not its square.
Each candidate pair is then checked with its exact Jaccard similarity, so a reported
near-duplicate is never a hashing accident (a true pair is missed with probability < 0.5 % at the
threshold, far less above it). 100,000 examples take about 10 s of CPU
(`benchmarks/bench_lint.py`).

The package: `findings` (thresholds, findings, report), `minhash` (near-duplicate search), `examples`
(rows loaded, structure checked, texts normalised), `checks` (per-file checks and `lint_files`),
`leakage` (evaluation cases against training data; `holdout_overlap` for `harness run`).
"""

from harness.lint.checks import lint_files
from harness.lint.examples import normalize
from harness.lint.findings import FileSummary, Finding, LintReport, LintThresholds
from harness.lint.leakage import holdout_overlap

__all__ = ["FileSummary", "Finding", "LintReport", "LintThresholds", "holdout_overlap", "lint_files", "normalize"]
