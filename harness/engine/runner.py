"""plan -> prompt -> cache -> backend -> score -> records.

Everything generated is committed to the cache batch by batch, so a killed run resumes where it
stopped. Backends are created lazily: a fully cached run loads no model at all.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import __version__
from harness.analysis.baselines import load_blessed, suite_data_key, variant_key
from harness.backends import (
    Adapter,
    Backend,
    EngineSpec,
    GenerateRequest,
    LoglikelihoodRequest,
    create_backend,
    freeze,
    implementation_info,
    resolve_backend_name,
)
from harness.backends.identity import model_fingerprint
from harness.config.files import sha256_dir, sha256_file, sha256_text
from harness.config.suite import Suite
from harness.config.variants import GenerationSettings, ModelsConfig, Variant
from harness.engine.cache import GenerationCache, exclusive, lock_dir, lock_name, request_key
from harness.engine.prompts import build_messages
from harness.engine.records import RunWriter, new_run_id
from harness.errors import AdapterError, ConfigError, DataError, HarnessError, did_you_mean
from harness.lint.checks import holdout_overlap
from harness.scorers import NEEDS_CHOICES, NEEDS_TEXT, Output, Score
from harness.scorers.judge import JudgeScorer
from harness.sources.native import Case, select_fewshot

NON_SEMANTIC_ENGINE_ARGS = {"batch_size", "gpu_memory_utilization", "max_num_seqs", "swap_space"}
# Fixed probes for the adapter guard: an adapter that changes none of these log-likelihoods
# did not load (or has zero weights) and must not be scored as a fine-tune.
ADAPTER_PROBES = (
    ("The capital of France is", " Paris."),
    ("Return the answer as JSON:", ' {"answer": 42}'),
    ("Question: What is 2 + 3?\nAnswer:", " 5"),
)
ADAPTER_PROBE_TOLERANCE = 1e-5
ADAPTER_BASE_DRIFT_TOLERANCE = 1e-2


@dataclass
class RunOptions:
    variants: list[str] | None = None
    """Only these variants (others in a suite are skipped)."""
    limit: int | None = None
    """At most this many evaluation cases per suite (smoke runs)."""
    out_root: Path = Path("reports/runs")
    run_id: str | None = None
    progress: bool = True
    baselines: Path | None = None
    """Blessed baselines directory; matching blessed variants are reused instead of regenerated."""
    command: str | None = None
    """The command that started this run (the manifest's `resume_command`: re-running it resumes)."""


@dataclass
class RunResult:
    run_dir: Path
    records: list[dict[str, Any]]
    manifest: dict[str, Any]
    errors: list[dict[str, str]] = field(default_factory=list)


class BackendPool:
    """One backend per engine spec for the whole run: base + adapters share one load."""

    def __init__(self, factory: Callable[[EngineSpec], Backend] = create_backend) -> None:
        self.factory = factory
        self.backends: dict[EngineSpec, Backend] = {}
        self.loads = 0

    def get(self, spec: EngineSpec) -> Backend:
        if spec not in self.backends:
            self.backends[spec] = self.factory(spec)
            self.loads += 1
        return self.backends[spec]

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()


def engine_spec(variant: Variant) -> EngineSpec:
    return EngineSpec(
        model=variant.model,
        backend=resolve_backend_name(variant.backend),
        quantization=variant.quantization,
        engine=freeze(variant.engine),
        trust_remote_code=variant.trust_remote_code,
        options=freeze(variant.options),
    )


def engine_identity(spec: EngineSpec) -> str:
    """What an engine loads: weights (full content), backend, quantisation and output-affecting engine args,
    without the implementation that computes with them (see `engine_fingerprint`)."""
    return sha256_text(json.dumps(_engine_payload(spec), sort_keys=True, default=str))


def engine_fingerprint(spec: EngineSpec) -> str:
    """Cache identity of an engine: `engine_identity` plus the implementation that computes its outputs
    (`implementation_info`: the harness's backend/encoding versions and library versions), so outputs
    of other weights or of other code are never served."""
    payload = {**_engine_payload(spec), "implementation": implementation_info(spec.backend)}
    return sha256_text(json.dumps(payload, sort_keys=True, default=str))


def _engine_payload(spec: EngineSpec) -> dict[str, Any]:
    semantic = {k: v for k, v in spec.engine_args.items() if k not in NON_SEMANTIC_ENGINE_ARGS}
    options = spec.option_args if spec.backend == "fake" else {}
    if spec.backend == "fake":
        weights = f"fake:{spec.model}"
    elif spec.backend == "openai":  # a served model id: identified by the id and where it is served
        from harness.backends.openai import model_identity

        weights = model_identity(spec.model, spec.option_args)
        semantic = {}  # engine arguments do not reach a remote server
    else:
        weights = model_fingerprint(spec.model)
    if spec.backend == "transformers":
        from harness.backends.transformers.backend import default_dtype, merges_adapters

        if "dtype" not in semantic:  # the dtype it will load in (hardware-dependent)
            semantic["dtype"] = default_dtype(semantic.get("device"))
        semantic["merge_adapters"] = merges_adapters(semantic, spec.quantization)  # adapters' rounding differs
    return {
        "weights": weights,
        "backend": spec.backend,
        "quantization": spec.quantization,
        "engine": semantic,
        "options": options,
    }


class _Progress:
    """A rich progress bar per variant on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        if not self.enabled or total == 0:
            yield lambda n: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=False) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task_id, n)


@dataclass
class RecordedOutputs:
    """A recorded-outputs file, read and checked whole: outputs by case id and by prompt."""

    path: Path
    by_id: dict[str, str]
    by_prompt: dict[str, str]
    id_lines: dict[str, int]
    prompt_lines: dict[str, int]


def load_recorded_outputs(path: Path) -> RecordedOutputs:
    """Read a recorded-outputs JSONL (one object per line: case_id or prompt, and output).

    Any line that is not such an object, and any case id or prompt given twice, is an error naming
    the file and line(s); nothing is kept silently.
    """
    from harness.config.files import read_text_utf8

    text = read_text_utf8(path, DataError, bom=True)
    recorded = RecordedOutputs(path, {}, {}, {}, {})
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"line is not valid JSON ({exc}).", file=path, line=number,
                            hint='Each line must be one JSON object: {"case_id": "...", "output": "..."}.') from None
        except RecursionError:
            raise DataError("line is nested too deeply to read.", file=path, line=number) from None
        if not isinstance(row, dict):
            kind = {"list": "array", "str": "string", "int": "number", "float": "number", "bool": "boolean",
                    "NoneType": "null"}.get(type(row).__name__, type(row).__name__)
            raise DataError(f"line is a JSON {kind}, not an object.", file=path, line=number,
                            hint='Each line must be one JSON object: {"case_id": "...", "output": "..."}.')
        output = row.get("output", row.get("response"))
        if not isinstance(output, str):
            raise DataError("each line needs a string 'output' (or 'response').", file=path, line=number)
        if row.get("case_id") is not None:
            case_id = str(row["case_id"])
            if case_id in recorded.id_lines:
                raise DataError(f"case_id '{case_id}' appears twice (lines {recorded.id_lines[case_id]} and {number}).",
                                file=path, line=number, hint="Keep one output per case.")
            recorded.by_id[case_id] = output
            recorded.id_lines[case_id] = number
        elif isinstance(row.get("prompt"), str):
            prompt = row["prompt"]
            if prompt in recorded.prompt_lines:
                raise DataError(f"prompt appears twice (lines {recorded.prompt_lines[prompt]} and {number}).",
                                file=path, line=number, hint="Keep one output per prompt, or match by case_id.")
            recorded.by_prompt[prompt] = output
            recorded.prompt_lines[prompt] = number
        else:
            raise DataError("each line needs 'case_id' or 'prompt' to match it to a case.", file=path, line=number)
    return recorded


def match_recorded(recorded: RecordedOutputs, variant: Variant, suite: Suite, all_cases: list[Case],
                   cases: list[Case], where: str | Path | None = None) -> dict[str, Any]:
    """Match recorded outputs to a suite's cases; returns the case-set report for the manifest.

    `all_cases`: every case of the suite's data (evaluation and few-shot split, before --limit),
    `cases`: the ones this run evaluates. An id or prompt matching no case of `all_cases` is an error
    naming a few (a warning with the variant's `allow_extra = true`).
    """
    ids = {c.id for c in all_cases}
    prompts = {c.last_user for c in all_cases}
    extra_ids = [i for i in recorded.by_id if i not in ids]
    extra_prompts = [p for p in recorded.by_prompt if p not in prompts]
    both = [c for c in all_cases if c.id in recorded.by_id and c.last_user in recorded.by_prompt]
    if both:  # one case given twice, once by id and once by prompt: which output counts would be a guess
        c = both[0]
        raise DataError(f"case '{c.id}' has two recorded outputs: by case_id (line {recorded.id_lines[c.id]}) and by "
                        f"prompt (line {recorded.prompt_lines[c.last_user]}).", file=recorded.path,
                        line=recorded.prompt_lines[c.last_user], hint="Keep one output per case.")
    missing = [c.id for c in cases if c.id not in recorded.by_id and c.last_user not in recorded.by_prompt]
    report = {
        "file": str(recorded.path),
        "outputs": len(recorded.by_id) + len(recorded.by_prompt),
        "cases": len(cases),
        "missing": missing,
        "missing_policy": variant.missing,
        "extra_ids": extra_ids,
        "extra_prompts": len(extra_prompts),
    }
    if (extra_ids or extra_prompts) and not variant.allow_extra:
        shown = [f"'{i}' (line {recorded.id_lines[i]})" for i in extra_ids[:5]]
        shown += [f"prompt {p[:40]!r} (line {recorded.prompt_lines[p]})" for p in extra_prompts[: max(0, 5 - len(shown))]]
        n = len(extra_ids) + len(extra_prompts)
        first = min([recorded.id_lines[i] for i in extra_ids] + [recorded.prompt_lines[p] for p in extra_prompts])
        raise DataError(
            f"{n} recorded output(s) match no case of suite '{suite.name}' ({suite.path}): {', '.join(shown)}"
            + (" ..." if n > len(shown) else "") + ".",
            file=recorded.path, line=first, key=f"variants.{variant.name}.outputs",
            hint=f"Fix the ids, or set allow_extra = true on [variants.{variant.name}] in models.toml to "
                 "accept outputs for other cases (they are ignored and counted in the manifest).",
        )
    return report


def suite_all_cases(suite: Suite) -> list[Case]:
    """Every case of a suite's data: the evaluation split and the few-shot pool, before any limit."""
    from harness.sources.native import load_cases

    if suite.data_path is None:
        return []
    cases = load_cases(suite.data_path, suite.fields)
    return cases + [c for c in suite.fewshot_pool if c.id not in {x.id for x in cases}]


def combine(axis_direction: str, scores: list[Score]) -> float:
    """Several checks on one axis: all must pass (min) on higher-is-better axes; any failure
    counts (max) on lower-is-better axes such as hallucination."""
    values = [s.value for s in scores]
    return max(values) if axis_direction == "lower" else min(values)


class Runner:
    def __init__(self, models: ModelsConfig, *, cache: GenerationCache, pool: BackendPool | None = None,
                 baselines: Path | None = None) -> None:
        self.models = models
        self.baselines = baselines
        self.cache = cache
        self.pool = pool or BackendPool()
        self.counts = {"requests": 0, "cached": 0, "generated": 0}
        self._fingerprints: dict[EngineSpec, str] = {}
        self._identities: dict[EngineSpec, str] = {}

    # -- cache-through model calls ----------------------------------------------------------
    def fingerprint(self, spec: EngineSpec) -> str:
        if spec not in self._fingerprints:
            self._fingerprints[spec] = engine_fingerprint(spec)
        return self._fingerprints[spec]

    def identity(self, spec: EngineSpec) -> str:
        if spec not in self._identities:
            self._identities[spec] = engine_identity(spec)
        return self._identities[spec]

    def _through_cache(self, spec: EngineSpec, requests: list, kind: str, tick: Callable[[int], None]):
        """Values for `requests`, from the cache where present, else from the backend (cached per batch)."""
        fingerprint = self.fingerprint(spec)
        keys = [request_key(fingerprint, r.cache_payload()) for r in requests]
        found = self.cache.get_many(keys)
        values: list[Any] = [found.get(k) for k in keys]
        cached_flags = [v is not None for v in values]
        tick(sum(cached_flags))
        missing: dict[str, list[int]] = {}
        for i, value in enumerate(values):
            if value is None:
                missing.setdefault(keys[i], []).append(i)
        self.counts["requests"] += len(requests)
        self.counts["cached"] += sum(cached_flags)
        if missing:
            backend = self.pool.get(spec)
            unique = list(missing)
            step = max(1, backend.chunk_size(kind))
            for start in range(0, len(unique), step):
                chunk = unique[start : start + step]
                batch = [requests[missing[k][0]] for k in chunk]
                committed: set[str] = set()

                def commit(positions: list[int], results: list, chunk=chunk, committed=committed) -> None:
                    """A backend's internal batch finished: into the cache now (bounded loss on a kill)."""
                    done = {chunk[p]: r.__dict__ for p, r in zip(positions, results, strict=True) if r is not None}
                    if done:
                        self.cache.put_many(done)
                        committed.update(done)

                try:
                    with backend.streaming(commit):
                        if kind == "generate":
                            results = [r.__dict__ for r in backend.generate(batch)]
                        else:
                            results = [r.__dict__ for r in backend.loglikelihood(batch)]
                except BaseException as exc:
                    # A backend that got part of a batch (the openai backend after retries) hands the
                    # successes over as `partial_results` (None where failed): keep them for a re-run.
                    partial = getattr(exc, "partial_results", None) or []
                    done = {key: r.__dict__ for key, r in zip(chunk, partial, strict=False) if r is not None and key not in committed}
                    if done:
                        self.cache.put_many(done)
                    self.counts["generated"] += len(done) + len(committed)
                    raise
                rest = {key: value for key, value in zip(chunk, results, strict=True) if key not in committed}
                if rest:
                    self.cache.put_many(rest)
                for key, result in zip(chunk, results, strict=True):
                    for i in missing[key]:
                        values[i] = result
                    tick(len(missing[key]))
                self.counts["generated"] += len(chunk)
        return values, cached_flags

    # -- the adapter guard ----------------------------------------------------------------
    def check_adapter(self, spec: EngineSpec, adapter: Adapter) -> dict[str, Any]:
        """Fail loudly when an adapter leaves the base model's probe log-likelihoods unchanged."""
        backend_cls_supports_ll = spec.backend not in ("openai",)
        if backend_cls_supports_ll:
            probes = [LoglikelihoodRequest(context=c, continuation=x) for c, x in ADAPTER_PROBES]
            with_adapter = [LoglikelihoodRequest(context=c, continuation=x, adapter=adapter) for c, x in ADAPTER_PROBES]
            base, _ = self._through_cache(spec, probes, "loglikelihood", lambda n: None)
            tuned, tuned_cached = self._through_cache(spec, with_adapter, "loglikelihood", lambda n: None)
            deltas = [abs(a["logprob"] - b["logprob"]) for a, b in zip(base, tuned, strict=True)]
            if not all(tuned_cached) and spec in self.pool.backends:  # the adapter was just loaded: base intact?
                again = self.pool.backends[spec].loglikelihood(probes)
                drift = max(abs(x.logprob - b["logprob"]) for x, b in zip(again, base, strict=True))
                if drift > ADAPTER_BASE_DRIFT_TOLERANCE:
                    raise AdapterError(
                        f"loading adapter {adapter.path} changed the base model itself (probe log-likelihoods with "
                        f"the adapter disabled moved by {drift:.3g}), so neither it nor the base can be scored on "
                        "this engine. Known cause: PEFT on a bitsandbytes 4-bit base on CPU re-quantizes the "
                        "packed weights (quantization = \"nf4\" with an adapter, peft 0.21 / bitsandbytes 0.50)."
                    )
        else:
            probes = [GenerateRequest.chat([{"role": "user", "content": c}], max_tokens=24) for c, _ in ADAPTER_PROBES]
            tuned_requests = [GenerateRequest.chat(r.chat_messages, max_tokens=24, adapter=adapter) for r in probes]
            base, _ = self._through_cache(spec, probes, "generate", lambda n: None)
            tuned, _ = self._through_cache(spec, tuned_requests, "generate", lambda n: None)
            deltas = [float(a["text"] != b["text"]) for a, b in zip(base, tuned, strict=True)]
        if max(deltas) <= ADAPTER_PROBE_TOLERANCE:
            raise AdapterError(
                f"adapter had no effect: {adapter.path} leaves the base model's outputs unchanged on every probe "
                "(check target modules / max_lora_rank, and that the adapter weights are not zero)."
            )
        return {"probe_max_abs_delta": round(max(deltas), 6)}

    # -- one suite x variant --------------------------------------------------------------
    def run_variant(self, suite: Suite, variant: Variant, cases: list[Case], pool: list[Case],
                    progress: _Progress) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        generation = GenerationSettings().merged(variant.generation).merged(suite.generation)
        info: dict[str, Any] = {"generation": generation.as_dict()}
        examples: list[Case] = []
        if variant.fewshot:
            if len(pool) < variant.fewshot:
                raise DataError(
                    f"variant '{variant.name}' wants {variant.fewshot} few-shot examples but the suite's train "
                    f"split has {len(pool)}.",
                    **suite.where("data", "holdout"),
                    hint="Give the suite a holdout (data.holdout: 0.2) or a data.train file, or lower fewshot.",
                )
            examples = select_fewshot(pool, variant.fewshot, suite.seed)
            eval_ids = {c.id for c in cases}
            eval_inputs = {c.last_user for c in cases}
            leaked = [e.id for e in examples if e.id in eval_ids or e.last_user in eval_inputs]
            if leaked:
                raise DataError(f"few-shot examples {leaked} also appear among the evaluation cases.",
                                **suite.where("data"), hint="Use a holdout split or a disjoint data.train file.")
            info["fewshot_ids"] = [e.id for e in examples]
        prompts = [build_messages(c, examples=examples, system_prompt=variant.system_prompt) for c in cases]
        needs = suite.needs
        texts: list[dict | None] = [None] * len(cases)
        cached = [True] * len(cases)
        choice_values: list[list[dict] | None] = [None] * len(cases)
        info["suite_data"] = suite_data_key(suite)
        if variant.is_recorded:
            info["outputs_sha256"] = sha256_file(variant.outputs)
        else:
            spec = engine_spec(variant)
            info["engine_fingerprint"] = self.fingerprint(spec)
            info["engine"] = self.identity(spec)
            info["implementation"] = implementation_info(spec.backend)
            info["backend"] = spec.backend
            adapter = None
            if variant.adapter is not None:
                adapter = Adapter(name=variant.name, path=variant.adapter, sha256=sha256_dir(variant.adapter))
                info["adapter_sha256"] = adapter.sha256
        blessed = None
        if self.baselines is not None:
            blessed = load_blessed(self.baselines, suite.name, variant.name,
                                   variant_key(info, variant.system_prompt), [c.id for c in cases])

        if blessed is not None:
            info["blessed"] = str(self.baselines / suite.name / variant.name)
            for i, case in enumerate(cases):
                record = blessed[case.id]
                if record.get("output") is not None:
                    texts[i] = {"text": record["output"], "finish_reason": record.get("finish_reason")}
                if record.get("choice_logprobs") is not None:
                    choice_values[i] = [{"logprob": lp, "is_greedy": False} for lp in record["choice_logprobs"]]
        elif variant.is_recorded:
            recorded = load_recorded_outputs(variant.outputs)
            info["recorded"] = match_recorded(recorded, variant, suite, suite_all_cases(suite), cases)
            for i, case in enumerate(cases):
                text = recorded.by_id.get(case.id, recorded.by_prompt.get(case.last_user))
                if text is not None:
                    texts[i] = {"text": text, "finish_reason": "recorded"}
            info["missing_outputs"] = info["recorded"]["missing"]
            if NEEDS_CHOICES in needs:
                raise HarnessError(f"variant '{variant.name}' has recorded outputs, which cannot score "
                                   "log-likelihood choices; use a text-based scorer.")
        else:
            total = (len(cases) if NEEDS_TEXT in needs else 0) + (
                sum(len(c.choices or ()) for c in cases) if NEEDS_CHOICES in needs else 0)
            with progress.task(f"{suite.name} / {variant.name}", total) as tick:
                if adapter is not None:
                    info["adapter_guard"] = self.check_adapter(spec, adapter)
                if NEEDS_TEXT in needs:
                    requests = [GenerateRequest.chat(p, adapter=adapter, **{k: v for k, v in generation.as_dict().items()})
                                for p in prompts]
                    values, flags = self._through_cache(spec, requests, "generate", tick)
                    texts = values
                    cached = flags
                if NEEDS_CHOICES in needs:
                    requests, owners = [], []
                    context_of = {}
                    for i, (case, prompt) in enumerate(zip(cases, prompts, strict=True)):
                        if not case.choices:
                            continue
                        context = tuple(tuple(sorted(m.items())) for m in prompt)
                        context_of[i] = context
                        for choice in case.choices:
                            requests.append(LoglikelihoodRequest(context=context, continuation=choice, adapter=adapter))
                            owners.append(i)
                    values, flags = self._through_cache(spec, requests, "loglikelihood", tick)
                    for i, value, flag in zip(owners, values, flags, strict=True):
                        choice_values[i] = (choice_values[i] or []) + [value]
                        cached[i] = cached[i] and flag

        replies = self.judge_outputs(suite, cases, [t["text"] if t is not None else None for t in texts], progress,
                                     label=f"{suite.name} / {variant.name}")
        records = []
        for i, case in enumerate(cases):
            text = texts[i]["text"] if texts[i] is not None else None
            choice = choice_values[i]
            output = Output(
                text=text,
                choice_logprobs=tuple(v["logprob"] for v in choice) if choice else None,
                choice_greedy=tuple(v["is_greedy"] for v in choice) if choice else None,
            )
            record: dict[str, Any] = {
                "suite": suite.name,
                "variant": variant.name,
                "case_id": case.id,
                "prompt": prompts[i],
                "output": text,
                "reference": case.reference,
                "scores": {},
                "checks": {},
                "cached": bool(cached[i]),
            }
            if case.choices:
                record["choices"] = list(case.choices)
                record["answer"] = case.answer
                if output.choice_logprobs is not None:
                    record["choice_logprobs"] = list(output.choice_logprobs)
            if case.cluster is not None:
                record["cluster"] = case.cluster
            if texts[i] is not None and texts[i].get("finish_reason"):
                record["finish_reason"] = texts[i]["finish_reason"]
            if blessed is not None:
                record["blessed"] = True
            if variant.is_recorded and text is None:
                record["missing"] = True
                if variant.missing == "drop":
                    records.append(record)  # no scores: left out of every comparison, counted in the manifest
                    continue
                for spec_ in suite.scorers:  # 'fail': the worst score on every axis
                    worst = 1.0 if suite.axis_direction(spec_.axis) == "lower" else 0.0
                    record["checks"].setdefault(spec_.axis, {})[spec_.name] = {
                        "score": worst, "reason": "no recorded output for this case (missing = \"fail\")"}
                    record["scores"][spec_.axis] = worst
                records.append(record)
                continue
            by_axis: dict[str, list[Score]] = {}
            for j, spec_ in enumerate(suite.scorers):
                if j in replies:
                    score = spec_.fn(case, replace(output, judge_reply=replies[j][i]))
                    if score.details.get("verdict") is None and spec_.fn.unparseable == "error":
                        raise HarnessError(f"judge '{spec_.fn.variant}' gave no parseable verdict for case "
                                           f"'{case.id}': {str(replies[j][i])[:200]!r}")
                else:
                    score = spec_.fn(case, output)
                by_axis.setdefault(spec_.axis, []).append(score)
                check = {"score": score.value}
                if score.reason:
                    check["reason"] = score.reason
                if score.details:
                    check["details"] = score.details
                record["checks"].setdefault(spec_.axis, {})[spec_.name] = check
            record["scores"] = {axis: combine(suite.axis_direction(axis), s) for axis, s in by_axis.items()}
            records.append(record)
        return records, info

    # -- LLM judges ------------------------------------------------------------------------
    def judge_variant(self, suite: Suite, spec_: Any) -> Variant:
        """The variant a judge check names, checked: declared in models.toml and a model (not recorded outputs)."""
        name = spec_.fn.variant
        where = suite.where(*spec_.key, "model")
        if name not in self.models.variants:
            raise ConfigError(f"judge variant '{name}' is not declared in {self.models.path or 'models.toml'}.",
                              **where, hint=did_you_mean(name, self.models.variants))
        variant = self.models.variants[name]
        if variant.is_recorded:
            raise ConfigError(f"judge variant '{name}' has recorded outputs; a judge must be a model.", **where)
        return variant

    def judge_outputs(self, suite: Suite, cases: list[Case], texts: list[str | None], progress: _Progress,
                      label: str) -> dict[int, list[str | None]]:
        """Each judge check's replies (by index into suite.scorers), one per case (None without output)."""
        replies: dict[int, list[str | None]] = {}
        for j, spec_ in enumerate(suite.scorers):
            fn = spec_.fn
            if not isinstance(fn, JudgeScorer):
                continue
            judge = self.judge_variant(suite, spec_)
            spec = engine_spec(judge)
            adapter = None
            if judge.adapter is not None:
                adapter = Adapter(name=judge.name, path=judge.adapter, sha256=sha256_dir(judge.adapter))
            settings = GenerationSettings().merged(judge.generation).as_dict()
            settings.update(max_tokens=fn.max_tokens, temperature=0.0)
            owners = [i for i, t in enumerate(texts) if t is not None]
            requests = [GenerateRequest.chat(build_messages_for_judge(fn.messages(cases[i], texts[i]), judge),
                                             adapter=adapter, **settings) for i in owners]
            with progress.task(f"{label} (judge: {judge.name})", len(requests)) as tick:
                values, _ = self._through_cache(spec, requests, "generate", tick)
            replies[j] = [None] * len(cases)
            for i, value in zip(owners, values, strict=True):
                replies[j][i] = value["text"]
        return replies


def build_messages_for_judge(messages: list[dict[str, str]], judge: Variant) -> list[dict[str, str]]:
    """The judge variant's own system prompt (if any) before the fixed judge prompt; never few-shot."""
    if judge.system_prompt:
        return [{"role": "system", "content": judge.system_prompt}, *messages]
    return messages


def variant_manifest(variant: Variant) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": variant.model,
        "backend": variant.backend,
        "quantization": variant.quantization,
        "fewshot": variant.fewshot,
        "system_prompt": variant.system_prompt,
        "engine": variant.engine,
    }
    if variant.adapter is not None:
        entry["adapter"] = str(variant.adapter)
    if variant.outputs is not None:
        entry["outputs"] = str(variant.outputs)
    if variant.backend == "openai":
        from harness.backends.openai import model_identity

        entry["base_url"] = variant.options.get("base_url")
        entry["model_fingerprint"] = model_identity(variant.model, variant.options)
    elif not variant.is_recorded and variant.backend != "fake":
        try:
            entry["model_fingerprint"] = model_fingerprint(variant.model)
        except HarnessError as exc:
            entry["model_fingerprint"] = f"unavailable: {exc}"
    return entry


def suite_manifest(suite: Suite, variants: list[str], n_cases: int, n_pool: int) -> dict[str, Any]:
    return {
        "path": str(suite.path),
        "sha256": suite.sha256,
        "data": {"path": str(suite.data_path), "sha256": suite.data_sha256,
                 **({"train_path": str(suite.train_path), "train_sha256": sha256_file(suite.train_path)}
                    if suite.train_path else {})},
        "holdout": suite.holdout,
        "seed": suite.seed,
        "n_cases": n_cases,
        "n_fewshot_pool": n_pool,
        "variants": variants,
        "baseline": suite.baseline,
        "axes": {axis: {"direction": suite.axis_direction(axis), "binary": suite.axis_binary(axis),
                        "checks": [s.name for s in suite.scorers if s.axis == axis]}
                 for axis in suite.axis_names},
        "gates": [g.text for g in suite.gates],
        "alpha": suite.alpha,
        "gate_mode": suite.gate_mode,
        "inconclusive": suite.inconclusive,
        "holm": suite.holm,
        "min_effect": suite.min_effect,
        "marks": suite.marks,
    }


def preflight(suites: list[Suite], models: ModelsConfig, options: RunOptions) -> None:
    """Check every input a run will read before anything is written (no run directory, no cache).

    Data files (and their templates) are read whole, few-shot pools sized, every recorded-outputs
    file read and matched to its suite's cases. The first problem raises a HarnessError naming the
    file and line or key. lm-eval suites are checked by harness/sources/lmeval.py.
    """
    named: dict[str, Suite] = {}
    for suite in suites:  # records, gates and the manifest are keyed by name: two files, one name, one survives
        if suite.name in named:
            raise ConfigError(f"two suite files are named '{suite.name}' (also {named[suite.name].path}); the run "
                              "would keep only one file's gates.", **suite.where("suite"),
                              hint="Give each suite file its own `suite:` name.")
        named[suite.name] = suite
    for suite in suites:
        if suite.lm_eval is not None:
            continue
        cases, pool = suite.splits
        if options.limit is not None:
            cases = cases[: options.limit]
        for name in [v for v in suite.variants if options.variants is None or v in options.variants]:
            variant = models.get(name, where=str(suite.path))
            if variant.fewshot and len(pool) < variant.fewshot:
                where = suite.where("data", "holdout")
                where["line"] = where["line"] or suite.lines.get(("data",))
                raise DataError(
                    f"variant '{variant.name}' wants {variant.fewshot} few-shot examples but the suite's train "
                    f"split has {len(pool)}.", **where,
                    hint="Give the suite a holdout (data.holdout: 0.2) or a data.train file, or lower fewshot.")
            if variant.is_recorded:
                if NEEDS_CHOICES in suite.needs:
                    raise ConfigError(f"variant '{variant.name}' has recorded outputs, which cannot score "
                                      "log-likelihood choices; use a text-based scorer.", **suite.where("scorers"))
                match_recorded(load_recorded_outputs(variant.outputs), variant, suite, suite_all_cases(suite), cases)


def run_suites(suites: list[Suite], models: ModelsConfig, options: RunOptions, *, cache: GenerationCache,
               pool: BackendPool | None = None, log: Callable[[str], None] = print) -> RunResult:
    """Run every suite x variant; write records and manifest; return them."""
    owns_pool = pool is None
    runner = Runner(models, cache=cache, pool=pool, baselines=options.baselines)
    for suite in suites:  # a misnamed judge fails before any model runs
        for spec_ in suite.scorers:
            if isinstance(spec_.fn, JudgeScorer):
                runner.judge_variant(suite, spec_)
    preflight(suites, models, options)  # bad data or recorded outputs fail before the run directory exists
    loads_before = runner.pool.loads
    run_id = options.run_id or new_run_id()
    run_dir = Path(options.out_root) / run_id
    writer = RunWriter(run_dir)
    started = time.time()
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "harness_version": __version__,
        "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "models_toml": {"path": str(models.path), "sha256": sha256_text(models.text)} if models.path else None,
        "suites": {},
        "variants": {},
        "runs": {},
        "limit": options.limit,
        "errors": [],
        "resume_command": options.command,
    }
    progress = _Progress(options.progress)
    all_records: list[dict[str, Any]] = []
    try:
        for suite in suites:
            if suite.lm_eval is not None:  # lm-eval tasks: harness/sources/lmeval.py, same cache, counters and engine pool
                from harness.sources.lmeval import run_suite as run_lm_eval_suite

                all_records.extend(run_lm_eval_suite(suite, runner, models, options, manifest, writer, progress, log))
                continue
            cases, fewshot_pool = suite.splits
            if options.limit is not None:
                cases = cases[: options.limit]
            names = [v for v in suite.variants if options.variants is None or v in options.variants]
            manifest["suites"][suite.name] = suite_manifest(suite, names, len(cases), len(fewshot_pool))
            ks = sorted({models.get(v).fewshot for v in names if models.get(v).fewshot})
            overlaps = holdout_overlap(suite, fewshot=ks)
            for warning in overlaps:
                log(f"warning: {suite.name}: {warning}")
            manifest["suites"][suite.name]["warnings"] = overlaps
            writer.write_manifest(manifest)
            for name in names:
                variant = models.get(name, where=str(suite.path))
                manifest["variants"].setdefault(name, variant_manifest(variant))
                run_started = time.perf_counter()
                try:
                    # One run at a time per (suite, variant) on this cache, across processes (the pytest
                    # plugin takes the same lock): a concurrent run waits, then reads the results cached.
                    with exclusive(lock_dir(cache), [lock_name(suite.path, name)],
                                   on_wait=lambda _, s=suite.name, v=name: log(
                                       f"{s} / {v}: another harness run is on it; waiting to reuse its results")):
                        records, info = runner.run_variant(suite, variant, cases, fewshot_pool, progress)
                except HarnessError as exc:
                    manifest["errors"].append({"suite": suite.name, "variant": name, "error": str(exc),
                                               "type": type(exc).__name__})
                    if isinstance(exc, DataError):
                        raise  # the caller prints it (once)
                    log(f"error: {suite.name} / {name}: {exc}")
                    continue
                info["seconds"] = round(time.perf_counter() - run_started, 2)
                manifest["runs"][f"{suite.name}/{name}"] = info
                writer.write_records(records)
                all_records.extend(records)
                n_cached = sum(r["cached"] for r in records)
                recorded = info.get("recorded")
                note = ""
                if recorded is not None:
                    rule = "failed on every axis" if recorded["missing_policy"] == "fail" else "left out"
                    note = f", {len(recorded['missing'])} of {recorded['cases']} without recorded output ({rule})"
                    if recorded["extra_ids"] or recorded["extra_prompts"]:
                        note += (f", {len(recorded['extra_ids']) + recorded['extra_prompts']} recorded output(s) "
                                 "matching no case ignored (allow_extra)")
                    if recorded["missing"] or recorded["extra_ids"] or recorded["extra_prompts"]:
                        # the report shows a suite's warnings: every case-set mismatch is visible there
                        manifest["suites"][suite.name].setdefault("warnings", []).append(
                            f"recorded outputs of '{name}' ({recorded['file']}){note}.")
                log(f"{suite.name} / {name}: {len(records)} cases, {n_cached} cached{note} ({info['seconds']:.1f} s)")
        manifest["status"] = "complete"
    except BaseException as exc:
        manifest["status"] = "interrupted"
        manifest["stopped_by"] = f"{type(exc).__name__}: {exc}"[:500]  # what stopped it (Ctrl-C, a bad data file)
        raise
    finally:
        manifest["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["seconds"] = round(time.time() - started, 2)
        manifest["counts"] = {**runner.counts, "records": len(all_records), "engine_loads": runner.pool.loads - loads_before}
        manifest["backends"] = {}
        for spec, backend in runner.pool.backends.items():
            try:
                manifest["backends"][f"{spec.backend}:{spec.model}:{spec.quantization or 'full'}"] = backend.info()
            except Exception as exc:  # the manifest must still be written
                manifest["backends"][spec.model] = {"error": str(exc)}
        writer.write_manifest(manifest)
        writer.close()
        if owns_pool:
            runner.pool.close()
    return RunResult(run_dir=run_dir, records=all_records, manifest=manifest, errors=manifest["errors"])


def records_digest(records: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
