"""``perfml models``: the registry's versions, aliases, promotions and audit log."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from perfml import detectors
from perfml.cli.options import parse_pairs
from perfml.cli.state import out, state
from perfml.evaluation.labelled_window import GateDataError
from perfml.registry import ModelRegistry
from perfml.registry.events import EVENTS
from perfml.registry.names import parse_ref
from perfml.registry.records import AliasMove, ModelVersion
from perfml.timeparse import parse_instant

app = typer.Typer(help="The model registry: versions, aliases, promotion.", no_args_is_help=True)

JSON_HELP = "print JSON instead of a table"


def _registry(ctx: typer.Context) -> ModelRegistry:
    """The workspace's registry; the events of what a command changed are delivered when it
    ends (:meth:`perfml.workspace.Workspace.close`)."""
    return state(ctx).parts().registry(background_delivery=False)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@app.command("list")
def list_models(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)
) -> None:
    """Every model, its latest version and its aliases."""
    found = _registry(ctx).models()
    if as_json:
        _emit([m.to_json() for m in found])
        return
    table = Table("model", "latest", "aliases", "created", "tags")
    for m in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
        tags = ", ".join(f"{k}={v}" for k, v in sorted(m.tags.items()))
        table.add_row(m.name, str(m.latest_version or "-"), aliases, _time(m.created_at), tags)
    out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME:VERSION"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A version's metadata and lineage; for a bare NAME, every version."""
    registry = _registry(ctx)
    parsed = parse_ref(ref)
    if parsed.alias is None and parsed.version is None:
        versions = registry.versions(parsed.model)
        if as_json:
            _emit([v.to_json() for v in versions])
            return
        table = Table("version", "detector", "aliases", "created", "digest", "metrics")
        for v in versions:
            metrics = ", ".join(f"{k}={x:.4g}" for k, x in sorted(v.metrics.items()))
            table.add_row(
                str(v.version), v.detector, ", ".join(v.aliases), _time(v.created_at),
                v.digest[:12], metrics,
            )  # fmt: skip
        out.print(table)
        return
    version = registry.resolve(parsed)
    if as_json:
        _emit(version.to_json())
        return
    out.print(_version_table(version, registry.artifacts.where(version.artifact_uri)))


def _entities(entities: tuple[str, ...] | None, shown: int = 8) -> str:
    if entities is None:
        return "- (not recorded)"
    head = ", ".join(entities[:shown])
    more = len(entities) - shown
    return f"{len(entities)}: {head}" + (f", … ({more} more)" if more > 0 else "")


def _version_table(v: ModelVersion, artifact: str) -> Table:
    table = Table(title=f"{v.model}:{v.version}", show_header=False)
    rows = {
        "detector": v.detector,
        "params": json.dumps(v.params, sort_keys=True),
        "aliases": ", ".join(v.aliases) or "-",
        "digest": f"sha256:{v.digest}",
        "artifact": artifact,
        "size": f"{v.size_bytes:,} bytes",
        "training data": f"{_time(v.data_start)} → {_time(v.data_end)}",
        "features": ", ".join(v.features) or "-",
        "entities": _entities(v.entities),
        "pipeline run": v.pipeline_run or "-",
        "metrics": ", ".join(f"{k}={x:.4g}" for k, x in sorted(v.metrics.items())) or "-",
        "tags": ", ".join(f"{k}={x}" for k, x in sorted(v.tags.items())) or "-",
        "perfml": v.perfml_version,
        "created": _time(v.created_at),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


@app.command("register")
def register(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name"),
    artifact: Path = typer.Argument(..., help="a detector saved by perfml"),
    feature: list[str] = typer.Option(
        ..., "--feature", help="store metric the model scores (repeatable)"
    ),
    metric: list[str] | None = typer.Option(None, "--metric", help="KEY=VALUE (repeatable)"),
    tag: list[str] | None = typer.Option(None, "--tag", help="KEY=VALUE (repeatable)"),
    pipeline_run: str | None = typer.Option(None, "--pipeline-run", help="run that made it"),
    data_start: str | None = typer.Option(None, "--data-start", help="training data start"),
    data_end: str | None = typer.Option(None, "--data-end", help="training data end"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Register a saved detector as a new version (its kind and parameters are read from it)."""
    detector = detectors.load(artifact)
    metrics = {}
    for key, value in parse_pairs(metric, "--metric", as_json=False).items():
        try:
            metrics[key] = float(value)
        except ValueError:
            raise typer.BadParameter(
                f"{key}={value!r} is not a number", param_hint="--metric"
            ) from None
    state(ctx).creates = True  # registering is a first use as good as ingesting
    version = _registry(ctx).register(
        model,
        artifact,
        detector=detector.name,
        params=detector.params.model_dump(mode="json"),
        data_start=None if data_start is None else parse_instant(data_start, "--data-start"),
        data_end=None if data_end is None else parse_instant(data_end, "--data-end"),
        features=feature,
        pipeline_run=pipeline_run,
        metrics=metrics,
        tags=parse_pairs(tag, "--tag", as_json=False),
    )
    if as_json:
        _emit(version.to_json())
    else:
        out.print(f"registered {version.model}:{version.version} (sha256:{version.digest[:12]})")


@app.command("promote")
def promote(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION to promote"),
    alias: str = typer.Option("production", "--alias", help="alias to move"),
    force: bool = typer.Option(False, "--force", help="promote even if the gate refuses"),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit log)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Move an alias to a version if it clears the gate against the current holder."""
    parsed = parse_ref(ref)
    if parsed.version is None:
        raise typer.BadParameter("give NAME:VERSION", param_hint="REF")
    parts = state(ctx).parts()
    registry = _registry(ctx)
    try:  # the window: recent data the candidate has not learnt
        evaluator = parts.gate_evaluator(registry, registry.get(ref))
        promotion = registry.promote(
            parsed.model, parsed.version, alias, thresholds=parts.gate_thresholds(),
            evaluator=evaluator, force=force, reason=reason,
        )  # fmt: skip
    except GateDataError:
        if not force:
            raise
        # nothing to judge on: forced through without figures, and recorded as forced
        promotion = registry.promote(parsed.model, parsed.version, alias, force=True, reason=reason)
    if as_json:
        _emit(promotion.move.to_json())
        return
    _print_moves([promotion.move])


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name"),
    alias: str = typer.Option("production", "--alias", help="alias to move back"),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit log)"),
) -> None:
    """Move an alias back to the version it held before."""
    _print_moves([_registry(ctx).rollback(model, alias, reason)])


@app.command("set-alias")
def set_alias(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name"),
    alias: str = typer.Argument(..., help="alias"),
    version: int = typer.Argument(..., min=1, help="version"),
    reason: str = typer.Option("", "--reason", help="why (kept in the audit log)"),
) -> None:
    """Point an alias at a version without the gate (e.g. staging)."""
    _print_moves([_registry(ctx).set_alias(model, alias, version, reason)])


@app.command("history")
def history(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name"),
    alias: str | None = typer.Option(None, "--alias", help="only this alias"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The audit log: every alias move, who, when, from, to, why, and the gate's figures."""
    moves = _registry(ctx).history(model, alias)
    if as_json:
        _emit([m.to_json() for m in moves])
        return
    _print_moves(moves)


def _print_moves(moves: list[AliasMove]) -> None:
    table = Table("when", "alias", "action", "from", "to", "who", "forced", "why", "gate")
    for m in moves:
        gate = "-"
        if m.gate is not None:
            gate = "passed" if m.gate["passed"] else "; ".join(m.gate["failures"])
        table.add_row(
            _time(m.at), m.alias, m.action, str(m.from_version or "-"), str(m.to_version),
            m.actor, "yes" if m.forced else "", m.reason, gate,
        )  # fmt: skip
    out.print(table)


@app.command("tag")
def tag(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME (the model) or NAME:VERSION"),
    key: str = typer.Argument(..., help="tag name"),
    value: str | None = typer.Argument(None, help="tag value (omit with --delete)"),
    delete: bool = typer.Option(False, "--delete", help="remove the tag"),
) -> None:
    """Set or remove a tag on a model or a version."""
    registry = _registry(ctx)
    if delete:
        registry.delete_tag(ref, key)
    elif value is None:
        raise typer.BadParameter("give a VALUE, or --delete", param_hint="VALUE")
    else:
        registry.set_tag(ref, key, value)


@app.command("delete-version")
def delete_version(ctx: typer.Context, ref: str = typer.Argument(..., help="NAME:VERSION")) -> None:
    """Delete a version and its artifact (refused while an alias holds it)."""
    parsed = parse_ref(ref)
    if parsed.version is None:
        raise typer.BadParameter("give NAME:VERSION", param_hint="REF")
    deleted = _registry(ctx).delete_version(parsed)
    out.print(f"deleted {deleted.ref}")


@app.command("webhook")
def webhook(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="where to POST events"),
    secret_env: str = typer.Option(
        ..., "--secret-env", help="environment variable holding the shared HMAC secret"
    ),
    event: list[str] | None = typer.Option(None, "--event", help=f"one of {', '.join(EVENTS)}"),
) -> None:
    """Register a webhook that receives signed JSON events."""
    secret = os.environ.get(secret_env)
    if not secret:
        raise typer.BadParameter(f"${secret_env} is empty", param_hint="--secret-env")
    hook = _registry(ctx).add_webhook(url, secret, event or list(EVENTS))
    out.print(f"webhook {hook} → {url}")


@app.command("deliver")
def deliver(ctx: typer.Context) -> None:
    """Deliver the webhook events that are due (retries included) now."""
    out.print(f"delivered {_registry(ctx).deliver_events()} event(s)")
