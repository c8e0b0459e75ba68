"""IFEval end to end: suite -> recorded GPT-4 outputs -> runner -> `instructions` scorer -> records,
compared with the verdicts of IFEval's reference checker."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from scorer_helpers import FIXTURES

from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.runner import RunOptions, run_suites
from harness.scorers.ifeval import SUPPORTED

EXTERNAL = Path(__file__).resolve().parents[2] / "suites" / "data" / "external"
MIN_AGREEMENT = 0.99
NEEDED = ["ifeval_input_data.jsonl", "ifeval_gpt4_responses.jsonl", "ifeval_gpt4_verdicts_strict.jsonl",
          "ifeval_gpt4_verdicts_loose.jsonl"]


@pytest.fixture(scope="module")
def ifeval_run(tmp_path_factory):
    missing = [name for name in NEEDED if not (EXTERNAL / name).exists()]
    assert not missing, f"IFEval data missing from the repository: {missing}"
    tmp = tmp_path_factory.mktemp("ifeval")
    models_toml = tmp / "models.toml"
    outputs = (EXTERNAL / "ifeval_gpt4_responses.jsonl").as_posix()
    models_toml.write_text(f'[variants.gpt4]\noutputs = "{outputs}"\n', encoding="utf-8")
    models = load_models(models_toml)
    suites = [load_suite(FIXTURES / f"ifeval_{mode}.yaml", known_variants=set(models.variants))
              for mode in ("strict", "loose")]
    result = run_suites(suites, models, RunOptions(out_root=tmp / "runs", progress=False),
                        cache=GenerationCache(tmp / "c.sqlite"), log=lambda s: None)
    return result


def _verdicts(mode: str) -> dict[str, dict]:
    with (EXTERNAL / f"ifeval_gpt4_verdicts_{mode}.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {row["prompt"]: row for row in rows}


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_ifeval_suite_agrees_with_reference_checker(ifeval_run, mode):
    records = [r for r in ifeval_run.records if r["suite"] == f"ifeval-{mode}"]
    assert ifeval_run.manifest["status"] == "complete" and not ifeval_run.errors
    assert len(records) == 540 and not any(r.get("missing") for r in records)
    reference = _verdicts(mode)
    total = agree = 0
    per_id: collections.Counter[str] = collections.Counter()
    per_id_agree: collections.Counter[str] = collections.Counter()
    disagreements = []
    case_agree = case_total = 0
    for record in records:
        prompt = record["prompt"][-1]["content"]
        expected = reference[prompt]
        check = record["checks"]["format"]["instructions"]
        ours = check["details"]["instructions"]
        assert [v["id"] for v in ours] == expected["instruction_id_list"], record["case_id"]
        for verdict, ref in zip(ours, expected["follow_instruction_list"], strict=True):
            if verdict["id"] not in SUPPORTED:
                assert verdict["pass"] is None and verdict["reason"], verdict
                continue
            assert isinstance(verdict["pass"], bool), verdict
            total += 1
            per_id[verdict["id"]] += 1
            if verdict["pass"] == ref:
                agree += 1
                per_id_agree[verdict["id"]] += 1
            else:
                disagreements.append(f"key={record['case_id']} {verdict['id']}: ours={verdict['pass']} "
                                     f"reference={ref}")
        # the case score is "every checkable instruction passes"; compare where all were checkable
        if all(v["pass"] is not None for v in ours):
            case_total += 1
            case_agree += (check["score"] == 1.0) == expected["follow_all_instructions"]
        else:
            assert check["details"]["unchecked"] >= 1
        assert record["scores"]["format"] == check["score"]
    rate = agree / total
    report = (f"IFEval {mode} through the suite: {agree}/{total} checkable instructions agree ({rate:.2%}); "
              f"cases fully checkable: {case_agree}/{case_total} agree\n"
              + "\n".join(f"  {i}: {per_id_agree[i]}/{per_id[i]}" for i in sorted(per_id))
              + ("\ndisagreements:\n  " + "\n  ".join(disagreements) if disagreements else ""))
    print(report)
    assert total >= 700, report
    assert rate >= MIN_AGREEMENT, report
    assert case_agree / case_total >= 0.97, report


def test_ifeval_cases_without_checkable_instruction_are_flagged(ifeval_run):
    records = [r for r in ifeval_run.records if r["suite"] == "ifeval-strict"]
    flagged = [r for r in records if r["checks"]["format"]["instructions"]["details"].get("uncheckable")]
    assert flagged, "IFEval has prompts whose only instructions cannot be checked offline"
    for record in flagged:
        check = record["checks"]["format"]["instructions"]
        assert check["score"] == 0.0 and check["reason"] == "no instruction checkable offline"
        assert all(v["pass"] is None for v in check["details"]["instructions"])
    manifest_axes = ifeval_run.manifest["suites"]["ifeval-strict"]["axes"]
    assert manifest_axes == {"format": {"direction": "higher", "binary": True, "checks": ["instructions"]}}
