"""``perfml init`` and ``perfml demo``."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import typer
from rich.table import Table

from perfml.cli.render import print_report, print_summary
from perfml.cli.state import out, progress, state
from perfml.cli.train import print_training
from perfml.config import CONFIG_NAME, DEFAULT_CONFIG
from perfml.detectors import DEFAULT_DETECTOR
from perfml.errors import UsageError
from perfml.ingest import ingest_corpus
from perfml.pipelines.local import run_training
from perfml.registry.setup import open_registry
from perfml.sources.fleet import generate_fleet, write_fleet

DEMO_METRIC = "request_latency_ms"
"""The demo trains on latency: the fleet labels its latency storms and spikes."""
DEMO_MODEL = "request-latency"


class ConfigExistsError(UsageError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists already; pass --force to overwrite it")


def init(
    path: Path = typer.Argument(Path(CONFIG_NAME), help="where to write"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a perfml.yaml with every setting at its default, commented."""
    if path.exists() and not force:
        raise ConfigExistsError(path)
    path.write_text(DEFAULT_CONFIG, encoding="utf-8")
    out.print(f"wrote {path}")


def demo(ctx: typer.Context) -> None:
    """Generate a fleet, ingest it, summarise the store, then train, register and promote the
    default detector on request latency through the training pipeline."""
    settings = state(ctx).settings
    plan = generate_fleet(settings.demo.hosts, settings.demo.months, settings.demo.seed)
    fleet_dir = settings.workspace / "demo-fleet"
    out.rule("1. generate a fleet")
    with out.status(f"generating {plan.points:,} points"):
        write_fleet(plan, fleet_dir)
    out.print(
        f"{len(plan.hosts)} hosts × 6 metrics × {plan.steps:,} steps at 5 min, "
        f"{len(plan.anomalies)} labelled anomalies, workload change in month(s) "
        f"{', '.join(str(e.month) for e in plan.drift_events) or 'none'} → {fleet_dir}"
    )
    out.rule("2. ingest into the feature store")
    store = state(ctx).store()
    series = len(plan.hosts) * 6
    with progress() as bar:
        task = bar.add_task("ingesting series", total=series)
        report = ingest_corpus(store, fleet_dir, tick=lambda: bar.advance(task))
    print_report(report)
    out.rule("3. the store")
    print_summary(store.summary(), dict(Counter(w.kind for w in store.windows())))
    summary = store.summary()
    if summary.first is None or summary.last is None:
        return
    out.rule(f"4. train {DEFAULT_DETECTOR} on {DEMO_METRIC} through the training pipeline")
    with out.status(
        "running the training pipeline (query → preprocess → train → evaluate → register)"
    ):
        done = run_training(
            settings, detector=DEFAULT_DETECTOR, metrics=[DEMO_METRIC], start=summary.first,
            end=summary.last + timedelta(minutes=5), model=DEMO_MODEL, promote=True,
        )  # fmt: skip
    print_training(done)
    out.rule("5. the registry")
    with open_registry(settings, background_delivery=False) as registry:
        version = registry.resolve(f"{DEMO_MODEL}@production")
    table = Table(title=f"{version.ref} ({', '.join(version.aliases)})", show_header=False)
    table.add_row("detector", version.detector)
    table.add_row("features", ", ".join(version.features))
    table.add_row("training data", f"{version.data_start:%Y-%m-%d} → {version.data_end:%Y-%m-%d}")
    table.add_row("pipeline run", version.pipeline_run or "-")
    table.add_row("held-out figures", ", ".join(f"{k}={v:.3g}" for k, v in version.metrics.items()))
    out.print(table)
