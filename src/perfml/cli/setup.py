"""``perfml init`` and ``perfml demo``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from perfml.cli.render import print_report, print_summary
from perfml.cli.state import out, progress, state
from perfml.config import CONFIG_NAME, DEFAULT_CONFIG
from perfml.errors import UsageError
from perfml.ingest import ingest_corpus
from perfml.sources.fleet import generate_fleet, write_fleet


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
    """Generate a fleet, ingest it into the workspace's feature store, and summarise it."""
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
