"""How commands show results: Rich tables on stdout."""

from __future__ import annotations

from rich.table import Table

from perfml.cli.state import out
from perfml.featurestore import IngestReport, StoreSummary


def print_report(report: IngestReport) -> None:
    table = Table(title="ingest", show_header=False)
    table.add_row("points received", f"{report.points_received:,}")
    table.add_row("points added", f"{report.points_added:,}")
    table.add_row("already stored (updated or repeated)", f"{report.points_replaced_or_repeated:,}")
    table.add_row("non-finite dropped", f"{report.dropped_nonfinite:,}")
    table.add_row("series", f"{report.series:,}")
    table.add_row(
        "partitions appended / merged", f"{report.partitions_appended} / {report.partitions_merged}"
    )
    table.add_row("labelled windows added", f"{report.windows_added:,}")
    table.add_row("store version", str(report.manifest_version))
    out.print(table)


def print_summary(summary: StoreSummary, kinds: dict[str, int]) -> None:
    table = Table(title="feature store", show_header=False)
    table.add_row("series", f"{summary.series:,}")
    table.add_row("points", f"{summary.points:,}")
    table.add_row("metrics", ", ".join(summary.metrics) or "-")
    table.add_row("entities", f"{summary.entities:,}")
    table.add_row("months", ", ".join(summary.months) or "-")
    span = (
        "-"
        if summary.first is None or summary.last is None
        else (f"{summary.first:%Y-%m-%d %H:%M} → {summary.last:%Y-%m-%d %H:%M} UTC")
    )
    table.add_row("time span", span)
    by_kind = ", ".join(f"{k or 'unlabelled kind'} {n}" for k, n in sorted(kinds.items()))
    table.add_row(
        "labelled anomalies", f"{summary.windows:,}" + (f" ({by_kind})" if by_kind else "")
    )
    table.add_row("files", f"{summary.files:,} ({summary.bytes_on_disk / 1e6:,.1f} MB)")
    out.print(table)
