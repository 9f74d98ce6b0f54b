"""A generator of realistic, labelled performance metrics for a fleet of hosts.

Public corpora are small and their labels few, so perfml tests and benchmarks its detectors,
drift monitors and retraining loops on fleets it makes up. The fleet is made up the way an SRE
would recognise it: every host serves requests with a business-hours daily curve and quieter
weekends in its users' time zone; CPU, network and disk follow the request load; latency climbs
like a queue (``1 / (1 - u)``) as CPU nears saturation; each host has its own size, load, phase
and noise. On top of that come labelled anomalies (:class:`AnomalyKind`) and unlabelled workload
changes (:class:`DriftEvent`): a detector should flag the former and a drift monitor the latter.

Everything is drawn from ``seed``: host ``i`` gets its own random streams, so the same arguments
give the same values, and :func:`write_fleet` the same bytes. Only the small plan (profiles,
anomalies, drift) lives in memory; points are made host by host (:meth:`Fleet.iter_hosts`), so a
thousand hosts stream through in bounded memory.

>>> fleet = generate_fleet(hosts=2, months=1, seed=7)
>>> fleet.host_names, fleet.steps, fleet.points
(('host-0000', 'host-0001'), 8928, 107136)
>>> first = next(fleet.iter_hosts())
>>> first.num_rows, sorted(set(first.column("metric").to_pylist())) == sorted(METRICS)
(53568, True)
>>> cpu = fleet.host_values("host-0001")["cpu_util"]
>>> bool(0.0 <= cpu.min() and cpu.max() <= 100.0)
True
"""

import calendar
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from perfml.atomic import atomic_output
from perfml.featurestore.schema import LONG_SCHEMA, TIMESTAMP_TYPE
from perfml.sources.errors import FleetConfigError
from perfml.sources.fleet_behaviour import (
    DECIMALS,
    METRICS,
    PERCENTAGES,
    AnomalyKind,
    Floats,
    HostProfile,
    Incident,
    draw_profile,
    inject,
    normal_behaviour,
)
from perfml.sources.nab import Window, write_series, write_windows

__all__ = [
    "DEFAULT_START",
    "DEFAULT_STEP",
    "METRICS",
    "WINDOW_PAD_STEPS",
    "Anomaly",
    "AnomalyKind",
    "DriftEvent",
    "Fleet",
    "HostProfile",
    "generate_fleet",
    "write_fleet",
]

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_STEP = timedelta(minutes=5)

WINDOW_PAD_STEPS = 6
"""Steps of margin a label window adds on each side of an anomaly (30 minutes at 5 minutes).

NAB sizes windows at 10% of a file divided by its anomaly count, i.e. days; that rewards a
detector for firing long before anything happened. perfml's windows are the anomaly itself plus
this margin, enough for a detector that needs a few points to be sure and for the effect of a
restart, tight enough that a detection inside one is a detection of the anomaly.
"""

_HOUR = timedelta(hours=1)
_SPIKING = ["cpu_util", "disk_iops", "net_rx_bytes", "net_tx_bytes", "request_latency_ms"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLAN, _NOISE = 0, 1
_DRIFT_STREAM = 0x6472_6966  # "drif": keeps the drift draws apart from every host's streams


@dataclass(frozen=True)
class Anomaly:
    """One labelled anomaly: its first and last affected samples (the label window is wider)."""

    host: str
    metric: str
    kind: AnomalyKind
    start: datetime
    end: datetime


@dataclass(frozen=True)
class DriftEvent:
    """A workload change from ``start`` on: not an anomaly, the new normal of ``hosts``."""

    month: int
    start: datetime
    hosts: tuple[str, ...]
    description: str
    load_factor: float
    latency_factor: float
    peak_shift_hours: float


@dataclass(frozen=True)
class Fleet:
    """A generated fleet: its plan in memory, its points made on demand, host by host."""

    seed: int
    months: int
    start: datetime
    end: datetime
    step: timedelta
    hosts: tuple[HostProfile, ...]
    drift_events: tuple[DriftEvent, ...]
    anomalies: tuple[Anomaly, ...]
    _incidents: dict[str, tuple[Incident, ...]] = field(repr=False, compare=False)

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(host.name for host in self.hosts)

    @property
    def steps(self) -> int:
        """Samples per series."""
        return -(-(self.end - self.start) // self.step)

    @property
    def points(self) -> int:
        return len(self.hosts) * len(METRICS) * self.steps

    def timestamps(self) -> npt.NDArray[np.int64]:
        """Milliseconds since the epoch of every sample, shared by all series."""
        start_ms = round(self.start.timestamp() * 1000)
        step_ms = self.step // timedelta(milliseconds=1)
        return start_ms + step_ms * np.arange(self.steps, dtype=np.int64)

    def host_values(self, host: str, *, anomalies: bool = True) -> dict[str, Floats]:
        """Every metric of one host as arrays aligned on :meth:`timestamps`.

        With ``anomalies=False`` the same series without the injected anomalies (drift stays:
        it is the new normal), so one can see what each anomaly changed and that nothing
        outside its window did.
        """
        profile = next((p for p in self.hosts if p.name == host), None)
        if profile is None:
            known = f"{self.host_names[0]} to {self.host_names[-1]}"
            raise FleetConfigError("host", host, f"is not a host of this fleet ({known})")
        return self._generate(profile, self.timestamps(), anomalies=anomalies)

    def iter_hosts(self) -> Iterator[pa.Table]:
        """One :data:`~perfml.featurestore.schema.LONG_SCHEMA` table per host, in host order."""
        ticks = self.timestamps()
        ts = pa.array(np.tile(ticks, len(METRICS)), TIMESTAMP_TYPE)
        metric_codes = pa.array(np.repeat(np.arange(len(METRICS), dtype=np.int32), ticks.size))
        metric = pa.DictionaryArray.from_arrays(metric_codes, pa.array(list(METRICS)))
        metric_column = metric.cast(pa.string())
        zeros = pa.array(np.zeros(len(ts), dtype=np.int32))
        for profile in self.hosts:
            values = self._generate(profile, ticks)
            entity = pa.DictionaryArray.from_arrays(zeros, pa.array([profile.name]))
            yield pa.Table.from_arrays(
                [
                    metric_column,
                    entity.cast(pa.string()),
                    ts,
                    np.concatenate(list(values.values())),
                ],
                schema=LONG_SCHEMA,
            )

    def windows(self) -> dict[str, list[Window]]:
        """Label windows in NAB's form, keyed ``<metric>/<host>.csv``; every series is listed."""
        ticks = self.timestamps()
        found: dict[str, list[Window]] = {
            f"{metric}/{host}.csv": [] for host in self.host_names for metric in METRICS
        }
        for host, incidents in self._incidents.items():
            for incident in incidents:
                first = max(incident.first - WINDOW_PAD_STEPS, 0)
                last = min(incident.first + incident.length - 1 + WINDOW_PAD_STEPS, ticks.size - 1)
                for metric in incident.metrics:
                    found[f"{metric}/{host}.csv"].append(
                        (_instant(ticks[first]), _instant(ticks[last]))
                    )
        return {key: sorted(entries) for key, entries in found.items()}

    def metadata(self) -> dict[str, Any]:
        """What ``fleet.json`` holds: the parameters, the hosts, the drift and every anomaly."""
        return {
            "generator": "perfml.sources.fleet",
            "parameters": {
                "hosts": len(self.hosts),
                "months": self.months,
                "seed": self.seed,
                "start": _iso(self.start),
                "end": _iso(self.end),
                "step_seconds": self.step.total_seconds(),
                "drift_months": [event.month for event in self.drift_events],
                "window_pad_steps": WINDOW_PAD_STEPS,
            },
            "metrics": METRICS,
            "hosts": [asdict(host) for host in self.hosts],
            "drift_events": [
                {**asdict(event), "start": _iso(event.start), "hosts": list(event.hosts)}
                for event in self.drift_events
            ],
            "anomalies": [
                {**asdict(a), "kind": str(a.kind), "start": _iso(a.start), "end": _iso(a.end)}
                for a in self.anomalies
            ],
        }

    def _generate(
        self, profile: HostProfile, ticks: npt.NDArray[np.int64], *, anomalies: bool = True
    ) -> dict[str, Floats]:
        rng = np.random.default_rng([self.seed, profile.index, _NOISE])
        values = normal_behaviour(profile, self.drift_events, ticks, rng)
        typical = {metric: float(np.percentile(series, 99)) for metric, series in values.items()}
        # Injection draws from the stream after the normal behaviour has, so the series
        # without anomalies is the series with them, minus the anomalies.
        for incident in self._incidents[profile.name] if anomalies else ():
            inject(values, incident, typical, rng)
        for metric, series in values.items():
            upper = 100.0 if metric in PERCENTAGES else np.inf
            np.clip(series, 0.0, upper, out=series)
            np.round(series, DECIMALS.get(metric, 3), out=series)
        return values


def generate_fleet(
    hosts: int,
    months: int,
    seed: int,
    start: datetime = DEFAULT_START,
    drift_months: Sequence[int] | None = None,
    step: timedelta = DEFAULT_STEP,
) -> Fleet:
    """Plan a fleet of ``hosts`` hosts over ``months`` calendar months from ``start``.

    ``drift_months`` are 0-based months from ``start`` at which a workload change hits some of
    the hosts (30-70% of them, at least one), in ``1..months - 1``: a change at month 0 would
    be no change. By default there is one, at ``months // 2``, when there are at least two
    months. Naive ``start`` is taken as UTC. Nothing is generated yet: points are made when
    :meth:`Fleet.iter_hosts` or :meth:`Fleet.host_values` asks for them.
    """
    if hosts < 1:
        raise FleetConfigError("hosts", hosts, "must be at least 1")
    if months < 1:
        raise FleetConfigError("months", months, "must be at least 1")
    if seed < 0:
        raise FleetConfigError("seed", seed, "must be a non-negative integer")
    if step < timedelta(seconds=1) or step % timedelta(seconds=1):
        raise FleetConfigError("step", step, "must be a positive whole number of seconds")
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    if start.microsecond:
        raise FleetConfigError("start", start, "must be a whole second")
    if drift_months is None:
        drift_months = [months // 2] if months >= 2 else []
    if sorted(set(drift_months)) != list(drift_months):
        raise FleetConfigError("drift_months", drift_months, "must be increasing, without repeats")
    for month in drift_months:
        if not 1 <= month < months:
            raise FleetConfigError("drift_months", drift_months, f"must lie in 1..{months - 1}")
    end = _add_months(start, months)
    steps = -(-(end - start) // step)
    names = [f"host-{index:04d}" for index in range(hosts)]
    profiles: list[HostProfile] = []
    incidents: dict[str, tuple[Incident, ...]] = {}
    anomalies: list[Anomaly] = []
    for index, name in enumerate(names):
        rng = np.random.default_rng([seed, index, _PLAN])
        profiles.append(draw_profile(name, index, rng))
        incidents[name] = _plan_incidents(rng, steps, step)
        for incident in incidents[name]:
            first = start + incident.first * step
            last = start + (incident.first + incident.length - 1) * step
            anomalies.extend(Anomaly(name, m, incident.kind, first, last) for m in incident.metrics)
    drift = tuple(
        _draw_drift(np.random.default_rng([seed, _DRIFT_STREAM, number]), month, start, names)
        for number, month in enumerate(drift_months)
    )
    return Fleet(
        seed, months, start, end, step, tuple(profiles), drift, tuple(anomalies), incidents
    )


def write_fleet(fleet: Fleet, out_dir: str | Path, fmt: Literal["nab", "parquet"] = "nab") -> None:
    """Write a fleet's points, labels and plan under ``out_dir``, one host at a time.

    ``fmt="nab"`` writes a NAB corpus: ``data/<metric>/<host>.csv``; ``fmt="parquet"`` writes
    ``metrics.parquet`` in ``LONG_SCHEMA`` with one row group per host. Both add
    ``labels/combined_windows.json`` and ``fleet.json``. Every file is replaced atomically.
    """
    if fmt not in ("nab", "parquet"):
        raise FleetConfigError("fmt", fmt, "must be 'nab' or 'parquet'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "nab":
        ts = pa.array(fleet.timestamps(), TIMESTAMP_TYPE)
        for host in fleet.host_names:
            for metric, series in fleet.host_values(host).items():
                table = pa.table({"ts": ts, "value": series})
                write_series(out / "data" / metric / f"{host}.csv", table)
    else:
        with (
            atomic_output(out / "metrics.parquet") as temporary,
            pq.ParquetWriter(temporary, LONG_SCHEMA) as writer,
        ):
            for table in fleet.iter_hosts():
                writer.write_table(table, row_group_size=table.num_rows)
    write_windows(out, fleet.windows())
    with atomic_output(out / "fleet.json") as temporary:
        text = json.dumps(fleet.metadata(), indent=2, sort_keys=True, ensure_ascii=False)
        temporary.write_text(text + "\n", encoding="utf-8")


def _plan_incidents(rng: np.random.Generator, steps: int, step: timedelta) -> tuple[Incident, ...]:
    """Place anomalies one per equal segment of the series, so that windows never overlap.

    The first day (a tenth of a short series) stays quiet: models need some normal to start on.
    """
    quiet = min(timedelta(days=1) // step, steps // 10)
    usable = steps - quiet
    days = steps * step / timedelta(days=1)
    count = min(int(rng.poisson(max(days / 10.0, 1.0))), usable // (2 * WINDOW_PAD_STEPS + 36))
    if count == 0:
        return ()
    kinds = [AnomalyKind(kind) for kind in rng.permutation(list(AnomalyKind))]
    segment = usable // count
    room = segment - 2 * WINDOW_PAD_STEPS
    incidents = []
    for number in range(count):
        kind = kinds[number % len(kinds)]
        metrics: tuple[str, ...]
        if kind is AnomalyKind.SPIKE:
            metrics, hours = (str(rng.choice(_SPIKING)),), float(rng.integers(1, 4)) * step / _HOUR
        elif kind is AnomalyKind.MEMORY_LEAK:
            metrics, hours = ("mem_util",), float(rng.uniform(12.0, 72.0))
        elif kind is AnomalyKind.LATENCY_STORM:
            with_cpu = bool(rng.random() < 0.6)
            metrics = ("request_latency_ms", "cpu_util") if with_cpu else ("request_latency_ms",)
            hours = float(rng.uniform(0.5, 2.0))
        else:  # level shifts and flat lines last hours, on any metric
            metrics, hours = (str(rng.choice(list(METRICS))),), float(rng.uniform(2.0, 12.0))
        length = max(1, min(round(hours * _HOUR / step), room))
        offset = int(rng.integers(0, room - length + 1))
        first = quiet + number * segment + WINDOW_PAD_STEPS + offset
        strength, upward = float(rng.random()), bool(rng.random() < 0.6)
        incidents.append(Incident(kind, metrics, first, length, strength, upward))
    return tuple(incidents)


_DRIFT_SCENARIOS = (
    ("traffic of a retired cluster moved onto these hosts", (1.5, 1.8), (1.1, 1.3), 0.0),
    ("a release made every request heavier", (1.4, 1.7), (1.6, 2.2), 0.0),
    ("users from another region were routed here", (1.4, 1.7), (1.1, 1.3), 6.0),
    ("traffic drained to a new cluster", (0.4, 0.6), (0.7, 0.9), 0.0),
)


def _draw_drift(
    rng: np.random.Generator, month: int, start: datetime, names: list[str]
) -> DriftEvent:
    what, (load_low, load_high), (lat_low, lat_high), shift = _DRIFT_SCENARIOS[
        int(rng.integers(len(_DRIFT_SCENARIOS)))
    ]
    share = float(rng.uniform(0.3, 0.7))
    chosen = rng.choice(len(names), size=max(1, round(share * len(names))), replace=False)
    hosts = tuple(names[i] for i in sorted(chosen))
    load = round(float(rng.uniform(load_low, load_high)), 3)
    latency = round(float(rng.uniform(lat_low, lat_high)), 3)
    peak_shift = round(float(rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.3)) * shift, 2) + 0.0
    moved = f", daily peak moved {peak_shift:+} h" if shift else ""
    description = (
        f"workload change on {len(hosts)} of {len(names)} hosts: {what} "
        f"(load ×{load}, latency ×{latency}{moved})"
    )
    return DriftEvent(
        month, _add_months(start, month), hosts, description, load, latency, peak_shift
    )


def _add_months(instant: datetime, months: int) -> datetime:
    years, month = divmod(instant.month - 1 + months, 12)
    year = instant.year + years
    day = min(instant.day, calendar.monthrange(year, month + 1)[1])
    return instant.replace(year=year, month=month + 1, day=day)


def _instant(ms: np.int64) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
