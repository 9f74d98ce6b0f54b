"""How a host of a generated fleet behaves: its profile, its normal day, its anomalies.

:mod:`perfml.sources.fleet` plans a fleet (which hosts, which anomalies when, which workload
changes); this module turns one host's plan into numbers. Every function draws from the
generator it is given, in a fixed order, so the same seed gives the same values.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

METRICS: dict[str, str] = {
    "cpu_util": "percent",
    "mem_util": "percent",
    "disk_iops": "operations per second",
    "net_rx_bytes": "bytes per second",
    "net_tx_bytes": "bytes per second",
    "request_latency_ms": "milliseconds",
}
"""Every metric a host reports, with its unit, in the order tables list them."""

PERCENTAGES = frozenset({"cpu_util", "mem_util"})
DECIMALS = {"cpu_util": 3, "mem_util": 3, "disk_iops": 2, "net_rx_bytes": 0, "net_tx_bytes": 0}
_MONTH_MS = 30 * 86_400_000


class Drift(Protocol):
    """What :func:`normal_behaviour` needs of a workload change (``fleet.DriftEvent``)."""

    @property
    def start(self) -> datetime: ...
    @property
    def hosts(self) -> tuple[str, ...]: ...
    @property
    def load_factor(self) -> float: ...
    @property
    def latency_factor(self) -> float: ...
    @property
    def peak_shift_hours(self) -> float: ...


class AnomalyKind(StrEnum):
    """What goes wrong on a host, as the label records it."""

    SPIKE = "spike"
    """One to three samples far above the host's normal range (a burst, a retry storm)."""
    LEVEL_SHIFT = "level_shift"
    """The metric steps up or down for hours, then back (a bad config pushed and reverted)."""
    MEMORY_LEAK = "memory_leak"
    """``mem_util`` climbs for hours to days towards 90-97%, then drops at a restart."""
    FLATLINE = "flatline"
    """A stuck exporter repeats its last value for hours."""
    LATENCY_STORM = "latency_storm"
    """Latency several times normal for half an hour to two hours, often with CPU."""


@dataclass(frozen=True)
class HostProfile:
    """What makes one host unlike the others; every value was drawn from the fleet's seed."""

    name: str
    index: int
    utc_offset_hours: int
    opens_at: float
    closes_at: float
    night_level: float
    weekend_factor: float
    base_load: float
    idle_cpu: float
    cpu_noise: float
    load_noise: float
    monthly_growth: float
    mem_base: float
    latency_ms: float
    rx_peak_bytes: float
    tx_ratio: float
    iops_peak: float
    backup_hour: float


@dataclass(frozen=True)
class Incident:
    """One planned anomaly of a host, in samples from the start of its series."""

    kind: AnomalyKind
    metrics: tuple[str, ...]
    first: int
    length: int
    strength: float
    upward: bool


def draw_profile(name: str, index: int, rng: np.random.Generator) -> HostProfile:
    def uniform(low: float, high: float) -> float:
        return round(float(rng.uniform(low, high)), 4)

    offsets = [-8, -5, 0, 1, 8, 9]
    return HostProfile(
        name=name,
        index=index,
        utc_offset_hours=int(rng.choice(offsets, p=[0.2, 0.25, 0.15, 0.2, 0.1, 0.1])),
        opens_at=uniform(7.0, 9.5),
        closes_at=uniform(17.0, 20.0),
        night_level=uniform(0.2, 0.4),
        weekend_factor=uniform(0.35, 0.6),
        base_load=uniform(0.2, 0.45),
        idle_cpu=uniform(0.02, 0.06),
        cpu_noise=uniform(0.8, 2.5),
        load_noise=uniform(0.04, 0.1),
        monthly_growth=uniform(0.0, 0.03),
        mem_base=uniform(35.0, 60.0),
        latency_ms=uniform(4.0, 40.0),
        rx_peak_bytes=round(float(np.exp(rng.uniform(np.log(2e5), np.log(5e7)))), 1),
        tx_ratio=uniform(2.0, 6.0),
        iops_peak=uniform(150.0, 3000.0),
        backup_hour=uniform(1.0, 4.0),
    )


def normal_behaviour(
    host: HostProfile,
    drift: Sequence[Drift],
    ticks: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> dict[str, Floats]:
    """The host's metrics without anomalies: seasonal load, its consequences, noise, drift."""
    steps = ticks.size
    load_factor, latency_factor, shift = np.ones(steps), np.ones(steps), np.zeros(steps)
    for event in drift:
        if host.name in event.hosts:
            since = int(np.searchsorted(ticks, round(event.start.timestamp() * 1000)))
            load_factor[since:] *= event.load_factor
            latency_factor[since:] *= event.latency_factor
            shift[since:] += event.peak_shift_hours
    local_hours = ticks / 3_600_000.0 + host.utc_offset_hours
    hour = np.mod(local_hours - shift, 24.0)
    day = np.floor_divide(local_hours, 24.0).astype(np.int64)
    weekend = np.mod(day + 3, 7) >= 5  # 1970-01-01, day 0, was a Thursday (weekday 3)
    open_hours = _sigmoid((hour - host.opens_at) / 0.8) * _sigmoid((host.closes_at - hour) / 1.2)
    busy = np.where(weekend, host.weekend_factor, 1.0) * open_hours
    shape = host.night_level + (1.0 - host.night_level) * busy
    day_factor = 1.0 + 0.05 * rng.standard_normal(int(day[-1] - day[0]) + 1)
    growth = 1.0 + host.monthly_growth * (ticks - ticks[0]) / _MONTH_MS
    wander = 1.0 + host.load_noise * _smooth(rng.standard_normal(steps), 12)
    traffic = np.maximum(load_factor * shape * day_factor[day - day[0]] * growth * wander, 0.0)
    demand = host.idle_cpu + host.base_load * traffic
    cpu = 100.0 * demand / (1.0 + demand**8) ** 0.125  # busy time saturates smoothly below 100%
    cpu += host.cpu_noise * rng.standard_normal(steps)
    busy_fraction = np.clip(cpu / 100.0, 0.0, 0.95)
    queueing = 0.5 + 0.5 / (1.0 - busy_fraction)  # service time plus an M/M/1-like wait
    contention = 1.0 + 0.25 * traffic  # busier shared dependencies (databases, caches)
    jitter = np.exp(0.06 * rng.standard_normal(steps))
    latency = host.latency_ms * latency_factor * contention * queueing * jitter
    rx = host.rx_peak_bytes * (0.03 + traffic * (1.0 + 0.05 * rng.standard_normal(steps)))
    tx_noise = 1.0 + 0.05 * rng.standard_normal(steps)
    tx = host.rx_peak_bytes * host.tx_ratio * (0.02 + traffic * tx_noise)
    backup = np.abs(np.mod(local_hours, 24.0) - host.backup_hour - 0.25) < 0.25
    iops = host.iops_peak * (0.05 + traffic * (1.0 + 0.08 * rng.standard_normal(steps)))
    iops += np.where(backup, 0.6 * host.iops_peak, 0.0)
    memory = host.mem_base + 8.0 * traffic + 1.5 * _smooth(rng.standard_normal(steps), 72)
    memory += 0.3 * rng.standard_normal(steps)
    return {
        "cpu_util": cpu,
        "mem_util": memory,
        "disk_iops": iops,
        "net_rx_bytes": rx,
        "net_tx_bytes": tx,
        "request_latency_ms": latency,
    }


def inject(
    values: dict[str, Floats],
    incident: Incident,
    typical: dict[str, float],
    rng: np.random.Generator,
) -> None:
    """Apply one anomaly to the host's arrays in place (``typical``: each metric's 99th pct)."""
    rows = slice(incident.first, incident.first + incident.length)
    strength = incident.strength
    for metric in incident.metrics:
        series = values[metric]
        if incident.kind is AnomalyKind.SPIKE:
            if metric in PERCENTAGES:
                peak = typical[metric] + (100.0 - typical[metric]) * (0.7 + 0.3 * strength)
            else:
                peak = typical[metric] * (2.5 + 2.5 * strength)
            series[rows] = peak * rng.uniform(0.85, 1.0, incident.length)
        elif incident.kind is AnomalyKind.LEVEL_SHIFT:
            if incident.upward and metric in PERCENTAGES:
                series[rows] += 15.0 + 20.0 * strength
            elif incident.upward:
                series[rows] *= 1.8 + 1.2 * strength
            else:
                series[rows] *= 0.25 + 0.25 * strength
        elif incident.kind is AnomalyKind.MEMORY_LEAK:
            target = 88.0 + 9.0 * strength
            climb = np.linspace(0.0, 1.0, incident.length) ** 1.5
            series[rows] += (target - series[incident.first]) * climb
        elif incident.kind is AnomalyKind.FLATLINE:
            series[rows] = series[incident.first]
        else:  # a latency storm, and the CPU burnt by the requests piling up
            ramp = np.arange(1, incident.length + 1)
            envelope = np.minimum(1.0, np.minimum(ramp, ramp[::-1]) / 3.0)
            if metric == "cpu_util":
                series[rows] += (20.0 + 20.0 * strength) * envelope
            else:
                series[rows] *= 1.0 + (2.5 + 4.5 * strength) * envelope


def _smooth(noise: Floats, steps: int) -> Floats:
    """Noise correlated over about ``steps`` samples, still of unit standard deviation."""
    kernel = np.exp(-np.arange(3 * steps) / steps)
    kernel /= np.sqrt(np.sum(kernel**2))
    smoothed: Floats = np.convolve(noise, kernel, mode="full")[: noise.size]
    return smoothed


def _sigmoid(x: Floats) -> Floats:
    result: Floats = 1.0 / (1.0 + np.exp(-x))
    return result
