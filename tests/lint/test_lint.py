"""`harness lint-data`: structural errors, duplicates, leakage, contradictions, format, lengths."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from harness.config.suite import load_suite
from harness.errors import ConfigError
from harness.lint import LintThresholds, holdout_overlap, lint_files, normalize
from harness.lint.minhash import BUCKET_WINDOW, NUM_PERM, candidate_pairs
from tests.helpers import REPO, chat_rows, write, write_jsonl

FIX = REPO / "tests" / "fixtures" / "lint"
QUIET = LintThresholds(min_examples=0)


@pytest.fixture
def tickets(tmp_path):
    """A field-mapped suite over fixtures/lint/suite (written here: a suite YAML under tests/ would be
    collected by the harness pytest plugin). In its split, t01 (line 1) is held out and t07 (line 7,
    the same text with '!') is in the train split; answers on lines 4 and 8 fail the schema."""
    return load_suite(write(tmp_path / "tickets.yaml", f"""
        suite: tickets
        data:
          path: {FIX / "suite" / "tickets.jsonl"}
          fields: {{id: id, input: text, reference: answer}}
          holdout: 0.5
          seed: 3
        variants: [base, fewshot]
        generation: {{max_tokens: 4}}
        scorers:
          format: {{json_schema: {FIX / "suite" / "ticket.schema.json"}}}
          accuracy: exact_match
    """))


def only(report, code):
    (finding,) = report.by_code(code)
    return finding


def test_clean_data_has_no_findings_and_exits_0():
    report = lint_files([FIX / "clean.jsonl"], thresholds=QUIET)
    assert report.findings == [] and report.exit_code == 0
    assert report.files[0].examples == 6 and report.files[0].lengths["unit"] == "words"
    assert "OK (exit 0)" in report.render_text()


def test_small_dataset_warns_but_exits_0():
    report = lint_files([FIX / "clean.jsonl"])
    assert [f.code for f in report.findings] == ["too-few-examples"]
    assert report.findings[0].level == "warning" and report.exit_code == 0
    assert lint_files([FIX / "clean.jsonl"], thresholds=LintThresholds(min_examples=5)).findings == []


@pytest.mark.parametrize("code, line", [
    ("bad-json", 2),
    ("missing-messages", 3),
    ("bad-message", 4),
    ("empty-assistant", 5),
    ("repeated-role", 6),
    ("assistant-first", 7),
    ("system-not-first", 8),
    ("missing-answer", 9),
    ("missing-user", 10),
])
def test_structural_errors_name_their_line(code, line):
    report = lint_files([FIX / "structure.jsonl"], thresholds=QUIET)
    finding = only(report, code)
    assert finding.level == "error" and finding.lines == [line] and finding.file.endswith("structure.jsonl")
    assert f"line {line}" in report.render_text()
    assert report.exit_code == 1


def test_structure_file_counts_rows_and_loaded_examples():
    report = lint_files([FIX / "structure.jsonl"], thresholds=QUIET)
    summary = report.files[0]
    assert summary.rows == 11  # the blank line is not a row
    # bad JSON, no messages, bad role and no user turn cannot be loaded; the rest are linted further
    assert summary.examples == 7
    assert {f.code for f in report.findings} == {
        "bad-json", "missing-messages", "bad-message", "empty-assistant", "repeated-role", "assistant-first",
        "system-not-first", "missing-answer", "missing-user"}


def test_normalisation_ignores_case_whitespace_and_punctuation():
    assert normalize("  What is the BOILING point, of water?! ") == normalize("what is the boiling point of water")
    assert normalize("Don't") == normalize("dont") and normalize("a,b") == "a b"
    assert normalize("Ｃａｆé") == normalize("café")  # NFKC + casefold


def test_exact_duplicates_after_normalising():
    report = lint_files([FIX / "duplicates.jsonl"], thresholds=QUIET)
    finding = only(report, "exact-duplicate")
    assert finding.details["groups"] == [[1, 2], [3, 7]]
    assert finding.count == 2 and finding.total == 8 and finding.level == "error"  # 25% > 2%


def test_near_duplicate_one_word_changed_in_a_long_text_is_found_by_minhash():
    report = lint_files([FIX / "duplicates.jsonl"], thresholds=QUIET)
    finding = only(report, "near-duplicate")
    assert finding.count == 1 and finding.lines == [6]
    later, earlier, similarity = finding.details["pairs"][0]
    assert (later, earlier) == (6, 4) and 0.8 <= similarity < 1
    assert "line 6 ≈ line 4" in report.render_text()


def test_duplicate_levels_follow_the_rate_thresholds():
    lenient = LintThresholds(min_examples=0, max_duplicate_rate=0.5, max_near_duplicate_rate=0.5)
    report = lint_files([FIX / "duplicates.jsonl"], thresholds=lenient)
    assert {f.level for f in report.findings} == {"warning"} and report.exit_code == 0


def test_short_texts_one_word_apart_are_not_near_duplicates(tmp_path):
    rows = chat_rows(30)  # "What is i + i?" -> "2i": all distinct, all similar in shape
    report = lint_files([write_jsonl(tmp_path / "d.jsonl", rows)], thresholds=QUIET)
    assert report.findings == []


def test_contradiction_same_input_different_answers():
    report = lint_files([FIX / "contradictions.jsonl"], thresholds=QUIET)
    finding = only(report, "contradiction")
    assert finding.details["groups"] == [[1, 2]] and finding.level == "error"
    assert "'Yes.' vs 'No, 17 is not prime.'" in report.render_text()


def test_near_contradiction_is_flagged_unless_the_input_difference_explains_it():
    report = lint_files([FIX / "contradictions.jsonl"], thresholds=QUIET)
    finding = only(report, "near-contradiction")
    # line 5 is line 4's ticket with a different closing phrase and another answer; line 6 changes the
    # customer's name and keeps the answer, so it is no contradiction
    assert [pair[:2] for pair in finding.details["pairs"]] == [[4, 5]]
    assert finding.level == "warning"


def test_contradiction_levels_are_configurable():
    thresholds = LintThresholds(min_examples=0, max_duplicate_rate=1, max_near_duplicate_rate=1,
                                contradictions="warning", near_contradictions="off")
    report = lint_files([FIX / "contradictions.jsonl"], thresholds=thresholds)
    assert only(report, "contradiction").level == "warning" and not report.by_code("near-contradiction")
    assert report.exit_code == 0


def test_leakage_exact_and_near_between_train_and_holdout():
    report = lint_files([FIX / "train.jsonl"], holdout=[FIX / "holdout.jsonl"], thresholds=QUIET)
    exact, near = only(report, "leakage"), only(report, "near-leakage")
    assert exact.file.endswith("holdout.jsonl") and exact.lines == [2] and exact.level == "error"
    assert exact.details["pairs"][0][1].endswith("train.jsonl:1")
    assert near.lines == [3] and near.details["pairs"][0][1].endswith("train.jsonl:2")
    assert exact.count == near.count == 1 and exact.total == 4
    assert report.exit_code == 1
    relaxed = lint_files([FIX / "train.jsonl"], holdout=[FIX / "holdout.jsonl"],
                         thresholds=LintThresholds(min_examples=0, leakage="warning"))
    assert relaxed.exit_code == 0 and len(relaxed.by_code("leakage")) == 1


def test_train_option_names_the_training_side(tmp_path):
    report = lint_files([], train=[FIX / "train.jsonl"], holdout=[FIX / "holdout.jsonl"], thresholds=QUIET)
    assert only(report, "leakage").lines == [2]


def test_suite_split_leakage_format_checks_and_fewshot(tickets):
    report = lint_files([], suite=tickets, fewshot=[6], thresholds=QUIET)
    codes = {f.code for f in report.findings}
    assert codes == {"exact-duplicate", "leakage", "fewshot-leakage", "format-failures"}
    # t01 (line 1) is in the holdout split, t07 (line 7, the same text with '!') in the train split
    leak = only(report, "leakage")
    assert leak.lines == [1] and "line 1 = line 7" in leak.examples[0] and "holdout split" in leak.message
    assert only(report, "fewshot-leakage").lines == [1]
    formats = only(report, "format-failures")
    assert formats.lines == [4, 8] and formats.count == 2 and formats.total == 10
    assert "json_schema" in formats.message and "not of type 'integer'" in formats.examples[1]
    assert report.files[0].format == "fields"


def test_suite_format_checks_apply_to_a_training_file_too(tickets):
    report = lint_files([FIX / "train.jsonl"], suite=tickets, thresholds=QUIET)
    failing = [f for f in report.by_code("format-failures") if f.file.endswith("train.jsonl")]
    assert failing and failing[0].count == 4
    # its 12-word answer cannot fit the suite's generation.max_tokens (4)
    assert [f.lines for f in report.by_code("answer-too-long")] == [[2]]


def test_holdout_overlap_for_the_runner(tickets):
    warnings = holdout_overlap(tickets)
    assert len(warnings) == 1 and "suite 'tickets'" in warnings[0] and "train split" in warnings[0]
    assert len(holdout_overlap(tickets, fewshot=[6])) == 2


def test_holdout_overlap_is_empty_for_a_clean_suite(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", chat_rows(40))
    path = write(tmp_path / "s.yaml", """
        suite: arith
        data: {path: data.jsonl, holdout: 0.5, seed: 3}
        variants: [base]
        scorers:
          accuracy: exact_match
    """)
    assert holdout_overlap(load_suite(path), fewshot=[3]) == []


def test_suite_data_train_file_leaking_into_the_evaluation(tmp_path):
    rows = chat_rows(10)
    write_jsonl(tmp_path / "eval.jsonl", rows)
    other = [{"messages": [{"role": "user", "content": f"Spell the number {i} in words."},
                           {"role": "assistant", "content": f"number {i}"}]} for i in range(5)]
    write_jsonl(tmp_path / "train.jsonl", other + [rows[2]])
    path = write(tmp_path / "s.yaml", """
        suite: arith
        data: {path: eval.jsonl, train: train.jsonl, seed: 3}
        variants: [base]
        scorers:
          accuracy: exact_match
    """)
    report = lint_files([], suite=load_suite(path), thresholds=QUIET)
    leak = only(report, "leakage")
    assert leak.lines == [3] and "data.train" in leak.message
    assert "train.jsonl:6" in leak.examples[0]


def test_field_mapped_row_errors_and_csv_without_fields(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", [{"q": f"question {i}?", "a": str(i)} for i in range(5)] + [{"a": "x"}])
    path = write(tmp_path / "s.yaml", """
        suite: qa
        data: {path: data.jsonl, fields: {input: q, reference: a}}
        variants: [base]
        scorers:
          accuracy: exact_match
    """)
    report = lint_files([], suite=load_suite(path), thresholds=QUIET)
    bad = only(report, "bad-row")
    assert bad.lines == [6] and "no field 'q'" in bad.examples[0]
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("q,a\nhi,there\n")
    assert only(lint_files([csv_path], thresholds=QUIET), "unsupported-format").level == "error"


def test_json_answers_mostly_json_without_a_suite(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Ticket number {i} about item {i * 7}"},
                          {"role": "assistant", "content": json.dumps({"id": i})}]} for i in range(9)]
    rows.append({"messages": [{"role": "user", "content": "Ticket ten"}, {"role": "assistant", "content": "id: 10"}]})
    report = lint_files([write_jsonl(tmp_path / "d.jsonl", rows)], thresholds=QUIET)
    finding = only(report, "format-inconsistent")
    assert finding.lines == [10] and finding.level == "warning"


def test_json_output_is_machine_readable():
    report = lint_files([FIX / "train.jsonl"], holdout=[FIX / "holdout.jsonl"])
    data = json.loads(report.to_json())
    assert data["exit_code"] == 1 and data["counts"]["error"] == 2
    assert {f["code"] for f in data["findings"]} >= {"leakage", "near-leakage", "too-few-examples"}
    leak = next(f for f in data["findings"] if f["code"] == "leakage")
    assert leak["lines"] == [2] and leak["rate"] == 0.25 and leak["level"] == "error"
    assert data["files"][0]["lengths"]["prompt"]["max_line"] == 2


def test_thresholds_parse_from_the_command_line():
    t = LintThresholds.parse(["contradictions=warning", "max-duplicate-rate=0.1", "min_examples=50"])
    assert t.contradictions == "warning" and t.max_duplicate_rate == 0.1 and t.min_examples == 50
    with pytest.raises(ConfigError, match="unknown lint threshold 'max_dup'"):
        LintThresholds.parse(["max_dup=0.1"])
    with pytest.raises(ConfigError, match="must be one of"):
        LintThresholds(leakage="fatal")
    with pytest.raises(ConfigError, match="not key=value"):
        LintThresholds.parse(["leakage"])


def test_unknown_tokenizer_falls_back_to_words():
    report = lint_files([FIX / "clean.jsonl"], thresholds=QUIET, tokenizer="no-such-model")
    assert [f.code for f in report.findings] == ["tokenizer-unavailable"]
    assert report.length_unit == "words" and report.exit_code == 0


def test_missing_file_is_a_data_error(tmp_path):
    from harness.errors import DataError

    with pytest.raises(DataError, match="not found"):
        lint_files([tmp_path / "nope.jsonl"])


def test_a_shared_template_is_boilerplate_not_similarity(tmp_path):
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    instruction = " ".join(rng.choices(vocab, k=60))  # a long instruction every example repeats

    def example(text, answer=None):
        return {"messages": [{"role": "user", "content": f"{instruction} Input: {text}"},
                             {"role": "assistant", "content": answer or rng.choice(["positive", "negative"])}]}

    rows = [example(" ".join(rng.choices(vocab, k=8))) for _ in range(200)]
    long_input = rng.choices(vocab, k=40)
    rows.append(example(" ".join(long_input), "positive"))
    long_input[20] = "changed"
    rows.append(example(" ".join(long_input), "positive"))
    report = lint_files([write_jsonl(tmp_path / "d.jsonl", rows)], thresholds=QUIET)
    # only the pair whose *input* is near-identical; with the template counted, every pair would be
    finding = only(report, "near-duplicate")
    assert finding.count == 1 and finding.lines == [202]
    assert not report.by_code("near-contradiction")


def test_lsh_buckets_are_windowed_not_quadratic():
    m = 3000
    identical = np.zeros((NUM_PERM, m), dtype=np.uint32)  # every column in every bucket
    lo, hi, estimate = candidate_pairs(identical, 0.8)
    assert len(lo) <= m * BUCKET_WINDOW < m * (m - 1) // 2 and np.all(estimate == 1)
    assert np.all(lo < hi)


def test_importing_lint_loads_no_heavy_library():
    code = "import sys, harness.lint; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_the_runner_can_import_leakage_without_a_cycle():
    """engine/runner.py calls holdout_overlap before a run: importing it must load no engine, suite-loading
    or lm-eval module (runner -> lint -> suite -> lmeval -> runner was a cycle)."""
    code = ("import sys, harness.lint.leakage; print(sorted(m for m in sys.modules if m.startswith("
            "('harness.engine', 'harness.config.suite', 'harness.sources.lmeval', 'harness.backends', 'harness.scorers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.model
def test_token_lengths_with_the_default_model_tokenizer():
    report = lint_files([FIX / "clean.jsonl"], thresholds=QUIET, tokenizer="smollm2-135m-instruct")
    assert report.findings == [] and report.length_unit == "tokens (smollm2-135m-instruct)"
    lengths = report.files[0].lengths
    assert lengths["unit"] == "tokens" and lengths["answer"]["max"] >= 8


def test_demo_ticket_data_has_no_leakage_and_an_injected_holdout_ticket_is_caught(tmp_path):
    from tests.helpers import REPO

    tickets = REPO / "suites" / "data" / "tickets"
    clean = lint_files([], train=[tickets / "train.jsonl"], holdout=[tickets / "holdout.jsonl"])
    assert not [f for f in clean.findings if "leakage" in f.code], clean.render_text()
    leaked = tmp_path / "train.jsonl"
    holdout_line = (tickets / "holdout.jsonl").read_text().splitlines()[17]
    leaked.write_text((tickets / "train.jsonl").read_text() + holdout_line + "\n")
    report = lint_files([], train=[leaked], holdout=[tickets / "holdout.jsonl"])
    found = [f for f in report.findings if f.code == "leakage"]
    assert found and report.exit_code == 1
    assert found[0].lines == [18]  # the holdout line, paired with the injected training line
    assert "train.jsonl:601" in report.render_text() or "train.jsonl:601" in json.dumps(report.to_dict())
