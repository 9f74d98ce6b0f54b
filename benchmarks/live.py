"""Remote write end to end: samples accepted over HTTP, stored and scored live, against decoding.

Claims measured, at 10,000 and 100,000 series (10,000 with --quick):

- ``remote_write_samples_per_s``: samples accepted by the receiver over HTTP (uvicorn on
  loopback, ``POST /api/v1/write``, 204 once logged and fsynced), moved into the feature store
  by its flusher and scored by the live loop (``on_stored`` is ``LiveScorer.feed``), per
  second: from the first POST until the last sample is scored. Each round is one new sample
  per series, 5 minutes after the last, sent as Prometheus sends it: requests of
  ``max_samples_per_send`` = 2,000 samples (its default), 4 shards sending in parallel (as
  Prometheus does, up to ``max_shards``), each its own series in order; rounds back to back
  (a sender catching up).
  The model knows every series: per-series states of the default detector learnt on 4 hours
  of 5-minute points of a noisy daily cycle (past its warm-up; setup kept short);
- ``remote_write_vs_decode_floor``: that rate over the rate of ``decode_write`` alone (snappy
  and protobuf into points, the same bodies, one thread, no HTTP, no disk, no store, no
  scoring) measured in the same run;
- ``score_lag_p50_ms`` / ``score_lag_p99_ms``: per request, from its 204 (seen by the sender)
  to the moment its samples were scored, at the default ``flush_interval`` (2s); and at a
  short one (200ms). Measured on paced rounds (each sent after the last was scored, at a random
  moment of the flusher's cycle: the receiver keeping up, as it does when Prometheus sends a
  round per scrape), and also on the back-to-back rounds (a backlog: ``saturated``);
- where the time goes: busy seconds inside the landing's ``accept`` (Arrow IPC record, write,
  fsync), its flushes (of which the store's ``write`` and the live loop's ``feed``), the score
  log's writes, and decoding (the floor's cost per sample times the samples).

Each flush interval runs in a fresh workspace with the same model and request bodies. The
store holds no history: new points' key boxes lie after any older file's, so history would add
one file to the manifest and nothing to a write.

    python benchmarks/live.py [--quick] [--json FILE] [--series 10000,100000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from perfml.anomalies import LiveScorer
from perfml.config import RemoteWriteSettings, Settings
from perfml.detectors import DEFAULT_DETECTOR, create
from perfml.detectors.series import SeriesStates, fit_series
from perfml.registry.detector_versions import register_detector
from perfml.serving.server import AppServer
from perfml.sources.receiver import Receiver
from perfml.sources.remote_write import SeriesRouter, decode_write, encode_write
from perfml.workspace import Workspace

METRIC = "cpu_util"
MODEL = "cpu"
REF = f"{MODEL}@production"
STEP_MS = 300_000  # 5-minute points
START_MS = 1_741_564_800_000  # 2025-03-10T00:00Z: history and rounds in one month
HISTORY = 48  # 4 hours learnt before the rounds (the detector's warm-up is 10 points)
PER_REQUEST = 2_000  # Prometheus' queue_config.max_samples_per_send default
SHARDS = 4  # senders in parallel (Prometheus' max_shards is an upper bound; 4 here)
FLUSH_DEFAULT = RemoteWriteSettings().flush_interval
FLUSH_SHORT = "200ms"
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "perfml-bench/remote-write",
}
WAIT_S = 900.0


@dataclass(frozen=True)
class Plan:
    """How many rounds of one new sample per series each phase sends."""

    series: int
    throughput_rounds: int
    paced_rounds: int

    @property
    def rounds(self) -> int:
        return 1 + self.throughput_rounds + self.paced_rounds  # round 0 warms up

    @property
    def requests_per_round(self) -> int:
        return -(-self.series // PER_REQUEST)

    def throughput(self) -> range:
        return range(1, 1 + self.throughput_rounds)

    def paced(self) -> range:
        return range(1 + self.throughput_rounds, self.rounds)


def entity(i: int) -> str:
    return f"host-{i:06d}:9100"


def fleet_values(series: int, points: int, seed: int) -> np.ndarray:
    """``points`` five-minute values of ``series`` series, each a noisy daily cycle of its own
    level and amplitude, as rows (point × series)."""
    rng = np.random.default_rng(seed)
    level, swing = rng.uniform(10, 90, series), rng.uniform(1, 20, series)
    phase = rng.uniform(0, 2 * np.pi, series)
    steps = np.arange(points)[:, None]
    values = level + swing * np.sin(2 * np.pi * steps / 288 + phase)
    noise = rng.standard_normal((points, series), dtype=np.float32)
    out: np.ndarray = values + noise * (swing / 5)
    return out


def round_ts(r: int) -> int:
    """The time of round ``r``'s samples (round 0 follows the history)."""
    return START_MS + (HISTORY + r) * STEP_MS


def train(values: np.ndarray) -> SeriesStates:
    """Per-series states of the default detector, each learnt on its series' history."""
    series = values.shape[1]
    ts = START_MS + np.arange(HISTORY, dtype=np.int64) * STEP_MS
    frames = [(ts, values[:HISTORY, i]) for i in range(series)]
    return fit_series(create(DEFAULT_DETECTOR), [entity(i) for i in range(series)], frames)


def encode_rounds(values: np.ndarray, plan: Plan) -> list[list[bytes]]:
    """Each round's request bodies: consecutive blocks of ``PER_REQUEST`` series."""
    names = [entity(i) for i in range(plan.series)]
    labels = [{"__name__": METRIC, "instance": name, "job": "node"} for name in names]
    bodies = []
    for r in range(plan.rounds):
        stamp, row = round_ts(r), values[HISTORY + r].tolist()
        bodies.append(
            [
                encode_write(
                    (labels[i], [(stamp, row[i])])
                    for i in range(lo, min(lo + PER_REQUEST, plan.series))
                )
                for lo in range(0, plan.series, PER_REQUEST)
            ]
        )
    return bodies


def decode_floor(bodies: list[list[bytes]], plan: Plan, repeats: int) -> dict[str, float]:
    """``decode_write`` alone over the timed rounds' bodies, its router warmed by round 0."""
    router = SeriesRouter(entity_label="instance")
    for body in bodies[0]:
        decode_write(body, router)
    timed = [body for r in plan.throughput() for body in bodies[r]]
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        samples = sum(decode_write(body, router).table.num_rows for body in timed)
        best = min(best, time.perf_counter() - began)
    return {"samples": samples, "seconds": best, "samples_per_s": samples / best}


class Scored:
    """The live loop's ``on_stored`` hand-over, timed: what each batch scored, and when."""

    def __init__(self, scorer: LiveScorer) -> None:
        self.scorer = scorer
        self.count = 0
        self.seconds = 0.0
        self.batches: list[tuple[float, pa.Table]] = []
        self._changed = threading.Condition()

    def __call__(self, points: pa.Table) -> None:
        began = time.perf_counter()
        scored = self.scorer.feed(points)
        done = time.perf_counter()
        with self._changed:
            self.seconds += done - began
            self.count += scored
            self.batches.append((done, points))
            self._changed.notify_all()

    def wait(self, count: int) -> float:
        """Block until ``count`` points were scored; when the last batch was."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.count >= count, timeout=WAIT_S):
                live = self.scorer.models.get(REF)
                raise SystemExit(
                    f"only {self.count:,} of {count:,} points scored after {WAIT_S:.0f}s "
                    f"(late or repeated: {live.late if live else '?'})"
                )
            return self.batches[-1][0]


@dataclass
class Phases:
    """Busy seconds inside the parts, summed over calls (concurrent calls add up)."""

    seconds: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    merged_partitions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[name] += time.perf_counter() - began
                    self.calls[name] += 1

        return run

    def reset(self) -> None:
        with self.lock:
            self.seconds.clear()
            self.calls.clear()
            self.merged_partitions = 0


class Senders:
    """``SHARDS`` senders on kept-alive connections; shard ``j`` sends blocks ``j, j+SHARDS…``
    of each round in round order (Prometheus shards by series: a series' samples stay in
    order). A 503 is retried after a short back-off, as Prometheus does; a connection the
    server closed while idle is opened again."""

    def __init__(self, url: str, bodies: list[list[bytes]], plan: Plan) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.bodies, self.plan = bodies, plan
        self.acked = np.full(plan.rounds * plan.requests_per_round, np.nan)
        self.latency = np.full(plan.rounds * plan.requests_per_round, np.nan)
        self.retries = self.reconnects = 0
        self._connections = [
            http.client.HTTPConnection(self.host, self.port, timeout=120) for _ in range(SHARDS)
        ]

    def send(self, rounds: Sequence[int]) -> None:
        errors: list[BaseException] = []

        def shard(j: int) -> None:
            try:
                for r in rounds:
                    for k in range(j, self.plan.requests_per_round, SHARDS):
                        self._post(j, r * self.plan.requests_per_round + k, self.bodies[r][k])
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=shard, args=(j,)) for j in range(SHARDS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _post(self, shard: int, request: int, body: bytes) -> None:
        connection, backoff, failures = self._connections[shard], 0.03, 0
        while True:
            began = time.perf_counter()
            try:
                connection.request("POST", self.path, body, HEADERS)
                response = connection.getresponse()
                text = response.read()
            except ConnectionError:  # the server closed an idle kept-alive connection
                connection.close()
                self.reconnects += 1
                failures += 1
                if failures > 3:
                    raise
                continue
            acked = time.perf_counter()
            if response.status == 204:
                self.acked[request], self.latency[request] = acked, acked - began
                return
            if response.status not in (429, 503):
                raise SystemExit(f"the receiver answered {response.status}: {text[:300]!r}")
            self.retries += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def close(self) -> None:
        for connection in self._connections:
            connection.close()


def scored_at(batches: list[tuple[float, pa.Table]], plan: Plan) -> np.ndarray:
    """When each request's last sample was scored (NaN: not all of its samples were)."""
    index = {entity(i): i for i in range(plan.series)}
    total = plan.rounds * plan.requests_per_round
    latest = np.full(total, -np.inf)
    seen = np.zeros(total, np.int64)
    for moment, table in batches:
        series = np.fromiter(
            (index[e] for e in table.column("entity").cast(pa.string()).to_pylist()), np.int64
        )
        ts = table.column("ts").cast(pa.int64()).to_numpy()
        rounds = (ts - round_ts(0)) // STEP_MS
        request = rounds * plan.requests_per_round + series // PER_REQUEST
        np.maximum.at(latest, request, moment)
        np.add.at(seen, request, 1)
    sizes = np.tile(
        np.diff(np.append(np.arange(0, plan.series, PER_REQUEST), plan.series)), plan.rounds
    )
    return np.where(seen == sizes, latest, np.nan)


def quantiles_ms(samples: np.ndarray) -> dict[str, float]:
    ordered = np.sort(samples[~np.isnan(samples)])
    if not len(ordered):
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "p50_ms": float(statistics.median(ordered)) * 1e3,
        "p99_ms": float(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]) * 1e3,
        "max_ms": float(ordered[-1]) * 1e3,
    }


def requests_of(rounds: range, plan: Plan) -> slice:
    return slice(rounds.start * plan.requests_per_round, rounds.stop * plan.requests_per_round)


def run(
    states: SeriesStates,
    bodies: list[list[bytes]],
    plan: Plan,
    flush_interval: str,
    folder: Path,
    seed: int,
) -> dict[str, Any]:
    """One receiver and live loop in a fresh workspace: the warm-up round, the back-to-back
    rounds (timed), then the paced rounds."""
    workspace = Workspace(Settings(workspace=folder))
    registry = workspace.registry()
    version = register_detector(
        registry, MODEL, states, features=[METRIC],
        data_start=datetime.fromtimestamp(START_MS / 1000, UTC),
        data_end=datetime.fromtimestamp(round_ts(-1) / 1000, UTC),
    )  # fmt: skip
    registry.set_tag(version.ref, "threshold", str(create(DEFAULT_DETECTOR).default_threshold))
    registry.set_alias(MODEL, "production", version.version)
    scorer = workspace.live_scorer([REF]).start()
    scored = Scored(scorer)
    settings = RemoteWriteSettings(enabled=True, flush_interval=flush_interval)
    receiver = Receiver.from_settings(
        workspace.store(), settings, folder / "landing", on_stored=scored,
        server=lambda app, host, port: AppServer(app, host, 0, "remote-write receiver"),
    ).start()  # fmt: skip
    phases = Phases()
    landing, store = receiver.landing, workspace.store()
    landing.accept = phases.timed("accept", landing.accept)  # type: ignore[method-assign]
    landing.flush = phases.timed("flush", landing.flush)  # type: ignore[method-assign]
    scorer.flush = phases.timed("score log", scorer.flush)  # type: ignore[method-assign]
    write = store.write

    def store_write(*args: Any, **kwargs: Any) -> Any:
        report = write(*args, **kwargs)
        with phases.lock:
            phases.merged_partitions += report.partitions_merged
        return report

    store.write = phases.timed("store write", store_write)  # type: ignore[method-assign]
    senders = Senders(receiver.url, bodies, plan)
    try:
        senders.send([0])
        scored.wait(plan.series)
        phases.reset()
        scoring_before = scored.seconds
        began = time.perf_counter()
        senders.send(plan.throughput())
        ended = scored.wait(plan.series * (1 + plan.throughput_rounds))
        with phases.lock:
            busy = {**phases.seconds, "scoring (feed)": scored.seconds - scoring_before}
            calls = dict(phases.calls)
            merged = phases.merged_partitions
        files = len(store.manifest.files)
        rng = np.random.default_rng(seed)
        pause = landing.flush_interval
        for r in plan.paced():
            time.sleep(float(rng.uniform(0, pause)))
            senders.send([r])
            scored.wait(plan.series * (r + 1))
    finally:
        senders.close()
        totals = receiver.stop()
        scorer.stop()
        workspace.close()
    done = scored_at(scored.batches, plan)
    lag = done - senders.acked
    samples = plan.series * plan.throughput_rounds
    seconds = ended - began
    return {
        "flush_interval": flush_interval,
        "samples": samples,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "lag_paced": quantiles_ms(lag[requests_of(plan.paced(), plan)]),
        "lag_saturated": quantiles_ms(lag[requests_of(plan.throughput(), plan)]),
        "ack_latency": quantiles_ms(senders.latency[requests_of(plan.throughput(), plan)]),
        "busy_seconds": busy,
        "calls": calls,
        "partitions_merged": merged,
        "store_files": files,
        "retries_503": senders.retries,
        "acknowledged": totals.acknowledged,
        "stored": totals.stored,
    }


def bench_size(series: int, quick: bool, scratch: Path) -> dict[str, Any]:
    plan = Plan(
        series,
        throughput_rounds=(10 if quick else 30 if series <= 10_000 else 10),
        paced_rounds=(3 if quick else 5),
    )
    began = time.perf_counter()
    values = fleet_values(series, HISTORY + plan.rounds, seed=series)
    states = train(values)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    bodies = encode_rounds(values, plan)
    encode_s = time.perf_counter() - began
    floor = decode_floor(bodies, plan, repeats=3 if quick else 1)
    runs = {}
    for i, flush in enumerate((FLUSH_DEFAULT, FLUSH_SHORT)):
        folder = scratch / f"{series}-{flush}"
        runs[flush] = run(states, bodies, plan, flush, folder, seed=i)
        shutil.rmtree(folder, ignore_errors=True)
        runs[flush]["vs_floor"] = runs[flush]["samples_per_s"] / floor["samples_per_s"]
        runs[flush]["busy_seconds"]["decode (floor's cost)"] = (
            floor["seconds"] / floor["samples"] * runs[flush]["samples"]
        )
    request_bytes = [len(b) for r in plan.throughput() for b in bodies[r]]
    return {
        "series": series,
        "history_points": HISTORY,
        "throughput_rounds": plan.throughput_rounds,
        "paced_rounds": plan.paced_rounds,
        "requests_per_round": plan.requests_per_round,
        "samples_per_request": PER_REQUEST,
        "senders": SHARDS,
        "request_bytes_mean": float(np.mean(request_bytes)),
        "setup_train_s": train_s,
        "setup_encode_s": encode_s,
        "floor": floor,
        "runs": runs,
    }


def size_label(series: int) -> str:
    return f"{series // 1000}k" if series % 1000 == 0 else str(series)


def print_tables(sizes: dict[int, dict[str, Any]]) -> None:
    print(
        f"remote write end to end: one sample per series per round, {PER_REQUEST:,} samples a "
        f"request, {SHARDS} senders, uvicorn on loopback; floor: decode_write alone (one thread)"
    )
    print(
        f"{'series':>8} {'flush':>6} {'samples/s':>10} {'floor/s':>9} {'vs floor':>9} "
        f"{'lag p50':>8} {'lag p99':>8} {'backlog p50':>12} {'backlog p99':>12} "
        f"{'204 p50':>8} {'204 p99':>8} {'503s':>5} {'merges':>7} {'files':>6}"
    )
    for series, figures in sizes.items():
        floor = figures["floor"]["samples_per_s"]
        for flush, f in figures["runs"].items():
            print(
                f"{series:>8,} {flush:>6} {f['samples_per_s']:>10,.0f} {floor:>9,.0f} "
                f"{f['vs_floor']:>9.3f} {f['lag_paced']['p50_ms']:>6,.0f}ms "
                f"{f['lag_paced']['p99_ms']:>6,.0f}ms "
                f"{f['lag_saturated']['p50_ms']:>10,.0f}ms "
                f"{f['lag_saturated']['p99_ms']:>10,.0f}ms "
                f"{f['ack_latency']['p50_ms']:>6,.1f}ms {f['ack_latency']['p99_ms']:>6,.1f}ms "
                f"{f['retries_503']:>5} {f['partitions_merged']:>7} {f['store_files']:>6}"
            )
    print(
        "(lag: from a request's 204 to its samples scored, rounds sent one at a time; backlog: "
        "the same during the back-to-back rounds; merges: store writes that rewrote a "
        "partition; files: the store's files after the timed rounds)\n"
    )
    print("where the time goes in the timed rounds: busy seconds (share of the wall time)")
    order = [
        "decode (floor's cost)", "accept", "flush", "store write", "scoring (feed)", "score log",
    ]  # fmt: skip
    print(f"{'series':>8} {'flush':>6} {'wall s':>7} " + " ".join(f"{k:>22}" for k in order))
    for series, figures in sizes.items():
        for flush, f in figures["runs"].items():
            busy = f["busy_seconds"]
            cells = " ".join(
                f"{busy.get(k, 0.0):>13.2f} ({busy.get(k, 0.0) / f['seconds']:>5.0%})"
                for k in order
            )
            print(f"{series:>8,} {flush:>6} {f['seconds']:>7.2f} {cells}")
    print(
        "(accept: Arrow IPC record, write and fsync, concurrent calls add up; flush: the "
        "flusher's whole pass, of which store write and scoring; score log: the live loop "
        "writing its scores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 series, fewer rounds, <1 min")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--series", help="comma-separated series counts (default 10000,100000; quick: 10000)"
    )
    args = parser.parse_args()
    chosen = args.series or ("10000" if args.quick else "10000,100000")
    try:
        counts = [int(part) for part in chosen.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--series takes counts separated by commas, not {chosen!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--series takes positive counts, not {chosen!r}")
    scratch = Path(tempfile.mkdtemp(prefix="perfml-bench-live-"))
    try:
        sizes = {n: bench_size(n, args.quick, scratch) for n in counts}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_tables(sizes)
    largest = sizes[max(counts)]
    default, short = largest["runs"][FLUSH_DEFAULT], largest["runs"][FLUSH_SHORT]
    figures: dict[str, Any] = {
        "quick": args.quick,
        "headline_series": max(counts),
        "flush_interval": FLUSH_DEFAULT,
        "short_flush_interval": FLUSH_SHORT,
        "remote_write_samples_per_s": default["samples_per_s"],
        "remote_write_vs_decode_floor": default["vs_floor"],
        "decode_floor_samples_per_s": largest["floor"]["samples_per_s"],
        "score_lag_p50_ms": default["lag_paced"]["p50_ms"],
        "score_lag_p99_ms": default["lag_paced"]["p99_ms"],
        "score_lag_short_flush_p50_ms": short["lag_paced"]["p50_ms"],
        "score_lag_short_flush_p99_ms": short["lag_paced"]["p99_ms"],
    }
    for n, size in sizes.items():
        label, runs = size_label(n), size["runs"]
        figures[f"remote_write_samples_per_s_{label}"] = runs[FLUSH_DEFAULT]["samples_per_s"]
        figures[f"remote_write_vs_decode_floor_{label}"] = runs[FLUSH_DEFAULT]["vs_floor"]
        figures[f"score_lag_p50_ms_{label}"] = runs[FLUSH_DEFAULT]["lag_paced"]["p50_ms"]
        figures[f"score_lag_p99_ms_{label}"] = runs[FLUSH_DEFAULT]["lag_paced"]["p99_ms"]
        figures[f"score_lag_short_flush_p99_ms_{label}"] = runs[FLUSH_SHORT]["lag_paced"]["p99_ms"]
    figures["sizes"] = {str(n): size for n, size in sizes.items()}
    print(
        f"\n{max(counts):,} series, flush every {FLUSH_DEFAULT}: "
        f"{figures['remote_write_samples_per_s']:,.0f} samples/s accepted and scored end to end, "
        f"{figures['remote_write_vs_decode_floor']:.3f} of decoding alone "
        f"({figures['decode_floor_samples_per_s']:,.0f}/s); a request's samples scored "
        f"{figures['score_lag_p50_ms']:,.0f} ms (p50) / {figures['score_lag_p99_ms']:,.0f} ms "
        f"(p99) after its 204 ({FLUSH_SHORT}: {figures['score_lag_short_flush_p50_ms']:,.0f} / "
        f"{figures['score_lag_short_flush_p99_ms']:,.0f} ms)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
