"""`perfml models`: register, list, show, tag, aliases, history, rollback, delete-version."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import fixtures.detectors  # noqa: F401  (registers the toy detectors)
from fixtures.points import make_points
from perfml.cli.app import main
from perfml.detectors import create


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def saved(tmp_path: Path) -> list[Path]:
    paths = []
    for window in (12, 24, 48):
        detector = create("toy_rolling_zscore", window=window)
        detector.fit(make_points(n=200).select(["ts", "value"]))
        path = tmp_path / f"model-{window}.zip"
        detector.save(path)
        paths.append(path)
    return paths


def test_the_registry_lifecycle_from_the_command_line(capsys, tmp_path, saved):
    ws = ["-w", str(tmp_path / "ws")]
    for path in saved:
        code, out, err = run(
            capsys, *ws, "models", "register", "cpu", str(path), "--tag", "t=1",
            "--feature", "cpu_util",
        )  # fmt: skip
        assert code == 0, err
    code, out, _ = run(capsys, *ws, "models", "show", "cpu:2", "--json")
    shown = json.loads(out)
    assert (shown["version"], shown["detector"], shown["params"]["window"]) == (
        2,
        "toy_rolling_zscore",
        24,
    )
    assert shown["tags"] == {"t": "1"}
    for version in ("1", "2", "3"):
        assert run(capsys, *ws, "models", "set-alias", "cpu", "production", version)[0] == 0
    code, out, _ = run(capsys, *ws, "models", "rollback", "cpu", "--reason", "bad")
    assert code == 0
    code, out, _ = run(capsys, *ws, "models", "list", "--json")
    assert json.loads(out)[0]["aliases"] == {"production": 2}
    code, out, _ = run(capsys, *ws, "models", "history", "cpu", "--json")
    moves = [(m["action"], m["from_version"], m["to_version"]) for m in json.loads(out)]
    assert moves == [("set", None, 1), ("set", 1, 2), ("set", 2, 3), ("rollback", 3, 2)]
    code, _, err = run(capsys, *ws, "models", "delete-version", "cpu:2")
    assert code == 1
    assert "cpu:2 is held by alias(es) cpu@production" in err
    assert run(capsys, *ws, "models", "delete-version", "cpu:3")[0] == 0
    assert run(capsys, *ws, "models", "tag", "cpu:1", "stage", "old")[0] == 0
    code, out, _ = run(capsys, *ws, "models", "show", "cpu")
    assert "toy_rolling_zscore" in out
    assert run(capsys, *ws, "models", "show", "cpu:1", "--json")[1].count('"stage": "old"') == 1
    code, out, _ = run(capsys, *ws, "models", "history", "cpu")
    assert "rollback" in out
    assert "bad" in out


def test_bad_references_and_files_are_one_line_errors(capsys, tmp_path, saved):
    ws = ["-w", str(tmp_path / "ws")]
    (tmp_path / "ws").mkdir()
    code, _, err = run(capsys, *ws, "models", "show", "../etc@production")
    assert code == 2
    assert "model name '../etc' is not valid" in err
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    code, _, err = run(capsys, *ws, "models", "register", "cpu", str(junk), "--feature", "cpu_util")
    assert code == 1
    assert "not a saved perfml detector" in err
    code, _, err = run(capsys, *ws, "models", "show", "cpu@production")
    assert code == 1
    assert err.strip() == "perfml: error: model 'cpu' not found"


def test_promotion_is_gated_on_the_same_recent_labelled_window(capsys, tmp_path, saved):
    ws = ["-w", str(tmp_path / "ws")]
    fleet = tmp_path / "fleet"
    run(capsys, "generate", "fleet", "--hosts", "6", "--months", "1", "--seed", "3",
        "--out", str(fleet))  # fmt: skip
    assert run(capsys, *ws, "ingest", "nab", str(fleet))[0] == 0
    kinds = Counter(
        a["metric"] for a in json.loads((fleet / "fleet.json").read_text())["anomalies"]
    )
    metric = kinds.most_common(1)[0][0]
    for path in saved:
        register = [*ws, "models", "register", "cpu", str(path), "--feature", metric]
        assert run(capsys, *register)[0] == 0
    code, out, err = run(capsys, *ws, "models", "promote", "cpu:1", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["gate"]["baseline"] is None
    assert set(first["gate"]["candidate"]) >= {"nab_standard", "event_f1", "point_f1"}
    code, out, err = run(capsys, *ws, "models", "promote", "cpu:2", "--json")
    if code == 0:
        move = json.loads(out)
        assert move["gate"]["passed"]
        assert move["gate"]["candidate"]["nab_standard"] >= move["gate"]["baseline"]["nab_standard"]
    else:  # the refusal names the metric, both figures and the margin or floor
        assert "more than the margin" in err or "misses the minimum" in err
        assert "candidate" in err
    code, out, _ = run(capsys, *ws, "models", "promote", "cpu:3", "--force", "--reason", "x",
                       "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["forced"] is True
