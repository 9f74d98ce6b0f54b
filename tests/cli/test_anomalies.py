"""`perfml score` backfills a window into the score log; `perfml anomalies list|show` names
the host, the metrics and the time of each incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

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
