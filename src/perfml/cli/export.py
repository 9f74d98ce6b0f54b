"""``perfml export``: perfml's configuration for the systems that run it at scale.

One command per target; ``perfml export prometheus -o DIR`` writes the alert rules, the
Prometheus configuration that scrapes perfml and evaluates them, and the Alertmanager
configuration that routes the alerts (:mod:`perfml.alerting.prometheus_config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from perfml.alerting.prometheus_config import export_prometheus
from perfml.cli import dashboard as dashboard_cli
from perfml.cli.state import out, state
from perfml.config import Settings

if TYPE_CHECKING:
    from perfml.deploy import DeployValues

app = typer.Typer(
    help="Export perfml's configuration for Prometheus, Alertmanager and other systems.",
    no_args_is_help=True,
)


@app.command("prometheus")
def prometheus(
    ctx: typer.Context,
    output: Path = typer.Option(..., "--output", "-o", help="folder to write the files into"),
    with_tests: bool = typer.Option(
        False, "--with-tests", help="also write rules.test.yml for `promtool test rules`"
    ),
) -> None:
    """Write rules.yml, prometheus.yml and alertmanager.yml from perfml.yaml's monitoring."""
    written = export_prometheus(state(ctx).settings, output, unit_tests=with_tests)
    for path in written:
        out.print(f"wrote {path}", highlight=False)


app.command("grafana")(dashboard_cli.export_grafana_command)


@app.command("k8s")
def k8s(
    ctx: typer.Context,
    output: Path = typer.Option(..., "--output", "-o", help="folder to write the manifests into"),
    values_file: Path | None = typer.Option(
        None, "--values", help="YAML of deploy values (image, namespace, replicas...)"
    ),
) -> None:
    """Write perfml's Kubernetes objects, one file each, and a kustomization.yaml."""
    from perfml.deploy import export_k8s

    settings, values = _deploy_values(ctx, values_file)
    written = export_k8s(settings, output, values)
    out.print(
        f"wrote {len(written)} files to {output} (kubectl apply -k {output})", highlight=False
    )


@app.command("carvel")
def carvel(
    ctx: typer.Context,
    output: Path = typer.Option(..., "--output", "-o", help="folder to write the bundles into"),
    values_file: Path | None = typer.Option(
        None, "--values", help="YAML of deploy values (the image the bundle names...)"
    ),
) -> None:
    """Write the Carvel package (ytt templates, schema, Package, repository, examples)."""
    from perfml.deploy.carvel import export_carvel

    settings, values = _deploy_values(ctx, values_file)
    written = export_carvel(settings, output, values)
    out.print(
        f"wrote {len(written)} files to {output} (imgpkg push -b REGISTRY/perfml-package:TAG "
        f"-f {output}/package)",
        highlight=False,
    )


def _deploy_values(ctx: typer.Context, values_file: Path | None) -> tuple[Settings, DeployValues]:
    """The settings and the deploy values: perfml.yaml's, with the values file's over them."""
    from perfml.deploy import DeployValues, load_values

    settings = state(ctx).settings
    base = DeployValues.for_settings(settings)
    return settings, load_values(values_file, base) if values_file is not None else base
