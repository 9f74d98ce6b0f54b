"""The command line: exit codes, one-line errors, --debug, init, generate, ingest, store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfml.cli.app import main

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_usage_error_exits_2_with_one_line(capsys):
    code, _, err = run(capsys, "ingest", "file", "--no-such-option")
    assert code == 2
    assert err.count("\n") == 1
    assert "No such option: --no-such-option" in err


def test_failure_exits_1_with_one_line_and_traceback_only_under_debug(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("metric,entity,ts,value\ncpu,h,2024-01-01,oops\n")
    code, _, err = run(capsys, "-w", str(tmp_path / "ws"), "ingest", "file", str(bad))
    assert code == 1
    assert err.strip().splitlines() == [
        f"perfml: error: {bad} line 2: value 'oops' is not a number; nothing was written"
    ]
    code, _, err = run(capsys, "--debug", "-w", str(tmp_path / "ws"), "ingest", "file", str(bad))
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "FileFormatError" in err


def test_bad_config_is_a_failure_naming_the_file(capsys, tmp_path):
    config = tmp_path / "perfml.yaml"
    config.write_text("featurestore:\n  bogus: 1\n")
    code, _, err = run(capsys, "-c", str(config), "store", "summary")
    assert code == 1
    assert f"{config}: unknown key featurestore.bogus (value 1)" in err


def test_init_writes_a_loadable_file_and_refuses_to_overwrite(capsys, tmp_path):
    target = tmp_path / "perfml.yaml"
    assert run(capsys, "init", str(target))[0] == 0
    assert run(capsys, "-c", str(target), "store", "summary")[0] == 0
    code, _, err = run(capsys, "init", str(target))
    assert code == 2
    assert "exists already" in err
    assert run(capsys, "init", str(target), "--force")[0] == 0


def test_generate_ingest_and_summarise_a_fleet(capsys, tmp_path):
    fleet = tmp_path / "fleet"
    ws = str(tmp_path / "ws")
    code, out, _ = run(
        capsys,
        "generate",
        "fleet",
        "--hosts",
        "2",
        "--months",
        "2",
        "--seed",
        "5",
        "--out",
        str(fleet),
    )
    assert code == 0, out
    meta = json.loads((fleet / "fleet.json").read_text())
    assert meta["parameters"]["seed"] == 5
    code, out, err = run(capsys, "-w", ws, "ingest", "nab", str(fleet))
    assert code == 0, err
    code, out, _ = run(capsys, "-w", ws, "store", "summary")
    assert code == 0
    assert "2024-01, 2024-02" in out
    assert f"{len(meta['anomalies'])}" in out
    code, again, _ = run(capsys, "-w", ws, "ingest", "nab", str(fleet))
    assert code == 0
    assert "│ points added                         │ 0" in again


def test_ingest_the_real_nab_corpus_and_read_it_back(capsys, tmp_path):
    ws = str(tmp_path / "ws")
    code, out, err = run(capsys, "-w", ws, "ingest", "nab", str(DATA))
    assert code == 0, err
    assert "67,740" in out
    out_csv = tmp_path / "one.csv"
    code, _, err = run(
        capsys,
        "-w",
        ws,
        "store",
        "read",
        "--entity",
        "ec2_cpu_utilization_24ae8d",
        "--out",
        str(out_csv),
    )
    assert code == 0, err
    source = (DATA / "data/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv").read_text()
    assert len(out_csv.read_text().splitlines()) == len(source.splitlines())


def test_installed_entry_point_reads_the_config_it_is_given(tmp_path):
    """The console script the README's commands use (the demo itself: tests/test_demo.py)."""
    config = tmp_path / "perfml.yaml"
    config.write_text("demo:\n  hosts: 2\n  months: 2\n")
    done = subprocess.run(
        [Path(sys.executable).parent / "perfml", "-c", str(config), "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert "demo.months = 2: Input should be greater than or equal to 3" in done.stderr
    (tmp_path / "ws").mkdir()
    done = subprocess.run(
        [Path(sys.executable).parent / "perfml", "-w", str(tmp_path / "ws"), "controller",
         "history"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "controller decisions" in done.stdout


@pytest.mark.parametrize(
    "command",
    [["models", "list"], ["store", "summary"], ["runs", "list"], ["alerts", "list"]],
    ids=" ".join,
)
def test_a_command_that_reads_refuses_a_workspace_that_is_not_there(capsys, tmp_path, command):
    typo = tmp_path / "wrokspace"
    code, _out, err = run(capsys, "-w", str(typo), *command)
    assert code == 2
    assert err.strip().splitlines() == [
        f"perfml: error: no workspace at {typo} (check -w/--workspace or workspace: in "
        "perfml.yaml; perfml init creates one)"
    ]
    assert not typo.exists()


def test_a_command_that_creates_still_creates_the_workspace(capsys, tmp_path):
    bad = tmp_path / "points.csv"
    bad.write_text("metric,entity,ts,value\ncpu,h,2024-01-01,1\n")
    code, _, err = run(capsys, "-w", str(tmp_path / "new"), "ingest", "file", str(bad))
    assert code == 0, err
    assert (tmp_path / "new").is_dir()
    assert run(capsys, "-w", str(tmp_path / "new"), "store", "summary")[0] == 0
