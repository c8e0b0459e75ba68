"""Accuracy scorers: token_f1, numeric, json_fields(_fraction), choice_letter (and the existing ones)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from scorer_helpers import EXTERNAL, build, make_case, out, run

from harness.scorers import REGISTRY, OptionError
from harness.scorers.accuracy import find_numbers, parse_choice_letter, parse_number, token_f1_score

LONG = ("the quick brown fox 12 jumps " * 4000)[:100_000]


def test_registration_and_binary_flags():
    assert REGISTRY["token_f1"].binary is False
    assert REGISTRY["json_fields_fraction"].binary is False
    for name in ("exact_match", "contains", "choice", "numeric", "json_fields", "choice_letter"):
        assert REGISTRY[name].binary is True, name


# --------------------------------------------------------------------------- existing scorers still behave


def test_existing_scorers_unchanged():
    assert run("exact_match", " Paris ", reference="paris").value == 1.0
    assert run("contains", "It is Paris.", reference="paris").value == 1.0
    fn = build("choice")
    case = make_case(choices=("a", "b"), answer=1)
    assert fn(case, out(logprobs=[-2.0, -1.0])).value == 1.0


# --------------------------------------------------------------------------- token_f1


def test_token_f1_values():
    assert token_f1_score("The Eiffel Tower!", "eiffel tower")[0] == 1.0
    value, details = token_f1_score("Eiffel tower in Paris", "The Eiffel Tower")
    assert value == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert details == {"precision": 0.5, "recall": 1.0}
    assert token_f1_score("", "")[0] == 1.0
    assert token_f1_score("", "x")[0] == 0.0
    assert token_f1_score("banana", "apple")[0] == 0.0
    assert token_f1_score("Zoë's café", "zoë s CAFÉ")[0] == 1.0


def test_token_f1_scorer():
    result = run("token_f1", "It was in 1889.", reference="1889")
    assert 0 < result.value < 1 and result.reason.startswith("token F1")
    assert run("token_f1", "1889", reference="1889").value == 1.0
    assert run("token_f1", None, reference="1889").value == 0.0
    assert run("token_f1", "x", reference=None).reason == "case has no reference"
    start = time.perf_counter()
    assert 0 < run("token_f1", LONG, reference="quick fox").value < 0.01
    assert time.perf_counter() - start < 1.0
    with pytest.raises(OptionError):
        build("token_f1", {"ignore_case": True})


# --------------------------------------------------------------------------- numeric


@pytest.mark.parametrize(
    "text, values",
    [
        ("Janet makes $18 a day.", ["18"]),
        ("It costs $1,299.50 or -$5 or $-7 or −3.", ["1299.50", "-5", "-7", "-3"]),
        ("16-3-4=9", ["16", "3", "4", "9"]),
        ("1,2,3", ["1", "2", "3"]),
        ("half is 0.5, or .5, or 1/2", ["0.5", "0.5", "0.5"]),
        ("no numbers here", []),
    ],
)
def test_find_numbers(text, values):
    assert [v for _, v in find_numbers(text)] == [Decimal(v) for v in values]


def test_parse_number():
    assert parse_number("$1,299.00") == Decimal(1299)
    assert parse_number(" 12.50 ") == Decimal("12.5")
    assert parse_number("-3") == -3
    assert parse_number("3 apples") is None


def test_numeric_gsm8k_reference():
    reference = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    assert run("numeric", "She makes $18 every day.", reference=reference).value == 1.0
    assert run("numeric", "9 eggs * $2 = $18.00", reference=reference).value == 1.0
    wrong = run("numeric", "She makes $9.", reference=reference)
    assert wrong.value == 0.0 and wrong.details["expected"] == "18" and wrong.details["predicted"] == "$9"
    # a GSM8K-style answer line in the output wins over numbers after it
    assert run("numeric", "Work...\n#### 18\nI hope this helps with your 2 questions.", reference=reference).value == 1.0


def test_numeric_formats():
    assert run("numeric", "The total is 1,000.", reference="#### 1000").value == 1.0
    assert run("numeric", "It dropped to -4.5 degrees", reference="-4.50").value == 1.0
    assert run("numeric", "Three quarters: 3/4", reference="0.75").value == 1.0
    assert run("numeric", "3/4", reference="0.75", options={"fractions": False}).value == 0.0
    assert run("numeric", "about 100.4", reference="100", options={"tolerance": 0.5}).value == 1.0
    assert run("numeric", "about 101", reference="100", options={"relative_tolerance": 0.02}).value == 1.0
    assert run("numeric", "about 103", reference="100", options={"relative_tolerance": 0.02}).value == 0.0
    assert run("numeric", "١٢", reference="12").value == 1.0  # Arabic-Indic digits
    assert run("numeric", "9" * 500, reference="9" * 500).value == 1.0  # no float overflow


def test_numeric_edge_cases():
    assert run("numeric", "", reference="#### 5").reason == "no number in output"
    assert run("numeric", None, reference="#### 5").value == 0.0
    assert run("numeric", "5", reference="five").reason == "reference has no number"
    assert run("numeric", "5", reference=None).value == 0.0
    start = time.perf_counter()
    result = run("numeric", LONG, reference="#### 12")
    assert time.perf_counter() - start < 1.0
    assert result.value == 1.0  # the last number of the long text is 12


def test_numeric_options_validated():
    for options, key in (({"tolerance": -1}, "tolerance"), ({"relative_tolerance": "a"}, "relative_tolerance"),
                         ({"tol": 1}, "tol"), ({"tolerance": float("nan")}, "tolerance")):
        with pytest.raises(OptionError) as exc:
            build("numeric", options)
        assert exc.value.key == key


def test_numeric_on_real_gsm8k_references():
    path = EXTERNAL / "gsm8k_test.jsonl"
    fn = build("numeric")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")][:300]
    for row in rows:
        final = row["answer"].rsplit("####", 1)[1].strip()
        case = make_case(row["question"], reference=row["answer"])
        # the reference's own reasoning scores as correct, and so does "The answer is <final>."
        assert fn(case, out(row["answer"])).value == 1.0, row["answer"]
        assert fn(case, out(f"The answer is {final}.")).value == 1.0, final
        assert fn(case, out(f"The answer is {final}1.")).value == 0.0, final


# --------------------------------------------------------------------------- json_fields

REF = json.dumps({"name": "Ann Lee", "email": "ann@x.com", "amount": 12.5, "phone": None})


def test_json_fields_all_equal_after_normalisation():
    text = 'Sure:\n```json\n{"name": "  ann   LEE ", "email": "ANN@x.com", "amount": "12.50"}\n```'
    result = run("json_fields", text, reference=REF)
    assert result.value == 1.0, result
    assert all(f["equal"] for f in result.details["fields"].values())
    assert set(result.details["fields"]) == {"name", "email", "amount", "phone"}


def test_json_fields_one_wrong_and_fraction():
    text = '{"name": "Ann Lee", "email": "bob@x.com", "amount": 12.5, "phone": null}'
    binary = run("json_fields", text, reference=REF)
    assert binary.value == 0.0 and binary.reason == "fields differ: email"
    assert binary.details["fields"]["email"] == {"equal": False, "expected": "ann@x.com", "got": "bob@x.com"}
    fraction = run("json_fields_fraction", text, reference=REF)
    assert fraction.value == pytest.approx(3 / 4)


def test_json_fields_null_vs_missing():
    # reference null: missing or null both fine; an invented value is not
    assert run("json_fields", '{"phone": null}', {"fields": ["phone"]}, reference=REF).value == 1.0
    assert run("json_fields", '{}', {"fields": ["phone"]}, reference=REF).value == 1.0
    assert run("json_fields", '{"phone": "555"}', {"fields": ["phone"]}, reference=REF).value == 0.0
    # reference not null: a missing key or a null never matches
    missing = run("json_fields", '{"name": "Ann Lee"}', ["name", "email"], reference=REF)
    assert missing.value == 0.0 and missing.details["fields"]["email"]["got"] == "<missing>"
    assert run("json_fields", '{"email": null}', ["email"], reference=REF).value == 0.0


def test_json_fields_numbers_types_and_nesting():
    ref = json.dumps({"n": 3, "flag": True, "items": ["a", "b"], "who": {"first": "Ann", "last": None}})
    assert run("json_fields", '{"n": 3.0, "flag": true, "items": ["A", "b"], "who": {"first": "ann"}}',
               reference=ref).value == 1.0
    assert run("json_fields", '{"n": 3, "flag": "true", "items": ["a", "b"], "who": {"first": "Ann"}}',
               reference=ref).value == 0.0  # a string is not a boolean
    assert run("json_fields", '{"items": ["b", "a"]}', ["items"], reference=ref).value == 0.0
    assert run("json_fields", '{"items": ["b", "a"]}', {"fields": ["items"], "ignore_order": True},
               reference=ref).value == 1.0
    assert run("json_fields", '{"who": {"first": "Ann"}}', ["who.first"], reference=ref).value == 1.0
    assert run("json_fields", '{"who": {"first": "Ann", "last": "Lee"}}', ["who"], reference=ref).value == 0.0
    assert run("json_fields", '{"name": "Zoë"}', reference='{"name": "ZOË"}').value == 1.0
    assert run("json_fields", '{"name": "Zoë"}', {"ignore_case": False}, reference='{"name": "ZOË"}').value == 0.0


def test_json_fields_bad_outputs():
    for text in ("", None, "no json", "[1, 2]", LONG):
        result = run("json_fields", text, reference=REF)
        assert result.value == 0.0
        assert not any(f["equal"] for f in result.details["fields"].values())
        json.dumps(result.details)
    assert run("json_fields", "{}", reference="not json").reason == "reference is not a JSON object"
    assert run("json_fields_fraction", '{"a": 1}', reference="{}").value == 1.0


def test_json_fields_options_validated():
    with pytest.raises(OptionError, match="json_fields_fraction") as exc:
        build("json_fields", {"mode": "fraction"})
    assert exc.value.key == "mode"
    with pytest.raises(OptionError) as exc:
        build("json_fields", {"mode": "most"})
    assert exc.value.key == "mode"
    with pytest.raises(OptionError) as exc:
        build("json_fields", {"fields": []})
    assert exc.value.key == "fields"
    with pytest.raises(OptionError) as exc:
        build("json_fields", {"fields": "name"})
    assert exc.value.key == "fields"
    build("json_fields_fraction", {"mode": "fraction", "fields": ["a"]})


# --------------------------------------------------------------------------- choice_letter


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (B).", "B"),
        ("B.", "B"),
        ("b) because it is larger", "B"),
        ("Answer: c", "C"),
        ("**D**", "D"),
        ("I think B is correct.", "B"),
        ("Option C is right", "C"),
        ("After thinking, the correct answer is A.", "A"),
        ("The answer is not obvious. Looking at (C) ... the answer is D", "D"),
        ("A dog is an animal.", None),
        ("(A), or maybe (B)", "A"),  # an output that opens with a letter picks it
        ("Either (A) or maybe (B)", None),
        ("Maybe (A), maybe (B)", None),
        ("e.g. the sky", None),
        ("", None),
        ("The answer is (E)", None),  # out of range for 4 choices
        ("Ответ: (B)", "B"),
    ],
)
def test_parse_choice_letter(text, letter):
    assert parse_choice_letter(text, 4) == letter


def test_choice_letter_scorer():
    case = make_case("Which?", choices=("red", "green", "blue"), answer=1)
    fn = build("choice_letter")
    assert fn(case, out("The answer is (B)")).value == 1.0
    wrong = fn(case, out("A."))
    assert wrong.value == 0.0 and wrong.reason == "picked A, answer B"
    assert fn(case, out("")).reason == "no option letter found"
    assert fn(case, out(None)).value == 0.0
    assert fn(case, out("D")).value == 0.0  # only 3 choices
    # no choices: the reference letter is the answer
    assert run("choice_letter", "answer: (c)", reference="C").value == 1.0
    assert run("choice_letter", "C", reference="Paris").reason == "case has no answer"
    start = time.perf_counter()
    assert fn(case, out(LONG + " The answer is B.")).value == 1.0
    assert time.perf_counter() - start < 1.0
    with pytest.raises(OptionError) as exc:
        build("choice_letter", {"num_choices": 40})
    assert exc.value.key == "num_choices"
