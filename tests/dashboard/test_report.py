"""The self-contained HTML report: one file, nothing loaded from elsewhere, its data inline and
holding every section, the drift chart's traces and threshold, the same bytes for the same
inputs. Over real sources (see :mod:`dashboard.seeding`) and real drift records."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dashboard import report_seeding, seeding
from perfml.cli.report import report as report_command
from perfml.cli.state import CliState
from perfml.controller.decisions import Action, Decision
from perfml.dashboard.data import DashboardSources, TimeRange
from perfml.dashboard.errors import BadRangeError
from perfml.dashboard.report import DATA_ELEMENT_ID, json_for_script, write_report
from perfml.promql.series import MemorySeries

Json = dict[str, Any]
SECTIONS = ["summary", "drift", "jobs", "inference", "anomalies", "alerts", "models"]
GENERATED = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardSources]:
    seeded = seeding.seeded_sources(tmp_path_factory.mktemp("report"), int(time.time() * 1000))
    yield seeded
    seeding.close(seeded)


@pytest.fixture(scope="module")
def window() -> TimeRange:
    # The registry's moves are stamped when seeded: end the range a minute later.
    return TimeRange.last("3h", int(time.time() * 1000) + 60_000, points=180)


@pytest.fixture(scope="module")
def written(
    sources: DashboardSources, window: TimeRange, tmp_path_factory: pytest.TempPathFactory
) -> str:
    records = report_seeding.drift_records()
    path = tmp_path_factory.mktemp("out") / "nested" / "report.html"
    done = write_report(
        path,
        sources,
        window,
        drift=records,
        decisions=report_seeding.decisions(records),
        title="fleet report",
        generated_at=GENERATED,
    )
    assert done == path
    return path.read_text(encoding="utf-8")


def inline_data(text: str) -> Json:
    found = re.search(
        rf'<script type="application/json" id="{DATA_ELEMENT_ID}">(.*?)</script>', text, re.S
    )
    assert found is not None
    data: Json = json.loads(found.group(1))
    return data


def panels(data: Json) -> dict[str, Json]:
    return {p["id"]: p for section in data["sections"] for p in section["panels"]}


class Links(HTMLParser):
    """Every tag, and every attribute that loads or points at something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data"):
                self.links.append((tag, name, value or ""))


def test_the_report_is_one_file_that_loads_nothing_else(written: str) -> None:
    parser = Links()
    parser.feed(written)
    # Only in-page anchors and the empty inline icon (which stops a browser asking for one).
    for tag, name, value in parser.links:
        assert value.startswith("#") or value == "data:,", (tag, name, value)
    assert parser.tags.count("link") == 1  # the icon
    assert parser.tags.count("script") == 3  # the data, Plotly, the drawing script
    assert parser.tags.count("style") == 1
    style = re.search(r"<style>(.*?)</style>", written, re.S)
    assert style is not None
    assert re.search(r"@import|url\(", style.group(1)) is None
    # Plotly is inline: its bundle's text is in the file, a few megabytes.
    assert "plotly.js" in written.lower()
    assert len(written) > 3_000_000


def test_the_data_holds_every_section(written: str) -> None:
    data = inline_data(written)
    assert data["title"] == "fleet report"
    assert data["generated"] == "2026-07-01 12:00:00Z"
    assert [s["id"] for s in data["sections"]] == SECTIONS
    found = panels(data)
    assert list(found) == [
        "summary-facts",
        "summary-promotions",
        "summary-decisions",
        "drift-chart",
        "drift-table",
        "jobs-job-states",
        "inference-latency",
        "anomalies-heatmap",
        "anomalies-incidents",
        "anomalies-months",
        "alerts-timeline",
        "alerts-alert-history",
        "models-alias-timeline",
        "models-versions",
        "models-aliases",
        "models-audit-log",
    ]
    for panel in found.values():
        assert panel["error"] is None, panel
        assert not panel["empty"], panel
        assert f'id="body-{panel["id"]}"' in written
    latency = found["inference-latency"]
    assert [s["name"] for s in latency["series"]] == ["p50", "p95", "p99"]
    assert [lane["name"] for lane in found["jobs-job-states"]["lanes"]][-1] == "train-r2-train"
    assert found["jobs-job-states"]["lanes"][-1]["state"] == "Failed"


def test_the_drift_chart_has_a_trace_per_feature_and_the_threshold(written: str) -> None:
    found = panels(inline_data(written))
    chart, table = found["drift-chart"], found["drift-table"]
    assert chart["kind"] == "timeseries"
    assert chart["xaxis"]["type"] == "category"
    assert chart["threshold"] == {"value": 0.1, "label": "threshold 0.1"}
    assert [s["name"] for s in chart["series"]] == list(report_seeding.FEATURES)
    records = {(r.feature, r.window): r.value for r in report_seeding.drift_records()}
    for series in chart["series"]:
        assert series["x"] == list(report_seeding.MONTHS)
        assert series["v"] == [records[(series["name"], m)] for m in report_seeding.MONTHS]
    # The latency's workload changed in month 4: its cells from then on are flagged.
    assert table["columns"] == ["feature", *report_seeding.MONTHS]
    latency_row = list(report_seeding.FEATURES).index("request_latency_ms")
    assert table["flagged"] == [[latency_row, 2], [latency_row, 3], [latency_row, 4]]
    assert table["rows"][latency_row][2].endswith(" !")
    assert not table["rows"][0][2].endswith(" !")


def test_the_summary_shows_promotions_and_decisions_with_reasons(written: str) -> None:
    found = panels(inline_data(written))
    promotions = found["summary-promotions"]["rows"]
    assert [(row[1], row[4], row[5], row[7]) for row in promotions] == [
        ("cpu-anomaly", "", "v1", "first model"),
        ("cpu-anomaly", "v1", "v2", "better f1"),
    ]
    decisions = found["summary-decisions"]
    assert [row[2] for row in decisions["rows"]] == list(report_seeding.MONTHS)
    promoted = decisions["rows"][1]
    assert promoted[3] == "promoted"
    assert promoted[5] == "request-latency:2"
    assert "passed the gate: promoted" in promoted[7]
    facts = dict(found["summary-facts"]["rows"])
    assert facts["promotions"] == "2"
    assert facts["controller decisions"] == "4 (no_drift 3, promoted 1)"
    assert facts["training jobs"] == "5 (1 failed)"
    # Promotions are marked on the time axes of the jobs, latency and aliases.
    for panel in ("jobs-job-states", "inference-latency", "models-alias-timeline"):
        assert [m["label"] for m in found[panel]["markers"]] == [
            "cpu-anomaly v1 → production",
            "cpu-anomaly v2 → production",
        ]


def test_alerts_timeline_has_pending_firing_and_resolved_spans(written: str) -> None:
    lanes = {
        lane["name"]: lane for lane in panels(inline_data(written))["alerts-timeline"]["lanes"]
    }
    job = lanes["JobFailed {job_name=train-r2-train, severity=warning}"]
    assert [s["state"] for s in job["segments"]] == ["firing", "resolved"]
    assert job["segments"][0]["end"] == job["segments"][1]["start"]
    slow = lanes["HighInferenceLatency {predictor_name=cpu-anomaly, severity=warning}"]
    assert [s["state"] for s in slow["segments"]] == ["pending", "firing"]


def test_aliases_timeline_shows_each_version_held(written: str) -> None:
    timeline = panels(inline_data(written))["models-alias-timeline"]
    lanes = {lane["name"]: lane["segments"] for lane in timeline["lanes"]}
    assert [s["state"] for s in lanes["cpu-anomaly@production"]] == ["v1", "v2"]
    assert [s["state"] for s in lanes["cpu-anomaly@staging"]] == ["v2"]
    assert timeline["states"] == ["v1", "v2"]


def test_the_same_inputs_give_the_same_file(
    sources: DashboardSources, window: TimeRange, written: str, tmp_path: Path
) -> None:
    records = report_seeding.drift_records()
    again = write_report(
        tmp_path / "again.html",
        sources,
        window,
        drift=records,
        decisions=report_seeding.decisions(records),
        title="fleet report",
        generated_at=GENERATED,
    )
    assert again.read_text(encoding="utf-8") == written
    later = write_report(
        tmp_path / "later.html",
        sources,
        window,
        drift=records,
        decisions=report_seeding.decisions(records),
        title="fleet report",
    ).read_text(encoding="utf-8")
    assert later != written
    assert re.sub(r"generated( |\":\")[0-9:Z -]+", "", later) == re.sub(
        r"generated( |\":\")[0-9:Z -]+", "", written
    )
    # Written atomically: no temporary file is left beside them.
    assert {p.name for p in tmp_path.iterdir()} == {"again.html", "later.html"}


def test_drift_from_the_decisions_when_no_records_are_given(
    sources: DashboardSources, window: TimeRange, tmp_path: Path
) -> None:
    records = report_seeding.drift_records()
    decided = report_seeding.decisions(records)
    text = write_report(tmp_path / "r.html", sources, window, decisions=decided).read_text()
    chart = panels(inline_data(text))["drift-chart"]
    assert "controller's decisions" in chart["note"]
    latency = next(s for s in chart["series"] if s["name"] == "request_latency_ms")
    assert latency["x"] == list(report_seeding.MONTHS)
    assert [v > 0.1 for v in latency["v"]] == [False, True, False, False]


def test_drift_recorded_in_the_metrics_store_without_records_or_decisions(
    sources: DashboardSources, tmp_path: Path
) -> None:
    window = TimeRange.last("400d", int(time.time() * 1000), points=60)
    text = write_report(tmp_path / "r.html", sources, window).read_text()
    found = panels(inline_data(text))
    assert "drift-chart" not in found
    recorded = found["drift-feature-drift"]
    assert sorted(s["name"] for s in recorded["series"]) == sorted(seeding.FEATURES)
    assert recorded["threshold"]["value"] == 0.1


def test_nothing_in_the_data_can_end_its_script_element(
    sources: DashboardSources, window: TimeRange, tmp_path: Path
) -> None:
    sneaky = "</script><script>alert(1)</script><!--"
    decided = [
        Decision.new(
            "cpu", "2026-04", Action.FAILED, at_ms=1, reasons=[sneaky], figures={"drift": {}}
        )
    ]
    text = write_report(tmp_path / "r.html", sources, window, decisions=decided, title=sneaky)
    html_text = text.read_text()
    assert html_text.lower().count("</script") == 3
    data = inline_data(html_text)
    assert data["title"] == sneaky
    assert panels(data)["summary-decisions"]["rows"][0][7] == sneaky
    assert "&lt;/script&gt;" in html_text  # the title, as HTML text
    assert json.loads(json_for_script({"a": "&<>"})) == {"a": "&<>"}


def test_a_workspace_with_nothing_yet_gives_a_report_of_messages(tmp_path: Path) -> None:
    window = TimeRange.last("1h", 1_790_000_000_000)
    text = write_report(tmp_path / "r.html", DashboardSources(series=MemorySeries()), window)
    found = panels(inline_data(text.read_text()))
    facts = dict(found.pop("summary-facts")["rows"])
    assert facts["controller decisions"] == "0"
    assert facts["training jobs"] == "0 (0 failed)"
    for panel in found.values():
        assert panel["error"] is None, panel
        assert panel["empty"], panel
        assert panel["message"], panel


def test_the_command_writes_the_workspace_report(tmp_path: Path) -> None:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = CliState(workspace=tmp_path / "ws")

    (tmp_path / "ws").mkdir()
    app.command("report")(report_command)
    result = CliRunner().invoke(app, ["report", "--since", "2h"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "ws" / "report.html"
    assert str(written) in result.output.replace("\n", "")
    data = inline_data(written.read_text())
    assert [s["id"] for s in data["sections"]] == SECTIONS
    assert data["range"]["end"] - data["range"]["start"] == 2 * 3_600_000

    chosen = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(app, ["report", "-o", str(chosen)])
    assert result.exit_code == 0, result.output
    assert chosen.is_file()

    result = CliRunner().invoke(app, ["report", "--since", "soon"])
    assert result.exit_code != 0
    assert isinstance(result.exception, BadRangeError)
    assert "'soon'" in str(result.exception)
