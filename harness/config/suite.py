"""Suite YAML -> validated Suite. Suites are data: safe_load, no code, line-numbered errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.analysis.gates import DEFAULT_MIN_EFFECT, Gate, parse_gate
from harness.config.files import is_slug, load_yaml, sha256_file
from harness.config.variants import GENERATION_KEYS, validate_generation
from harness.errors import ConfigError, DataError, GateError, did_you_mean
from harness.scorers import REGISTRY, OptionError, ScorerContext, ScorerInfo
from harness.scorers.base import ScoreFn
from harness.sources.native import FIELD_KEYS, Case, FieldMap, holdout_split, load_cases

BUILTIN_AXES = {"format": "higher", "accuracy": "higher", "hallucination": "lower", "retention": "higher"}
SUITE_KEYS = {
    "suite", "description", "data", "variants", "baseline", "generation", "scorers", "gates",
    "alpha", "gate_mode", "inconclusive", "holm", "axes", "marks", "min_effect",
    "json_strict",  # default `strict` of the json, json_schema and json_fields* scorers
    "lm_eval",  # lm-eval tasks instead of data: (harness/sources/lmeval.py)
}
DATA_KEYS = {"path", "fields", "holdout", "seed", "train", "limit"}


@dataclass(frozen=True)
class ScorerSpec:
    """One configured check on one axis."""

    axis: str
    name: str
    options: Any
    info: ScorerInfo
    fn: ScoreFn = field(compare=False)
    key: tuple = field(default=(), compare=False)
    """Where the check is declared in the suite file (for error locations)."""


@dataclass
class Suite:
    """A validated suite: data source, variants, generation settings, scorers and gates."""

    name: str
    path: Path
    sha256: str
    variants: list[str]
    baseline: str
    data_path: Path
    fields: FieldMap | None
    holdout: float | None
    seed: int
    train_path: Path | None
    limit: int | None
    generation: dict[str, Any]
    scorers: list[ScorerSpec]
    gates: list[Gate]
    alpha: float = 0.05
    gate_mode: str = "strict"
    inconclusive: str = "fail"
    holm: bool = True
    min_effect: float = DEFAULT_MIN_EFFECT
    """The improvement a superiority gate is about (its FAIL rules out an effect this large)."""
    axes: dict[str, str] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)
    description: str = ""
    lines: dict[tuple, int] = field(default_factory=dict, repr=False)
    lm_eval: Any = None
    """`harness.sources.lmeval.LmEvalSource` when the suite runs lm-eval tasks instead of `data:` (data_path is None)."""

    def without_limit(self) -> Suite:
        """The same suite over all of its data: `data.limit` (and an lm-eval suite's `lm_eval.limit`)
        dropped; `harness run --full`."""
        lm_eval = dataclasses.replace(self.lm_eval, limit=None) if self.lm_eval is not None else None
        return dataclasses.replace(self, limit=None, lm_eval=lm_eval)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(s.info.needs for s in self.scorers)) if self.scorers else frozenset()

    def axis_direction(self, axis: str) -> str:
        return self.axes.get(axis, BUILTIN_AXES.get(axis, "higher"))

    def axis_binary(self, axis: str) -> bool:
        return all(s.info.binary for s in self.scorers if s.axis == axis)

    @property
    def axis_names(self) -> list[str]:
        return list(dict.fromkeys(s.axis for s in self.scorers))

    @cached_property
    def data_sha256(self) -> str:
        return sha256_file(self.data_path)

    @cached_property
    def splits(self) -> tuple[list[Case], list[Case]]:
        """(eval cases, few-shot pool)."""
        line = self.lines.get(("data", "fields", "template"))
        origin = f"template {self.path}:{line}" if line else f"template in {self.path}"
        cases = load_cases(self.data_path, self.fields, template_origin=origin)
        if self.holdout is not None:
            pool, held = holdout_split(cases, self.holdout, self.seed)
            if not held:
                raise DataError(
                    f"holdout {self.holdout} of {len(cases)} cases leaves no evaluation cases.",
                    file=self.path, key="data.holdout", line=self.lines.get(("data", "holdout")),
                    hint="Raise data.holdout or add data.",
                )
            cases = held
        else:
            pool = []
        if self.train_path is not None:
            pool = load_cases(self.train_path, self.fields, template_origin=origin)
        if self.limit is not None:
            cases = cases[: self.limit]
        return cases, pool

    @property
    def cases(self) -> list[Case]:
        return self.splits[0]

    @property
    def fewshot_pool(self) -> list[Case]:
        return self.splits[1]

    def where(self, *key: Any) -> dict[str, Any]:
        """Error location kwargs for a key path."""
        return {"file": self.path, "key": ".".join(str(k) for k in key) or None, "line": self.lines.get(tuple(key))}


def _scorer_entries(axis: str, raw: Any, where) -> list[tuple[str, Any, tuple]]:
    if isinstance(raw, str):
        return [(raw, None, ("scorers", axis))]
    if isinstance(raw, dict):
        return [(name, options, ("scorers", axis, name)) for name, options in raw.items()]
    if isinstance(raw, list):
        entries = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                entries.append((item, None, ("scorers", axis, i)))
            elif isinstance(item, dict) and len(item) == 1:
                (name, options), = item.items()
                entries.append((name, options, ("scorers", axis, i, name)))
            else:
                raise ConfigError("each list item must be a scorer name or {name: options}.", **where("scorers", axis, i))
        return entries
    raise ConfigError("must be a scorer name, a mapping of scorer names to options, or a list.",
                      **where("scorers", axis))


def load_suite(path: Path | str, *, known_variants: set[str] | None = None) -> Suite:
    """Parse and validate a suite file. Data is read lazily (`suite.splits`), so this stays cheap."""
    path = Path(path)
    data, lines = load_yaml(path)

    def where(*key: Any) -> dict[str, Any]:
        return {"file": path, "key": ".".join(str(k) for k in key) or None, "line": lines.get(tuple(key))}

    if not isinstance(data, dict):
        raise ConfigError("a suite must be a YAML mapping.", file=path, hint="See suites/*.yaml for examples.")
    for key in data:
        if key not in SUITE_KEYS:
            raise ConfigError("unknown key.", **where(key), hint=did_you_mean(str(key), SUITE_KEYS))
    base_dir = path.parent

    def typed(key: tuple, value: Any, kind, message: str):
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigError(f"{message}, got {value!r}.", **where(*key))
        if not isinstance(value, kind):
            raise ConfigError(f"{message}, got {value!r}.", **where(*key))
        return value

    name = typed(("suite",), data.get("suite", path.stem), str, "must be a string")
    if not is_slug(name):
        raise ConfigError(f"suite name {name!r} is not a plain name: it names folders and files under reports/, so it "
                          "may only use letters, digits, '_', '-' and '.' (no '/', no '..', at most 100 characters).",
                          **(where("suite") if "suite" in data else {"file": path, "key": "suite"}),
                          hint="e.g. suite: ticket-extraction")
    lm_eval = None
    if "lm_eval" in data:  # lm-eval tasks instead of a data file: parsed here, run by harness/sources/lmeval.py
        from harness.sources.lmeval import parse_source

        lm_eval = parse_source(data, where, base_dir)
        data_path = fields = holdout = train_path = limit = None
        seed = 0
    else:
        source = data.get("data")
        if not isinstance(source, dict) or "path" not in source:
            raise ConfigError("needs data.path (a chat JSONL, JSONL or CSV file).", **where("data"),
                              hint="e.g. data: {path: data/cases.jsonl, holdout: 0.2, seed: 7}")
        for key in source:
            if key not in DATA_KEYS:
                raise ConfigError("unknown key.", **where("data", key), hint=did_you_mean(str(key), DATA_KEYS))
        data_path = base_dir / typed(("data", "path"), source["path"], str, "must be a path")
        if not data_path.is_file():
            raise DataError(f"data file not found: {data_path}.", **where("data", "path"),
                            hint="Paths are relative to the suite file.")
        train_path = None
        if source.get("train") is not None:
            train_path = base_dir / typed(("data", "train"), source["train"], str, "must be a path")
            if not train_path.is_file():
                raise DataError(f"train file not found: {train_path}.", **where("data", "train"))
        fields = None
        if source.get("fields") is not None:
            raw_fields = typed(("data", "fields"), source["fields"], dict, "must be a mapping of field names")
            for key, value in raw_fields.items():
                if key not in FIELD_KEYS:
                    raise ConfigError("unknown field.", **where("data", "fields", key), hint=did_you_mean(str(key), FIELD_KEYS))
                if key == "choices" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                    continue
                typed(("data", "fields", key), value, str, "must be a field name (dotted path) or template")
            if "input" not in raw_fields and "template" not in raw_fields:
                raise ConfigError("needs 'input' (a field name) or 'template'.", **where("data", "fields"))
            fields = FieldMap(**raw_fields)
            if fields.template is not None:
                from jinja2 import TemplateSyntaxError

                from harness.sources.native import template_environment

                try:
                    template_environment().parse(fields.template)
                except TemplateSyntaxError as exc:
                    raise ConfigError(f"template does not compile: {exc.message} (template line {exc.lineno}).",
                                      **where("data", "fields", "template"),
                                      hint="Jinja syntax: {{ field }}, {% if %}...{% endif %}.") from None
        holdout = source.get("holdout")
        if holdout is not None:
            typed(("data", "holdout"), holdout, (int, float), "must be a fraction")
            if not 0 < holdout < 1:
                raise ConfigError(f"must be a fraction between 0 and 1, got {holdout}.", **where("data", "holdout"))
        seed = typed(("data", "seed"), source.get("seed", 0), int, "must be an integer")
        limit = source.get("limit")
        if limit is not None and (typed(("data", "limit"), limit, int, "must be an integer") < 1):
            raise ConfigError("must be at least 1.", **where("data", "limit"))

    variants = data.get("variants")
    if not isinstance(variants, list) or not variants or not all(isinstance(v, str) for v in variants):
        raise ConfigError("must be a non-empty list of variant names from models.toml.", **where("variants"))
    if known_variants is not None:
        for i, variant in enumerate(variants):
            if variant not in known_variants:
                raise ConfigError(
                    f"variant '{variant}' is not declared in models.toml.", **where("variants", i),
                    hint=f"Add [variants.{variant}] to models.toml or fix the name. {did_you_mean(variant, known_variants)}",
                )
    baseline = data.get("baseline", variants[0])
    if baseline not in variants:
        raise ConfigError(f"baseline '{baseline}' is not one of the suite's variants.", **where("baseline"))

    generation = typed(("generation",), data.get("generation", {}) or {}, dict, "must be a mapping")
    for key in generation:
        if key not in GENERATION_KEYS:
            raise ConfigError("unknown generation setting.", **where("generation", key),
                              hint=did_you_mean(str(key), GENERATION_KEYS))

    def gen_fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, **where("generation", key))

    validate_generation(generation, gen_fail)

    axes = typed(("axes",), data.get("axes", {}) or {}, dict, "must map axis names to 'higher' or 'lower'")
    for axis, direction in axes.items():
        if direction not in ("higher", "lower"):
            raise ConfigError("must be 'higher' or 'lower' (which way is better).", **where("axes", axis))

    raw_scorers = data.get("scorers") if lm_eval is None else {}  # lm-eval's metrics score an lm_eval suite
    if lm_eval is None and (not isinstance(raw_scorers, dict) or not raw_scorers):
        raise ConfigError("needs at least one scorer, by axis.", **where("scorers"),
                          hint="e.g. scorers: {accuracy: exact_match}")
    scorers: list[ScorerSpec] = []
    if lm_eval is not None:  # one pseudo-scorer names the axis lm-eval's chosen metric lands on
        from harness.sources.lmeval import SCORER_INFO, score_fn

        scorers.append(ScorerSpec(axis=lm_eval.axis, name="lm_eval", options=None, info=SCORER_INFO, fn=score_fn))
    json_strict = typed(("json_strict",), data.get("json_strict", False), bool, "must be true or false")
    ctx = ScorerContext(base_dir=base_dir, json_strict=json_strict)
    for axis, raw in raw_scorers.items():
        for scorer_name, options, key in _scorer_entries(str(axis), raw, where):
            info = REGISTRY.get(scorer_name)
            if info is None:
                raise ConfigError(f"unknown scorer '{scorer_name}'.", **where(*key),
                                  hint=did_you_mean(scorer_name, REGISTRY))
            try:
                fn = info.factory(options, ctx)
            except OptionError as exc:
                option_key = key + ((exc.key,) if exc.key else ())
                location = where(*option_key)
                if location["line"] is None:
                    location["line"] = lines.get(key)
                raise ConfigError(str(exc), **location) from None
            judge_variant = getattr(fn, "variant", None) if scorer_name == "judge" else None
            if known_variants is not None and judge_variant is not None and judge_variant not in known_variants:
                raise ConfigError(f"judge variant '{judge_variant}' is not declared in models.toml.",
                                  **where(*key, "model"), hint=did_you_mean(judge_variant, known_variants))
            scorers.append(ScorerSpec(axis=str(axis), name=scorer_name, options=options, info=info, fn=fn, key=key))

    raw_gates = data.get("gates", []) or []
    if not isinstance(raw_gates, list):
        raise ConfigError("must be a list of gate expressions.", **where("gates"))
    gates: list[Gate] = []
    axis_names = {s.axis for s in scorers}
    for i, text in enumerate(raw_gates):
        try:
            gate = parse_gate(text)
            for variant, axis in gate.refs:
                if variant not in variants:
                    raise ValueError(f"gate names variant '{variant}', which the suite does not run "
                                     f"(its variants: {', '.join(variants)})")
                if axis not in axis_names:
                    raise ValueError(f"gate names axis '{axis}', which no scorer of the suite produces "
                                     f"(axes: {', '.join(sorted(axis_names))})")
        except ValueError as exc:
            raise GateError(f"{exc}.", **where("gates", i)) from None
        gates.append(gate)

    alpha = typed(("alpha",), data.get("alpha", 0.05), float, "must be a number")
    if not 0 < alpha < 0.5:
        raise ConfigError("must be between 0 and 0.5.", **where("alpha"))
    gate_mode = data.get("gate_mode", "strict")
    if gate_mode not in ("strict", "lenient"):
        raise ConfigError("must be 'strict' (confidence bound) or 'lenient' (point estimate).", **where("gate_mode"))
    inconclusive = data.get("inconclusive", "fail")
    if inconclusive not in ("fail", "pass"):
        raise ConfigError("must be 'fail' (INCONCLUSIVE blocks) or 'pass'.", **where("inconclusive"))
    holm = typed(("holm",), data.get("holm", True), bool, "must be true or false")
    min_effect = typed(("min_effect",), data.get("min_effect", DEFAULT_MIN_EFFECT), (int, float),
                       "must be a number (the improvement a superiority gate is about, e.g. 0.05)")
    if not 0 < min_effect:
        raise ConfigError(f"must be positive, got {min_effect}.", **where("min_effect"),
                          hint="e.g. min_effect: 0.05 (5 points on a 0-1 axis)")
    marks = data.get("marks", []) or []
    if not isinstance(marks, list) or not all(isinstance(m, str) and m.isidentifier() for m in marks):
        raise ConfigError("must be a list of pytest mark names.", **where("marks"))

    return Suite(
        name=name, path=path, sha256=sha256_file(path), variants=variants, baseline=baseline,
        data_path=data_path, fields=fields, holdout=holdout, seed=seed, train_path=train_path, limit=limit,
        generation=generation, scorers=scorers, gates=gates, alpha=alpha, gate_mode=gate_mode,
        inconclusive=inconclusive, holm=holm, min_effect=float(min_effect), axes=axes, marks=marks,
        description=str(data.get("description", "")), lines=lines, lm_eval=lm_eval,
    )
