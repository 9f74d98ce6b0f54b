"""``perfml export prometheus -o DIR``: the files, the output, a bad rule as a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.models import TyperInfo

from perfml.cli import app as cli
from perfml.cli import export


@pytest.fixture
def run(monkeypatch, capsys):
    """Run the command line; the ``export`` group is added to it if it is not there yet."""
    if not any(group.name == "export" for group in cli.app.registered_groups):
        groups = [*cli.app.registered_groups, TyperInfo(export.app, name="export")]
        monkeypatch.setattr(cli.app, "registered_groups", groups)

    def invoke(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def test_export_prometheus_writes_the_files_and_says_where(run, tmp_path):
    config = tmp_path / "perfml.yaml"
    config.write_text("monitoring:\n  evaluation_interval: 1m\n")
    out_dir = tmp_path / "prometheus"
    code, out, _ = run("-c", str(config), "export", "prometheus", "-o", str(out_dir))
    assert code == 0
    names = ["rules.yml", "prometheus.yml", "alertmanager.yml"]
    assert out.splitlines() == [f"wrote {out_dir / name}" for name in names]
    assert "interval: 1m" in (out_dir / "rules.yml").read_text()
    code, out, _ = run(
        "-c", str(config), "export", "prometheus", "-o", str(out_dir), "--with-tests"
    )
    assert code == 0
    assert (out_dir / "rules.test.yml").is_file()


def test_a_bad_rule_is_a_usage_error_on_one_line(run, tmp_path):
    config = tmp_path / "perfml.yaml"
    config.write_text("monitoring:\n  rules:\n    - {name: Mine, kind: Nope}\n")
    code, _, err = run("-c", str(config), "export", "prometheus", "-o", str(tmp_path / "out"))
    assert code == 2
    assert err.count("\n") == 1
    assert "monitoring.rules[0].kind: unknown rule kind 'Nope'" in err
    assert not Path(tmp_path / "out").exists()


def test_export_is_a_group_that_lists_its_targets(run):
    code, out, _ = run("export", "--help")
    assert code == 0
    assert "prometheus" in out
