"""`perfml score` backfills a window into the score log; `perfml anomalies list|show` names
the host, the metrics and the time of each incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from anomalies.test_live import DAY, FLEET, TICKS, TRAIN_END, points_of, train
from perfml.cli.app import main
from perfml.config import Settings
from perfml.workspace import Workspace


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_backfill_then_list_and_show_the_incidents(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    with Workspace(Settings(workspace=folder)) as workspace:
        workspace.store().write(points_of(int(TICKS[0]), int(TICKS[-1]) + 1))
        train(workspace.registry(background_delivery=False), TRAIN_END)
    ws = ["-w", str(folder)]
    code, out, err = run(capsys, *ws, "anomalies", "list")
    assert code == 0, err
    assert "no scores yet" in out
    assert "perfml score" in out
    code, out, err = run(capsys, *ws, "score", "cpu@production")
    assert code == 0, err
    points = 5 * (len(TICKS) - 35 * 288)
    assert f"scored {points:,} points of cpu_util on 5 hosts with cpu:1" in out
    code, out, err = run(capsys, *ws, "anomalies", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["fleet_size"] == 5
    incidents = listed["incidents"]
    assert incidents
    assert all(i["entity"] in FLEET.host_names for i in incidents)
    starts = [i["start"] for i in incidents]
    assert starts == sorted(starts, reverse=True)
    first = incidents[-1]
    assert first["metrics"][0]["metric"] == "cpu_util"
    assert first["start"] <= first["peak"] <= first["end"]
    host = first["entity"]
    code, out, err = run(capsys, *ws, "anomalies", "list", "--entity", host, "--json")
    assert {i["entity"] for i in json.loads(out)["incidents"]} == {host}
    code, out, err = run(capsys, *ws, "anomalies", "show", first["id"], "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["entity"], shown["id"]) == (host, first["id"])
    assert len(shown["points"]) == first["points"]
    threshold = first["metrics"][0]["threshold"]
    assert all(p["score"] >= threshold for p in shown["points"])
    code, out, err = run(capsys, *ws, "anomalies", "show", first["id"])
    assert code == 0
    assert host in out
    assert "cpu_util" in out
    late = datetime.fromtimestamp((int(TICKS[-1]) + DAY) / 1000, UTC).isoformat()
    code, out, err = run(capsys, *ws, "anomalies", "show", first["id"], "--start", late)
    assert code == 2
    assert f"no incident {first['id']!r} between" in err


def seed_scores(workspace: Workspace, rows: list[tuple[str, int, float]]) -> None:
    """(entity, minute, score) points of ``cpu_util`` scored by ``cpu`` at threshold 0.5, each
    host's series labelled with its group."""
    minute = 60_000
    workspace.scores().append_batch(
        "cpu",
        pa.table({
            "model": ["cpu"] * len(rows),
            "version": [1] * len(rows),
            "metric": ["cpu_util"] * len(rows),
            "entity": [e for e, _, _ in rows],
            "ts": [t * minute for _, t, _ in rows],
            "value": [1.0] * len(rows),
            "score": [s for _, _, s in rows],
            "threshold": [0.5] * len(rows),
            "written": [1] * len(rows),
        }),
    )  # fmt: skip
    hosts = sorted({e for e, _, _ in rows})
    workspace.store().write(
        pa.table({
            "metric": ["cpu_util"] * len(hosts),
            "entity": hosts,
            "ts": pa.array([0] * len(hosts), pa.timestamp("ms", tz="UTC")),
            "value": [1.0] * len(hosts),
        }),
        labels={("cpu_util", h): {"group": h.split("-")[0]} for h in hosts},
    )  # fmt: skip


def test_verdicts_label_the_incidents_and_leave_the_review_queue(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    with Workspace(Settings(workspace=folder)) as workspace:
        seed_scores(workspace, [("web-1", 0, 0.9), ("web-2", 0, 0.55), ("db-1", 0, 0.7)])
    ws = ["-w", str(folder)]
    code, out, err = run(capsys, *ws, "anomalies", "review", "--json")
    assert code == 0, err
    queue = json.loads(out)["queue"]
    assert [i["entity"] for i in queue] == ["web-2", "db-1", "web-1"]  # nearest the threshold
    by_host = {i["entity"]: i["id"] for i in queue}
    code, out, err = run(capsys, *ws, "anomalies", "verdict", by_host["web-2"], "true",
                         "--by", "ana", "--note", "a runaway job")  # fmt: skip
    assert code == 0, err
    assert "true anomaly (by ana)" in out
    code, out, err = run(capsys, *ws, "anomalies", "verdict", by_host["db-1"], "expected",
                         "--by", "bo", "--silence", "2h", "--json")  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out)["silences"]) == 1
    code, out, err = run(capsys, *ws, "anomalies", "verdict", by_host["web-2"], "false")
    assert code == 2
    assert "already has a verdict: true_anomaly by ana" in err
    code, out, err = run(capsys, *ws, "anomalies", "verdict", "i-nothing", "true")
    assert code == 2
    assert "no incident 'i-nothing'" in err
    code, out, err = run(capsys, *ws, "anomalies", "review", "--json")
    assert [i["entity"] for i in json.loads(out)["queue"]] == ["web-1"]
    with Workspace(Settings(workspace=folder)) as workspace:
        (window,) = workspace.store().windows()
        assert (window.metric, window.entity, window.kind) == ("cpu_util", "web-2", "operator")
        (silence,) = workspace.alerts().silences()
        assert silence.created_by == "bo"
        verdict = workspace.verdicts().get(by_host["web-2"])
        assert verdict is not None
        assert (verdict.by, verdict.note) == ("ana", "a runaway job")
    code, out, err = run(capsys, *ws, "anomalies", "coverage", "--min-labels", "1", "--json")
    assert code == 0, err
    rows = {(r["metric"], r["group"]): r for r in json.loads(out)["coverage"]}
    assert rows[("cpu_util", "web")]["anomaly_windows"] == 1
    assert rows[("cpu_util", "web")]["enough"] is True
    assert rows[("cpu_util", "db")]["expected_changes"] == 1
    assert rows[("cpu_util", "db")]["enough"] is False
    code, out, err = run(capsys, *ws, "anomalies", "coverage")
    assert code == 0, err
    assert "too few" in out
