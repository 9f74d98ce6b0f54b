"""``perfml evaluate``: NAB corpora and fleets, tables, the JSON document and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.detectors import RollingZScore, RunningZScore
from perfml.cli.app import main
from perfml.detectors import DEFAULT_DETECTOR, available
from perfml.evaluation.nab import PROFILES
from perfml.sources.fleet import generate_fleet, write_fleet

NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
NUMENTA = NAB / "results" / "numenta"
FILE_FIELDS = {"score", "tp", "fp", "fn", "tn"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_document_shape(document: dict, detector: str, files: set[str]) -> None:
    assert set(document) == {"detector", "profiles"}
    assert document["detector"] == detector
    assert set(document["profiles"]) == set(PROFILES)
    for figures in document["profiles"].values():
        assert set(figures) == {"score", "threshold", "raw", "files", "metrics"}
        assert set(figures["files"]) == files
        for one in figures["files"].values():
            assert set(one) == FILE_FIELDS
            assert all(isinstance(one[c], int) for c in ("tp", "fp", "fn", "tn"))
        assert {"point_f1", "event_f1", "pa_f1", "pa_k_f1", "mean_delay_seconds"} <= set(
            figures["metrics"]
        )


@pytest.fixture(scope="module")
def nab_files() -> set[str]:
    return {f"realAWSCloudwatch/{p.name}" for p in (NAB / "data" / "realAWSCloudwatch").iterdir()}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fleet")
    write_fleet(generate_fleet(hosts=2, months=1, seed=1), folder)
    return folder


def test_published_results_reproduce_73_4_and_the_json_has_nabs_shape(capsys, tmp_path, nab_files):
    target = tmp_path / "numenta.json"
    args = ("evaluate", "nab", "--corpus", str(NAB), "--results", str(NUMENTA))
    code, out, err = run(capsys, *args, "--json", str(target))
    assert code == 0, err
    document = json.loads(target.read_text())
    assert_document_shape(document, "numenta", nab_files)
    assert round(document["profiles"]["standard"]["score"], 1) == 73.4
    assert "73.4" in out
    assert "numenta on realAWSCloudwatch, profile standard" in out

    code, out, err = run(capsys, *args, "--threshold", "0.5421876907348634", "--json", str(target))
    assert code == 0, err
    document = json.loads(target.read_text())
    assert round(document["profiles"]["standard"]["score"], 1) == 73.4
    assert {p["threshold"] for p in document["profiles"].values()} == {0.5421876907348634}
    standard = document["profiles"]["standard"]
    assert standard["raw"] == pytest.approx(sum(f["score"] for f in standard["files"].values()))


def test_the_table_shows_the_chosen_profile(capsys):
    args = ("evaluate", "nab", "--corpus", str(NAB), "--results", str(NUMENTA))
    code, out, _ = run(capsys, *args, "--profile", "low_fp")
    assert code == 0
    assert "profile reward_low_FP_rate" in out
    code, _, err = run(capsys, *args, "--profile", "lenient")
    assert code == 2
    assert err.count("\n") == 1
    assert "cost profile 'lenient' is not one of standard" in err


def test_a_detector_runs_on_the_corpus_with_its_parameters(capsys, tmp_path, nab_files):
    target = tmp_path / "toy.json"
    code, out, err = run(
        capsys,
        "evaluate",
        "nab",
        "--corpus",
        str(NAB),
        "--detector",
        RollingZScore.name,
        "--param",
        "window=24",
        "--param",
        "z_max=5",
        "--json",
        str(target),
    )
    assert code == 0, err
    document = json.loads(target.read_text())
    assert_document_shape(document, RollingZScore.name, nab_files)
    assert f"{RollingZScore.name} scored 17 series, 67,740 rows" in out
    for name in ("standard", "low_fp", "low_fn"):
        assert name in out
    # other parameters, other scores: the parameters reached the detector
    code, _, _ = run(
        capsys, "evaluate", "nab", "--corpus", str(NAB), "--detector", RollingZScore.name,
        "--json", str(tmp_path / "default.json"),
    )  # fmt: skip
    default = json.loads((tmp_path / "default.json").read_text())
    assert default["profiles"]["standard"]["raw"] != document["profiles"]["standard"]["raw"]


def test_without_a_detector_the_default_one_runs(capsys):
    code, out, err = run(capsys, "evaluate", "nab", "--corpus", str(NAB))
    if DEFAULT_DETECTOR in available():
        assert code == 0, err
        assert f"{DEFAULT_DETECTOR} scored 17 series" in out
    else:  # the detectors are written alongside this; until then the name is what fails
        assert code == 2
        assert f"detector {DEFAULT_DETECTOR!r} is not one of" in err


def test_a_fleet_is_evaluated_per_series_or_per_host(capsys, tmp_path, fleet_dir):
    target = tmp_path / "fleet.json"
    code, out, err = run(
        capsys, "evaluate", "fleet", "--data", str(fleet_dir), "--detector", RollingZScore.name,
        "--json", str(target),
    )  # fmt: skip
    assert code == 0, err
    series = {p.relative_to(fleet_dir / "data").as_posix() for p in fleet_dir.glob("data/*/*")}
    assert len(series) == 12
    assert_document_shape(json.loads(target.read_text()), RollingZScore.name, series)
    assert "request_latency_ms" in out  # the table sums the series by metric

    code, out, err = run(
        capsys, "evaluate", "fleet", "--data", str(fleet_dir), "--detector", RunningZScore.name,
        "--json", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert_document_shape(
        json.loads(target.read_text()), RunningZScore.name, {"host-0000", "host-0001"}
    )
    assert "scored 2 series" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nab", "--corpus", "/no/such/corpus"], "Invalid value for '--corpus'"),
        (["nab", "--corpus", str(NAB), "--detector", "nope"], "unknown detector 'nope' (known: "),
        (["nab", "--corpus", str(NAB), "--param", "window"], "'window' is not KEY=VALUE"),
        (["nab", "--corpus", str(NAB), "--param", "=3"], "'=3' is not KEY=VALUE"),
        (
            ["nab", "--corpus", str(NAB), "--detector", RollingZScore.name, "--param", "w=3"],
            "unknown parameter w",
        ),
        (
            ["nab", "--corpus", str(NAB), "--detector", RollingZScore.name, "--param", "window=1"],
            "parameter window = 1",
        ),
        (
            ["nab", "--corpus", str(NAB), "--results", str(NUMENTA), "--param", "window=3"],
            "parameters are for a detector that runs",
        ),
        (
            ["nab", "--corpus", str(NAB), "--results", str(NAB / "results")],
            "several detectors (null, numenta): name one",
        ),
        (["fleet", "--data", "/no/such/fleet"], "Invalid value for '--data'"),
        (["fleet", "--data", str(NAB), "--detector", "nope"], "unknown detector 'nope' (known: "),
    ],
)
def test_mistakes_exit_2_with_one_line(capsys, args, message):
    code, out, err = run(capsys, "evaluate", *args)
    assert code == 2, (out, err)
    assert err.count("\n") == 1
    assert err.startswith("perfml: error: ")
    assert message in err
