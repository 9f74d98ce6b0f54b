"""The dashboard's commands, on a Typer app of their own (``perfml`` registers them)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from perfml.cli.dashboard import export_grafana_command
from perfml.config import Settings
from perfml.dashboard.data import TimeRange, page_data
from perfml.dashboard.panels import default_dashboard
from perfml.workspace import Workspace


def test_export_grafana_writes_one_dashboard_per_page(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("grafana")(export_grafana_command)
    app.command("other")(lambda: None)  # two commands: "grafana" stays a subcommand
    result = CliRunner().invoke(app, ["grafana", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"perfml-{slug}.json" for slug in default_dashboard().slugs)
    assert str(tmp_path / "out" / "perfml-jobs.json") in result.output
    model = json.loads((tmp_path / "out" / "perfml-drift.json").read_text())
    assert model["uid"] == "perfml-drift"


def test_a_new_workspace_opens_and_shows_no_data_yet(tmp_path: Path) -> None:
    with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
        sources = workspace.dashboard_sources()
        for page in default_dashboard().pages:
            answer = page_data(page, sources, TimeRange.last(page.default_range))
            for panel in answer["panels"]:
                assert panel["error"] is None, panel
                assert panel["empty"], panel
