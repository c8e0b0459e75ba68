"""The `judge` scorer: strict verdict parsing, and a judge variant from models.toml run by the runner
(scripted fake judge), with its prompt and raw verdict kept in the records."""

from __future__ import annotations

import re

import pytest

from harness.backends.fake import register_responder
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.records import load_run
from harness.engine.runner import RunOptions, run_suites
from harness.errors import ConfigError
from harness.scorers.judge import RUBRICS, parse_verdict
from tests.helpers import write

HALLU = RUBRICS["hallucination"]
CORRECT = RUBRICS["correctness"]


@pytest.mark.parametrize("reply, rubric, expected", [
    ("VERDICT: SUPPORTED", HALLU, "SUPPORTED"),
    ("verdict: unsupported", HALLU, "UNSUPPORTED"),
    ("The response says 5, the reference says 4.\nVERDICT: INCORRECT", CORRECT, "INCORRECT"),
    ("**Verdict:** CORRECT.", CORRECT, "CORRECT"),
    ("  VERDICT:SUPPORTED\n", HALLU, "SUPPORTED"),
    ("VERDICT: SUPPORTED\nVERDICT: SUPPORTED", HALLU, "SUPPORTED"),          # repeated, same label
    ("", HALLU, None),                                                     # empty
    ("SUPPORTED", HALLU, None),                                            # no verdict line
    ("VERDICT: SUPPORTED\nVERDICT: UNSUPPORTED", HALLU, None),             # contradictory
    ("VERDICT: MAYBE", HALLU, None),                                       # not a rubric label
    ("VERDICT: SUPPORTEDNESS", HALLU, None),                               # not the label, only a prefix
    ("VERDICT: CORRECT", HALLU, None),                                     # the other rubric's label
    ("I think it is supported. The verdict is clear: SUPPORTED", HALLU, None),  # prose, not a verdict line
    ("VERDICT: ÉCHEC", CORRECT, None),                                     # unicode, unknown
])
def test_verdicts_parse_strictly(reply, rubric, expected):
    assert parse_verdict(reply, rubric) == expected


def _judge_reply(request) -> str:
    """A scripted judge: SUPPORTED when the response repeats the reference, else UNSUPPORTED; garbage for 'blah'."""
    prompt = request.chat_messages[-1]["content"]
    reference = prompt.split("[Reference answer]\n", 1)[1].split("\n\n[Response]", 1)[0].strip()
    response = prompt.split("[Response]\n", 1)[1].split("\n\n", 1)[0].strip()
    good, bad = re.findall(r'"VERDICT: (\w+)"', prompt)  # the rubric's two labels, good first
    if response == "blah":
        return "I cannot tell."
    return "Reasoning first.\nVERDICT: " + (good if response == reference else bad)


register_responder("judge-script", _judge_reply)


@pytest.fixture
def judged(project):
    """The arith project with a judge variant and a suite that judges 'good' (right) and 'base' ('no idea')."""
    with (project / "models.toml").open("a") as handle:
        handle.write('\n[variants.judge]\nfake = {responder = "judge-script"}\n'
                     '\n[variants.blah]\nfake = {default = "blah"}\n')
    write(project / "suites" / "arith.yaml", """
        suite: arith
        data: {path: data/arith.jsonl, holdout: 0.5, seed: 3}
        variants: [base, good, blah]
        generation: {max_tokens: 16}
        scorers:
          hallucination:
            judge: {model: judge}
          accuracy:
            judge: {model: judge, rubric: correctness, max_tokens: 32}
    """)
    return project


def _run(project):
    models = load_models(project / "models.toml")
    suite = load_suite(project / "suites" / "arith.yaml", known_variants=set(models.variants))
    return run_suites([suite], models, RunOptions(out_root=project / "runs", progress=False),
                      cache=GenerationCache(project / "cache.sqlite"), log=lambda s: None)


def test_judge_variant_scores_outputs_and_its_prompt_and_verdict_are_recorded(judged):
    result = _run(judged)
    run = load_run(result.run_dir)
    by_variant: dict[str, list[dict]] = {}
    for record in run.records:
        by_variant.setdefault(record["variant"], []).append(record)
    assert len(by_variant["good"]) == len(by_variant["base"]) == len(by_variant["blah"]) > 10
    for record in by_variant["good"]:
        assert record["scores"] == {"hallucination": 0.0, "accuracy": 1.0}
        details = record["checks"]["hallucination"]["judge"]["details"]
        assert details["judge"] == "judge" and details["verdict"] == "SUPPORTED"
        assert details["raw"] == "Reasoning first.\nVERDICT: SUPPORTED"
        prompt = details["prompt"][-1]["content"]
        assert record["reference"] in prompt and record["output"] in prompt
        assert record["prompt"][-1]["content"] in prompt  # the question
    for record in by_variant["base"]:
        assert record["output"] == "no idea"
        assert record["scores"] == {"hallucination": 1.0, "accuracy": 0.0}
        assert record["checks"]["accuracy"]["judge"]["reason"] == "judge: INCORRECT"
    for record in by_variant["blah"]:  # an unparseable verdict is the bad outcome, and says so
        check = record["checks"]["hallucination"]["judge"]
        assert check["score"] == 1.0 and "unparseable" in check["reason"]
        assert check["details"]["verdict"] is None and check["details"]["raw"] == "I cannot tell."
        assert record["scores"]["accuracy"] == 0.0
    # judge calls go through the cache: a second run generates nothing
    again = _run(judged)
    assert again.manifest["counts"]["generated"] == 0


def test_unparseable_error_mode_stops_the_variant(judged):
    text = (judged / "suites" / "arith.yaml").read_text()
    (judged / "suites" / "arith.yaml").write_text(text.replace("judge: {model: judge}",
                                                               "judge: {model: judge, unparseable: error}"))
    result = _run(judged)
    errors = {e["variant"]: e["error"] for e in result.errors}
    assert set(errors) == {"blah"} and "no parseable verdict" in errors["blah"]


def test_unknown_judge_variant_fails_at_load_with_file_key_and_line(judged):
    path = judged / "suites" / "arith.yaml"
    path.write_text(path.read_text().replace("judge: {model: judge}", "judge: {model: judg}"))
    with pytest.raises(ConfigError) as exc:
        load_suite(path, known_variants=set(load_models(judged / "models.toml").variants))
    assert exc.value.key == "scorers.hallucination.judge.model" and exc.value.line == 7
    assert "Did you mean 'judge'" in str(exc.value)
    # through the runner API without known_variants, it still fails before anything runs
    models = load_models(judged / "models.toml")
    with pytest.raises(ConfigError, match="judge variant 'judg'"):
        run_suites([load_suite(path)], models, RunOptions(out_root=judged / "runs", progress=False),
                   cache=GenerationCache(judged / "cache.sqlite"), log=lambda s: None)
    assert not (judged / "runs").exists()


@pytest.mark.parametrize("options, key, message", [
    ("{}", "scorers.hallucination.judge.model", "is required"),
    ("{model: j, rubric: vibes}", "scorers.hallucination.judge.rubric", "unknown rubric"),
    ("{model: j, max_tokens: 2}", "scorers.hallucination.judge.max_tokens", "at least 4"),
    ("{model: j, unparseable: guess}", "scorers.hallucination.judge.unparseable", "'fail'"),
    ("{model: j, temperature: 1}", "scorers.hallucination.judge.temperature", "unknown option"),
])
def test_bad_judge_options_fail_at_load(project, options, key, message):
    path = write(project / "suites" / "bad.yaml", f"""
        suite: bad
        data: {{path: data/arith.jsonl}}
        variants: [base]
        scorers:
          hallucination:
            judge: {options}
    """)
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert exc.value.key == key and message in str(exc.value)
