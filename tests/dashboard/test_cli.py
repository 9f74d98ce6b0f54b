"""The dashboard's commands, on a Typer app of their own (``perfml`` registers them)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from perfml.cli.app import main
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


def test_dashboard_on_a_port_in_use_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = main(["--workspace", str(tmp_path), "dashboard", "--port", str(port)])
    captured = capsys.readouterr()
    assert code == 1
    (line,) = captured.err.strip().splitlines()
    assert f"127.0.0.1:{port}" in line
    assert "in use" in line
    assert "--port" in line
    assert "dashboard on" not in captured.out + captured.err
