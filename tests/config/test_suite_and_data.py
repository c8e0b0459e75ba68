import json

import pytest

from harness.config.suite import load_suite
from harness.engine.prompts import build_messages
from harness.errors import ConfigError, DataError, GateError
from harness.sources.native import FieldMap, holdout_split, load_cases, select_fewshot
from tests.helpers import EXTERNAL_DATA, chat_rows, write, write_jsonl


def suite_file(tmp_path, body: str, rows=None):
    write_jsonl(tmp_path / "data.jsonl", rows if rows is not None else chat_rows(20))
    return write(tmp_path / "s.yaml", body)


BASE = """
suite: t
data: {path: data.jsonl, holdout: 0.25, seed: 1}
variants: [base, ft]
scorers:
  accuracy: exact_match
"""


def test_chat_jsonl_last_assistant_turn_is_the_reference(tmp_path):
    rows = [{"id": "a", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                                     {"role": "assistant", "content": "A"}]}]
    cases = load_cases(write_jsonl(tmp_path / "d.jsonl", rows))
    assert cases[0].id == "a" and cases[0].reference == "A"
    assert [m["role"] for m in cases[0].messages] == ["system", "user"]


@pytest.mark.parametrize("line, needle", [
    ("{not json", "line is not valid JSON"),
    ('{"text": "hi"}', "line has no 'messages' list"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', "needs a 'role'"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}', "no user turn"),
])
def test_bad_chat_lines_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(chat_rows(1)[0]) + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        load_cases(path)
    assert needle in str(err.value) and "d.jsonl:2" in str(err.value)


def test_field_mapped_multiple_choice_from_real_openbookqa():
    fields = FieldMap(id="id", input="question.stem", choices="question.choices.text",
                      choice_labels="question.choices.label", answer="answerKey")
    cases = load_cases(EXTERNAL_DATA / "openbookqa_test.jsonl", fields)
    assert len(cases) == 500
    first = cases[0]
    assert first.id == "8-343" and len(first.choices) == 4
    assert first.choices[first.answer] == "quit eating lunch out"  # answerKey B
    assert first.reference == "quit eating lunch out"


def test_csv_with_template_and_concatenated_choices(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('Q,Best,Wrong\n"Why, though?",Because,No; Never\n')
    fields = FieldMap(template="Question: {{ Q }}", choices=["Best", "Wrong"], answer="Best")
    (case,) = load_cases(path, fields)
    assert case.messages[-1]["content"] == "Question: Why, though?"
    assert case.choices == ("Because", "No", "Never") and case.answer == 0


def test_holdout_split_is_deterministic_disjoint_and_order_free():
    cases = load_cases_from_rows(chat_rows(200))
    train, held = holdout_split(cases, 0.2, seed=7)
    assert {c.id for c in train}.isdisjoint({c.id for c in held})
    assert len(train) + len(held) == 200 and 25 <= len(held) <= 55
    train2, held2 = holdout_split(list(reversed(cases)), 0.2, seed=7)
    assert {c.id for c in held2} == {c.id for c in held}
    _, held3 = holdout_split(cases, 0.2, seed=8)
    assert {c.id for c in held3} != {c.id for c in held}


def load_cases_from_rows(rows, tmp=None):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "d.jsonl"
    return load_cases(write_jsonl(path, rows))


def test_fewshot_prompt_has_k_train_examples_and_no_holdout_case(tmp_path):
    suite = load_suite(suite_file(tmp_path, BASE, chat_rows(40)))
    cases, pool = suite.splits
    examples = select_fewshot(pool, 5, suite.seed)
    assert len(examples) == 5 and select_fewshot(pool, 5, suite.seed) == examples
    held_inputs = {c.last_user for c in cases}
    for case in cases:
        messages = build_messages(case, examples=examples, system_prompt="Be terse.")
        assert messages[0] == {"role": "system", "content": "Be terse."}
        shots = [m for m in messages[1:-1] if m["role"] == "user"]
        assert len(shots) == 5 and not ({m["content"] for m in shots} & held_inputs)
        assert messages[-1] == {"role": "user", "content": case.last_user}
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert answers == [e.reference for e in examples]


def test_suite_errors_name_file_line_and_fix(tmp_path):
    cases = [
        (BASE + "gates: ['ft.accuracy >> base.accuracy']\n", GateError, "cannot parse gate"),
        (BASE + "gates: ['ft.accurcy > base.accuracy']\n", GateError, "compares different axes"),
        (BASE + "gates: ['ft.format >= 0.9']\n", GateError, "axis 'format'"),
        (BASE + "gates: ['other.accuracy >= 0.9']\n", GateError, "variant 'other'"),
        (BASE + "gates: ['ft.accuracy > base.accuracy + 0.02']\n", GateError, "margin on the strict side"),
        (BASE.replace("scorers:", "scorrers:"), ConfigError, "Did you mean 'scorers'?"),
        (BASE.replace("exact_match", "exact_mach"), ConfigError, "unknown scorer 'exact_mach'"),
        (BASE.replace("exact_match", "{exact_match: {ignore_caps: true}}"), ConfigError, "ignore_case"),
        (BASE.replace("data.jsonl", "missing.jsonl"), DataError, "data file not found"),
        (BASE.replace("holdout: 0.25", "holdout: 1.5"), ConfigError, "between 0 and 1"),
        (BASE + "oops: !!python/object:os.system ls\n", ConfigError, "not allowed"),
    ]
    for body, kind, needle in cases:
        path = suite_file(tmp_path, body)
        with pytest.raises(kind) as err:
            load_suite(path)
        assert needle in str(err.value), (body, str(err.value))
        assert "s.yaml:" in str(err.value), str(err.value)


def test_unknown_variant_is_named_with_its_line(tmp_path):
    path = suite_file(tmp_path, BASE)
    with pytest.raises(ConfigError) as err:
        load_suite(path, known_variants={"base", "fewshot"})
    assert "variant 'ft' is not declared" in str(err.value) and "s.yaml:3" in str(err.value)


def test_threshold_and_paired_gates_parse():
    from harness.analysis.gates import parse_gate

    g = parse_gate("json-lora.format >= 0.95")
    assert (g.variant, g.axis, g.op, g.threshold, g.kind) == ("json-lora", "format", ">=", 0.95, "threshold")
    g = parse_gate("ft.retention >= base.retention - 0.02")
    assert (g.other, g.margin, g.kind) == ("base", 0.02, "non-inferiority")
    g = parse_gate("ft.hallucination <= base.hallucination+0.02")
    assert (g.direction, g.margin, g.kind) == (-1, 0.02, "non-inferiority")
    assert parse_gate("ft.accuracy > fewshot.accuracy").kind == "superiority"
