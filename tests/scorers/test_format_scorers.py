"""Format scorers: json, json_schema, regex, phrases, length, start/end, instructions."""

from __future__ import annotations

import json
import math
import time

import pytest
from scorer_helpers import FIXTURES, build, make_case, out, run

from harness.scorers import REGISTRY, OptionError
from harness.scorers.format import extract_json

LONG = ("lorem ipsum dolor sit amet, " * 4000)[:100_000]

FORMAT_SCORERS = ["json", "json_schema", "regex", "required_phrases", "forbidden_phrases", "max_words",
                  "max_chars", "starts_with", "ends_with", "instructions"]


def test_all_format_scorers_are_registered_and_binary():
    for name in FORMAT_SCORERS:
        assert name in REGISTRY, name
        assert REGISTRY[name].binary, name
        assert REGISTRY[name].doc, name


# --------------------------------------------------------------------------- extract_json / json


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('  {"a": 1}\n', {"a": 1}),
        ('Here you go:\n```json\n{"a": 1}\n```\nAnything else?', {"a": 1}),
        ('Sure! {"a": [1, 2]} Hope that helps.', {"a": [1, 2]}),
        ('Note [see below]: {"a": 1}', {"a": 1}),  # a non-JSON bracket before the JSON
        ('{"name": "Zoë ✓"}', {"name": "Zoë ✓"}),
    ],
)
def test_extract_json_finds_json_in_prose(text, expected):
    value, error = extract_json(text)
    assert error is None and value == expected


def test_extract_json_strict_rejects_surrounding_prose():
    assert extract_json('Sure: {"a": 1}', strict=True)[0] is None
    assert extract_json('{"a": 1}', strict=True) == ({"a": 1}, None)


def test_json_scorer():
    assert run("json", '{"a": 1}').value == 1.0
    assert run("json", "no json here").value == 0.0
    assert run("json", "").value == 0.0
    assert run("json", None).value == 0.0
    assert run("json", 'prefix {"a": 1}', {"strict": True}).value == 0.0


# --------------------------------------------------------------------------- json_schema


def test_json_schema_valid_and_invalid():
    fn = build("json_schema", {"schema": "schemas/ticket.json"})
    good = '{"name": "Ann", "email": "ann@example.com", "amount": 12.5, "tags": ["refund"]}'
    assert fn(make_case(), out(good)).value == 1.0
    assert fn(make_case(), out("Here it is:\n```json\n" + good + "\n```")).value == 1.0
    bad = fn(make_case(), out('{"name": "Ann", "email": "ann@example.com", "amount": -1}'))
    assert bad.value == 0.0
    assert "minimum" in bad.reason or "less than" in bad.reason
    assert "$.amount" in bad.reason
    json.dumps(bad.details)
    missing = fn(make_case(), out('{"name": "Ann"}'))
    assert missing.value == 0.0 and "required" in missing.reason
    nested = fn(make_case(), out('{"name": "A", "email": "a@b.co", "amount": 1, "tags": ["nope"]}'))
    assert nested.value == 0.0 and "$.tags[0]" in nested.reason


def test_json_schema_follows_local_refs():
    fn = build("json_schema", "schemas/ticket.json")  # the shorthand
    ok = '{"name": "A", "email": "a@b.co", "amount": 1, "address": {"city": "Oslo"}}'
    bad = '{"name": "A", "email": "a@b.co", "amount": 1, "address": {"zip": "0150"}}'
    assert fn(make_case(), out(ok)).value == 1.0
    result = fn(make_case(), out(bad))
    assert result.value == 0.0 and "city" in result.reason and "$.address" in result.reason


def test_json_schema_not_json_and_empty():
    fn = build("json_schema", "schemas/ticket.json")
    for text in ("", None, "I cannot do that.", "{broken"):
        result = fn(make_case(), out(text))
        assert result.value == 0.0 and result.reason.startswith("not JSON")
        assert result.details == {"parsed": False}


def test_json_schema_formats_are_opt_in():
    loose = build("json_schema", {"schema": "schemas/ticket.json"})
    checked = build("json_schema", {"schema": "schemas/ticket.json", "check_formats": True})
    text = '{"name": "A", "email": "not-an-email", "amount": 1}'
    assert loose(make_case(), out(text)).value == 1.0
    assert checked(make_case(), out(text)).value == 0.0


def test_json_schema_bad_schema_files_fail_at_build(tmp_path):
    (tmp_path / "bad.json").write_text('{"type": "objekt"}')
    (tmp_path / "broken.json").write_text('{"type": ')
    (tmp_path / "dangling.json").write_text('{"properties": {"a": {"$ref": "missing.json"}}}')
    (tmp_path / "remote.json").write_text('{"properties": {"a": {"$ref": "https://example.com/s.json"}}}')
    with pytest.raises(OptionError, match="not a valid JSON Schema") as exc:
        build("json_schema", {"schema": "bad.json"}, tmp_path)
    assert exc.value.key == "schema"
    with pytest.raises(OptionError, match="not valid JSON"):
        build("json_schema", {"schema": "broken.json"}, tmp_path)
    with pytest.raises(OptionError, match="file not found"):
        build("json_schema", {"schema": "nope.json"}, tmp_path)
    with pytest.raises(OptionError, match="cannot be resolved offline"):
        build("json_schema", {"schema": "dangling.json"}, tmp_path)
    with pytest.raises(OptionError, match="cannot be resolved offline"):
        build("json_schema", {"schema": "remote.json"}, tmp_path)
    with pytest.raises(OptionError, match="required"):
        build("json_schema", {"strict": True}, tmp_path)


def test_json_schema_draft_from_dollar_schema(tmp_path):
    # draft-04 style exclusiveMaximum (a boolean) is valid under draft 4 only
    (tmp_path / "d4.json").write_text(json.dumps({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object", "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": True}},
    }))
    fn = build("json_schema", {"schema": "d4.json"}, tmp_path)
    assert fn(make_case(), out('{"n": 4}')).value == 1.0
    assert fn(make_case(), out('{"n": 5}')).value == 0.0


def test_json_schema_long_output_is_fast():
    fn = build("json_schema", "schemas/ticket.json")
    big = json.dumps({"name": "x" * 99_000, "email": "a@b.co", "amount": 1})
    start = time.perf_counter()
    assert fn(make_case(), out(big)).value == 1.0
    assert fn(make_case(), out(LONG)).value == 0.0
    assert fn(make_case(), out("{" * 50_000)).value == 0.0
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------- regex


def test_regex():
    options = {"must_match": [r"^Answer: \d+$"], "must_not_match": ["(?i)as an ai"], "flags": "m"}
    assert run("regex", "Work...\nAnswer: 42", options).value == 1.0
    assert run("regex", "Answer: forty-two", options).value == 0.0
    result = run("regex", "As an AI, I think\nAnswer: 4", options)
    assert result.value == 0.0 and "forbidden" in result.reason
    assert result.details["failed"][0]["rule"] == "must_not_match"
    assert run("regex", "ANSWER", {"must_match": "answer", "flags": "i"}).value == 1.0
    assert run("regex", "", {"must_not_match": ["x"]}).value == 1.0
    assert run("regex", "", {"must_match": ["x"]}).value == 0.0
    assert run("regex", "naïve café", {"must_match": [r"\bcafé\b"]}).value == 1.0


def test_regex_bad_options():
    with pytest.raises(OptionError) as exc:
        build("regex", {"must_match": ["(unclosed"]})
    assert exc.value.key == "must_match" and "does not compile" in str(exc.value)
    with pytest.raises(OptionError) as exc:
        build("regex", {"must_not_match": ["ok", "[z-a]"]})
    assert exc.value.key == "must_not_match" and "pattern 1" in str(exc.value)
    with pytest.raises(OptionError) as exc:
        build("regex", {"must_match": ["x"], "flags": "iq"})
    assert exc.value.key == "flags"
    with pytest.raises(OptionError):
        build("regex", {})
    with pytest.raises(OptionError) as exc:
        build("regex", {"must_match": [1]})
    assert exc.value.key == "must_match"


def test_regex_long_output_is_fast():
    start = time.perf_counter()
    assert run("regex", LONG, {"must_match": ["amet"], "must_not_match": ["forbidden"]}).value == 1.0
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- phrases


def test_required_phrases():
    options = {"phrases": ["order number", "refund"]}
    assert run("required_phrases", "Your ORDER   number is 5; refund issued.", options).value == 1.0
    result = run("required_phrases", "Your order number is 5.", options)
    assert result.value == 0.0 and "'refund'" in result.reason and result.details["missing"] == ["refund"]
    assert run("required_phrases", "Refund", ["refund"]).value == 1.0  # list shorthand
    assert run("required_phrases", "Refund", {"phrases": ["refund"], "ignore_case": False}).value == 0.0
    assert run("required_phrases", "", ["x"]).value == 0.0
    assert run("required_phrases", "Straße und CAFÉ", ["STRASSE", "café"]).value == 1.0  # casefold


def test_forbidden_phrases():
    assert run("forbidden_phrases", "Here is the answer.", ["as an ai"]).value == 1.0
    result = run("forbidden_phrases", "As an  AI language model, ...", {"phrases": ["as an ai", "sorry"]})
    assert result.value == 0.0 and "'as an ai'" in result.reason and result.details["found"] == ["as an ai"]
    assert run("forbidden_phrases", "", ["x"]).value == 1.0


def test_phrase_options_validated():
    for bad in ({"phrases": []}, {"phrases": [""]}, {"phrases": [3]}, {}):
        with pytest.raises(OptionError) as exc:
            build("required_phrases", bad)
        assert exc.value.key == "phrases"
    with pytest.raises(OptionError) as exc:
        build("forbidden_phrases", {"phrases": ["x"], "ignore_case": "yes"})
    assert exc.value.key == "ignore_case"


# --------------------------------------------------------------------------- length


def test_max_words_and_chars():
    assert run("max_words", "one two three", 3).value == 1.0
    result = run("max_words", "one two three four", {"limit": 3})
    assert result.value == 0.0 and result.details["words"] == 4 and "4 words" in result.reason
    assert run("max_words", "", 0).value == 1.0
    assert run("max_chars", "  héllo ✓ \n", 7).value == 1.0  # code points, outer whitespace ignored
    assert run("max_chars", "héllo ✓!", 7).value == 0.0
    start = time.perf_counter()
    assert run("max_words", LONG, 10).value == 0.0
    assert time.perf_counter() - start < 1.0


def test_length_options_validated():
    for bad, key in ((-1, "limit"), ({"limit": "5"}, "limit"), ({"limit": True}, "limit"), ({}, "limit"),
                     ({"limit": 3, "max": 4}, "max")):
        with pytest.raises(OptionError) as exc:
            build("max_words", bad)
        assert exc.value.key == key
    with pytest.raises(OptionError):
        build("max_chars", 2.5)


# --------------------------------------------------------------------------- starts_with / ends_with


def test_starts_and_ends_with():
    assert run("starts_with", "\n Dear Ann,", "Dear").value == 1.0
    assert run("starts_with", "dear Ann,", "Dear").value == 0.0
    assert run("starts_with", "dear Ann,", {"text": "Dear", "ignore_case": True}).value == 1.0
    assert run("starts_with", " Dear", {"text": "Dear", "strip": False}).value == 0.0
    assert run("ends_with", "Bye. Best regards.\n", "regards.").value == 1.0
    result = run("ends_with", "Bye.", "regards.")
    assert result.value == 0.0 and "regards." in result.reason
    assert run("ends_with", "", "x").value == 0.0
    assert run("ends_with", "Merci beaucoup — Zoë", "Zoë").value == 1.0
    with pytest.raises(OptionError) as exc:
        build("starts_with", {"text": ""})
    assert exc.value.key == "text"
    with pytest.raises(OptionError) as exc:
        build("ends_with", {"txt": "x"})
    assert exc.value.key == "txt"


# --------------------------------------------------------------------------- instructions


def _ifeval_case(ids, kwargs, prompt="Write something."):
    return make_case(user=prompt, meta={"instruction_id_list": ids, "kwargs": kwargs})


def test_instructions_all_pass_and_one_fails():
    fn = build("instructions", {"mode": "strict"})
    case = _ifeval_case(["punctuation:no_comma", "length_constraints:number_words"],
                        [{}, {"relation": "less than", "num_words": 5}])
    result = fn(case, out("Short and sweet."))
    assert result.value == 1.0
    assert result.details["instructions"] == [{"id": "punctuation:no_comma", "pass": True},
                                              {"id": "length_constraints:number_words", "pass": True}]
    result = fn(case, out("Short, and sweet."))
    assert result.value == 0.0 and "punctuation:no_comma" in result.reason
    assert result.details["instructions"][0]["pass"] is False


def test_instructions_unsupported_is_null_not_guessed():
    fn = build("instructions")
    case = _ifeval_case(["language:response_language", "punctuation:no_comma"], [{"language": "de"}, {}])
    result = fn(case, out("Hallo Welt."))
    assert result.value == 1.0
    first = result.details["instructions"][0]
    assert first["pass"] is None and "language" in first["reason"]
    assert result.details["unchecked"] == 1
    json.dumps(result.details)


def test_instructions_nothing_checkable_scores_zero_and_is_flagged():
    fn = build("instructions")
    case = _ifeval_case(["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}])
    result = fn(case, out("One. Two."))
    assert result.value == 0.0 and not math.isnan(result.value)
    assert result.reason == "no instruction checkable offline"
    assert result.details["uncheckable"] is True and result.details["unchecked"] == 1


def test_instructions_malformed_arguments_and_missing_fields():
    fn = build("instructions")
    bad_args = _ifeval_case(["length_constraints:number_words"], [{"relation": "about", "num_words": 5}])
    result = fn(bad_args, out("hi"))
    assert result.value == 0.0 and result.details["instructions"][0]["pass"] is None
    assert "malformed" in result.details["instructions"][0]["reason"]
    no_meta = fn(make_case(), out("hi"))
    assert no_meta.value == 0.0 and no_meta.details["uncheckable"] is True
    mismatched = fn(_ifeval_case(["punctuation:no_comma", "detectable_format:title"], [{}]), out("hi"))
    assert mismatched.value == 0.0 and all(v["pass"] is None for v in mismatched.details["instructions"])


def test_instructions_loose_mode_and_empty_output():
    case = _ifeval_case(["startend:quotation"], [{}])
    text = 'Here is my answer:\n"Quoted answer."'
    assert build("instructions", {"mode": "strict"})(case, out(text)).value == 0.0
    assert build("instructions", {"mode": "loose"})(case, out(text)).value == 1.0
    assert build("instructions")(_ifeval_case(["punctuation:no_comma"], [{}]), out("")).value == 0.0


def test_instructions_long_output_is_fast():
    fn = build("instructions", {"mode": "loose"})
    case = _ifeval_case(["punctuation:no_comma", "change_case:english_lowercase",
                         "length_constraints:number_words", "detectable_format:number_highlighted_sections"],
                        [{}, {}, {"relation": "at least", "num_words": 300}, {"num_highlights": 2}])
    start = time.perf_counter()
    result = fn(case, out(LONG))
    assert time.perf_counter() - start < 3.0
    assert result.value == 0.0  # has commas


def test_instructions_mode_validated():
    with pytest.raises(OptionError) as exc:
        build("instructions", {"mode": "lenient"})
    assert exc.value.key == "mode"


def test_fixture_schema_is_where_the_tests_expect():
    assert (FIXTURES / "schemas" / "ticket.json").is_file()


def test_nan_and_infinity_are_not_json():
    assert extract_json('{"a": NaN}')[0] is None
    assert "NaN" in extract_json('{"a": NaN}')[1]
    assert run("json", '{"a": Infinity}').value == 0.0
    assert run("json", 'Result: {"a": -Infinity} then {"b": 1}').value == 1.0  # the next object is fine


def test_scorer_modules_import_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, harness.scorers; "
            "heavy = [m for m in ('torch', 'transformers', 'jsonschema', 'numpy', 'scipy') if m in sys.modules]; "
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
