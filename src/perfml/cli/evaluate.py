"""``perfml evaluate``: score a detector on labelled data, NAB's way and the classic ways."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from perfml.cli.options import parse_pairs
from perfml.cli.state import out, progress
from perfml.detectors import DEFAULT_DETECTOR, create
from perfml.evaluation.nab import (
    PROFILE_ALIASES,
    PROFILES,
    FileScore,
    UnknownProfileError,
    normalised,
    profile,
)
from perfml.evaluation.runner import (
    Evaluation,
    ScoredSeries,
    SeriesTask,
    evaluate,
    fleet_tasks,
    nab_tasks,
    read_results,
    score_tasks,
)

app = typer.Typer(help="Evaluate detectors on labelled data.", no_args_is_help=True)

PARAM_HELP = "detector parameter key=value, value as JSON if it parses (repeatable)"
PROFILE_HELP = "profile of the per-file table: standard, low_fp or low_fn (NAB's names too)"
THRESHOLD_HELP = "score every profile at this threshold instead of NAB's corpus-wide sweep"
WORKERS_HELP = "processes to score with (default: all CPUs when it pays off)"


@app.command("nab")
def nab(
    corpus: Path = typer.Option(
        ..., "--corpus", exists=True, file_okay=False, help="NAB corpus: data/ and labels/"
    ),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help=f"detector to run (default {DEFAULT_DETECTOR}); with --results, whose to read",
    ),
    param: list[str] | None = typer.Option(None, "--param", help=PARAM_HELP),
    results: Path | None = typer.Option(
        None,
        "--results",
        exists=True,
        file_okay=False,
        help="score NAB results (RDIR/<category>/<detector>_<file>.csv) instead of running",
    ),
    shown: str = typer.Option("standard", "--profile", help=PROFILE_HELP),
    threshold: float | None = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    json_file: Path | None = typer.Option(None, "--json", help="write the results here"),
    workers: int | None = typer.Option(None, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Run a detector on every series of a NAB corpus (or read its results) and score it."""
    cost = _profile_name(shown)
    if results is not None:
        if param:
            problem = "parameters are for a detector that runs, not for --results"
            raise typer.BadParameter(problem, param_hint="--param")
        name, scored = read_results(corpus, results, detector)
    else:
        name = detector or DEFAULT_DETECTOR
        params = parse_pairs(param, "--param")
        create(name, **params)
        scored = _score(nab_tasks(corpus), name, params, workers)
    result = evaluate(scored, name, threshold)
    print_files(result, cost, {k: k for k in scored})
    print_profiles(result)
    if json_file is not None:
        write_json(json_file, result)


@app.command("fleet")
def fleet(
    data: Path = typer.Option(
        ..., "--data", exists=True, file_okay=False, help="fleet written by perfml generate fleet"
    ),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="detector to run"),
    param: list[str] | None = typer.Option(None, "--param", help=PARAM_HELP),
    shown: str = typer.Option("standard", "--profile", help=PROFILE_HELP),
    threshold: float | None = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    json_file: Path | None = typer.Option(None, "--json", help="write the results here"),
    workers: int | None = typer.Option(None, "--workers", min=1, help=WORKERS_HELP),
) -> None:
    """Run a detector on a generated fleet: per series, or per host if it is multivariate."""
    cost = _profile_name(shown)
    params = parse_pairs(param, "--param")
    multivariate = create(detector, **params).multivariate
    scored = _score(fleet_tasks(data, multivariate), detector, params, workers)
    result = evaluate(scored, detector, threshold)
    # A fleet has thousands of series: show them by metric; hosts are the rows already.
    groups = {k: k if multivariate else k.split("/", 1)[0] for k in scored}
    print_files(result, cost, groups)
    print_profiles(result)
    if json_file is not None:
        write_json(json_file, result)


def _profile_name(name: str) -> str:
    try:
        return profile(name).name
    except UnknownProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None


def _score(
    tasks: list[SeriesTask], detector: str, params: dict[str, Any], workers: int | None
) -> dict[str, ScoredSeries]:
    began = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"scoring with {detector}", total=len(tasks))
        advance: Callable[[str], None] = lambda _key: bar.advance(task)  # noqa: E731
        scored = score_tasks(tasks, detector, params, workers=workers, on_series=advance)
    rows = sum(len(s.scores) for s in scored.values())
    seconds = time.perf_counter() - began
    out.print(f"{detector} scored {len(scored):,} series, {rows:,} rows in {seconds:.1f} s")
    return scored


def print_files(result: Evaluation, cost: str, groups: dict[str, str]) -> None:
    """NAB's per-file figures under one profile, summed over ``groups`` (file → row name)."""
    corpus = result.profiles[cost].corpus
    rows: dict[str, list[FileScore]] = {}
    for key, figures in corpus.files.items():
        rows.setdefault(groups[key], []).append(figures)
    grouped = any(len(files) > 1 for files in rows.values())
    categories = {key.split("/", 1)[0] for key in rows}
    where = ""
    if not grouped and len(categories) == 1 and all("/" in key for key in rows):
        # One category, as in NAB's subsets: it goes in the title, the rows name the files.
        where = f" on {categories.pop()}"
        rows = {key.split("/", 1)[1]: files for key, files in rows.items()}
    title = f"{result.detector}{where}, profile {cost}, threshold {corpus.threshold:.6g}"
    table = Table(title=title)
    table.add_column("metric" if grouped else "file", overflow="fold")
    for heading in ("normalised" if grouped else "score", "TP", "FP", "FN", "TN"):
        table.add_column(heading, justify="right")
    for name, files in rows.items():
        if grouped:
            score = normalised(files, PROFILES[cost])
            shown = "-" if score is None else f"{score:.1f}"
        else:
            shown = f"{sum(f.score for f in files):.3f}"
        counts = (sum(getattr(f, c) for f in files) for c in ("tp", "fp", "fn", "tn"))
        table.add_row(name, shown, *(f"{c:,}" for c in counts))
    out.print(table)


def print_profiles(result: Evaluation) -> None:
    """Every profile's normalised score and threshold, and the metrics at that threshold."""
    table = Table(title=f"{result.detector} over {result.series:,} series")
    table.add_column("")
    columns = [_profile_cells(result, name) for name in result.profiles]
    short = {full: alias for alias, full in PROFILE_ALIASES.items()}
    for name in result.profiles:
        table.add_column(short.get(name, name), justify="right")
    for label in columns[0]:
        table.add_row(label, *(cells[label] for cells in columns))
    out.print(table)


def _profile_cells(result: Evaluation, name: str) -> dict[str, str]:
    corpus, m = result.profiles[name].corpus, result.profiles[name].metrics.summary(result.k)
    return {
        "NAB score (normalised)": f"{corpus.score:.1f}",
        "threshold": f"{corpus.threshold:.6g}",
        "raw score": f"{corpus.raw:.3f}",
        "point P/R/F1": _prf(m.point_precision, m.point_recall, m.point_f1),
        "event P/R/F1": _prf(m.event_precision, m.event_recall, m.event_f1),
        "point-adjusted F1": f"{m.pa_f1:.3f}",
        f"PA%K F1 (K={m.pa_k:g})": f"{m.pa_k_f1:.3f}",
        "PA%K F1 area over K": f"{m.pa_k_auc_f1:.3f}",
        "windows detected": f"{m.detected_windows} / {m.windows}",
        "mean time to detect": _delay(m.mean_delay_rows, m.mean_delay_seconds),
    }


def _prf(precision: float, recall: float, f1: float) -> str:
    return f"{precision:.2f}/{recall:.2f}/{f1:.2f}"


def _delay(rows: float | None, seconds: float | None) -> str:
    if rows is None:
        return "-"
    if seconds is None:
        return f"{rows:.1f} rows"
    took = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
    return f"{rows:.1f} rows, {took}"


def document(result: Evaluation) -> dict[str, Any]:
    """The results as JSON: NAB's figures per profile and file, and the metrics."""
    return {
        "detector": result.detector,
        "profiles": {
            name: {
                "score": r.corpus.score,
                "threshold": r.corpus.threshold,
                "raw": r.corpus.raw,
                "files": {
                    key: {"score": f.score, "tp": f.tp, "fp": f.fp, "fn": f.fn, "tn": f.tn}
                    for key, f in r.corpus.files.items()
                },
                "metrics": asdict(r.metrics.summary(result.k)),
            }
            for name, r in result.profiles.items()
        },
    }


def write_json(path: Path, result: Evaluation) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(result), indent=2) + "\n", encoding="utf-8")
    out.print(f"wrote {path}")
