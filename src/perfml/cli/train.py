"""``perfml train``: run the built-in training pipeline on the workspace with the local runner."""

from __future__ import annotations

import json
from datetime import datetime

import typer

from perfml.cli.options import parse_pairs
from perfml.cli.runs import jobs_table, run_json
from perfml.cli.state import out, state
from perfml.detectors import DEFAULT_DETECTOR
from perfml.errors import UsageError
from perfml.pipelines.local import Training, TrainingRequest
from perfml.timeparse import parse_instant


class BadWindowError(UsageError):
    def __init__(self, text: str) -> None:
        super().__init__(f"--window {text!r} is not START:END (e.g. 2024-01-01:2024-03-01)")


def parse_window(text: str) -> tuple[datetime, datetime]:
    """``START:END``; each side an instant (ISO dates and times may contain colons)."""
    for at, char in enumerate(text):
        if char != ":":
            continue
        try:
            return parse_instant(text[:at], "start"), parse_instant(text[at + 1 :], "end")
        except UsageError:
            continue
    raise BadWindowError(text)


def print_training(done: Training) -> None:
    out.print(jobs_table(done.run))
    out.print(done.outcome.summary(), highlight=False, markup=False)


def train(
    ctx: typer.Context,
    data: str = typer.Option(..., "--data", help="METRIC[,METRIC...] to train on"),
    window: str = typer.Option(..., "--window", help="START:END of the data (end exclusive)"),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="detector kind"),
    entity: list[str] | None = typer.Option(None, "--entity", help="only these (repeatable)"),
    model: str | None = typer.Option(None, "--model", help="model name (default: the metrics)"),
    param: list[str] | None = typer.Option(None, "--param", help="detector k=v (repeatable)"),
    holdout: float = typer.Option(
        0.2, "--holdout", help="share of the window held out to evaluate"
    ),
    promote: bool = typer.Option(False, "--promote", help="promote through the gate"),
    alias: str = typer.Option("production", "--alias", help="alias --promote moves"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Train a detector through the training pipeline, evaluate it, register it."""
    metrics = [m.strip() for m in data.split(",") if m.strip()]
    if not metrics:
        raise typer.BadParameter("name at least one metric", param_hint="--data")
    start, end = parse_window(window)
    request = TrainingRequest(
        detector=detector, metrics=metrics, start=start, end=end, entities=entity, model=model,
        params=parse_pairs(param, "--param"), holdout=holdout, promote=promote, alias=alias,
    )  # fmt: skip
    done = state(ctx).parts().train(request)
    if as_json:
        document = {"run": run_json(done.run), "registered": done.outcome.to_json()}
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    print_training(done)
