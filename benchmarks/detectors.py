"""Detector quality on NAB and speed, each against a peer or a floor measured in the same run.

Claims measured:
- the NAB standard score of every univariate detector on the 51 files of ``nab`` and
  ``nab-more`` scored as one corpus (one threshold, as NAB does), each category at that
  threshold, a cross-validated figure (threshold chosen on half of each category's files,
  scored on the other half, 200 random splits, 50 with --quick: the one to trust) and each
  category scored at the threshold chosen on the other categories (as a kind of series never
  seen), beside Numenta HTM's published results scored the same way in the same run;
- per host on a generated fleet whose seed no test uses (12 hosts, 3 months, request latency):
  the false-alarm rate on normal points and the event F1 of one model that learnt every host
  in turn (as the training pipeline trains a metric's model today) beside a model per host,
  each scoring months 2 and 3 of its host in order (learning as it scores, as a live loop
  does), at the threshold chosen on month 2, judged on month 3;
- one new point for each of many series: the default detector's per-series path (each
  series' own state, ``update`` once) against the floor of a bulk pass (one NumPy pass that
  reads and writes each series' state once: a decayed mean and variance and the z-score of
  the new point), in points per second; the per-series path is measured on as many series as
  fit in memory (its cost per point does not depend on how many there are), the floor on
  100,000 (``bulk_points_per_s_100k`` is the per-series path's figure, until a bulk path
  exists);
- the NAB score (normalised, every profile) of every univariate detector on the
  realAWSCloudwatch corpus by NAB's protocol, against Numenta HTM's published results for the
  same files scored in the same run by the same code (ratio ours / HTM);
- the time the default detector takes to score the whole corpus (target: under 10 s);
- training time: ``fit`` on a month of 5-minute points of a generated host;
- scoring throughput in points/s, batch (``score``) and streaming (``update`` per point), on
  the next months of that host, against a vectorised NumPy rolling z-score over the same points
  (ratio ours / floor). A multivariate detector scores the host's six metrics together; its
  points are rows × metrics, as are the floor's.

    python benchmarks/detectors.py [--quick] [--json FILE] [--default NAME] [--detector NAME ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfml.detectors import DEFAULT_DETECTOR, Detector, available, create
from perfml.evaluation.nab import PROFILES as COSTS
from perfml.evaluation.protocol import by_category, cross_validated, held_out_categories
from perfml.evaluation.runner import (
    Evaluation,
    ScoredSeries,
    evaluate,
    nab_tasks,
    read_results,
    score_tasks,
)
from perfml.sources.fleet import METRICS, generate_fleet

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
NAB_MORE = NAB.parent / "nab-more"
CV_SPLITS = 200
QUICK_CV_SPLITS = 50
PROFILES = {"standard": "standard", "low_fp": "reward_low_FP_rate", "low_fn": "reward_low_FN_rate"}
FLOOR_WINDOW = 288  # a day of 5-minute points
TARGET_CORPUS_SECONDS = 10.0


def best_of(repeats: int, action: Callable[[], object]) -> float:
    """The shortest of ``repeats`` timings of ``action``, in seconds."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return min(times)


def nab_scores(result: Evaluation) -> dict[str, float]:
    return {short: result.score(full) for short, full in PROFILES.items()}


def bench_nab(detector: str) -> dict[str, Any]:
    """Run ``detector`` over the corpus by NAB's protocol (timed) and score it."""
    tasks = nab_tasks(NAB)
    began = time.perf_counter()
    scored = score_tasks(tasks, detector)
    seconds = time.perf_counter() - began
    result = evaluate(scored, detector)
    return {
        "scores": nab_scores(result),
        "thresholds": {s: result.profiles[f].corpus.threshold for s, f in PROFILES.items()},
        "corpus_seconds": seconds,
        "points": sum(len(s.scores) for s in scored.values()),
        "series": len(scored),
    }


def bench_peer() -> dict[str, Any]:
    """Numenta HTM's published per-row scores, scored here by the same code."""
    name, scored = read_results(NAB, NAB / "results" / "numenta")
    return {"detector": name, "scores": nab_scores(evaluate(scored, name))}


def nab51_figures(
    scored: dict[str, ScoredSeries], name: str, splits: int = CV_SPLITS
) -> dict[str, Any]:
    """The 51-file figures of one detector's scores (see the module's docstring)."""
    cost = COSTS["standard"]
    result = evaluate(scored, name)
    settings = {"defaults": scored}
    cv = cross_validated(settings, cost, splits=splits)
    held = held_out_categories(settings, cost)
    return {
        "standard": result.score("standard"),
        "threshold": result.profiles["standard"].corpus.threshold,
        "cv_standard": cv.mean,
        "cv_standard_p10": cv.quantile(0.1),
        "cv_standard_p90": cv.quantile(0.9),
        "categories": by_category(scored, cost),
        "held_out": {category: score for category, (score, _) in held.items()},
        "series": len(scored),
        "cv_splits": splits,
    }


def bench_nab51(detector: str, splits: int = CV_SPLITS) -> dict[str, Any]:
    """Run ``detector`` over the 51 files by NAB's protocol (timed) and judge it."""
    began = time.perf_counter()
    scored = score_tasks(nab_tasks(NAB) + nab_tasks(NAB_MORE), detector)
    seconds = time.perf_counter() - began
    return {**nab51_figures(scored, detector, splits), "seconds": seconds}


def bench_tuned(detector: str, grid: list[dict[str, Any]], splits: int) -> dict[str, Any]:
    """The cross-validated score when the setting, too, is chosen on each split's tuning half
    (among the defaults and ``grid``), and each category held out likewise."""
    cost = COSTS["standard"]
    tasks = nab_tasks(NAB) + nab_tasks(NAB_MORE)
    settings = {
        json.dumps(params, sort_keys=True): score_tasks(tasks, detector, params)
        for params in [{}, *grid]
    }
    cv = cross_validated(settings, cost, splits=splits)
    held = held_out_categories(settings, cost)
    return {
        "settings": list(settings),
        "cv_standard": cv.mean,
        "chosen": {name: cv.chosen.count(name) for name in settings if name in cv.chosen},
        "held_out": {category: {"score": v, "setting": n} for category, (v, n) in held.items()},
    }


def bench_peer51(splits: int = CV_SPLITS) -> dict[str, Any]:
    """Numenta HTM's published per-row scores on the 51 files, judged by the same code."""
    scored: dict[str, ScoredSeries] = {}
    for corpus in (NAB, NAB_MORE):
        _, found = read_results(corpus, corpus / "results" / "numenta")
        scored.update(found)
    return nab51_figures(scored, "numenta", splits)


def print_nab51(peer: dict[str, Any], ours: dict[str, dict[str, Any]]) -> None:
    categories = sorted(peer["categories"])
    print(
        f"NAB, 51 files scored as one corpus (standard profile); cv: threshold chosen on half "
        f"of each category, scored on the other half ({peer['cv_splits']} splits, p10–p90); "
        "held out: "
        "each category at the threshold chosen on the others; peer: HTM's published results"
    )
    print(
        f"{'detector':<16} {'51 files':>8} {'cv':>6} {'cv p10-p90':>12}  "
        + " ".join(f"{c[:13]:>13}" for c in categories)
    )
    rows = {"numenta (peer)": peer, **ours}
    for name, figures in rows.items():
        cells = " ".join(
            f"{figures['categories'].get(c, float('nan')):>6.1f}/"
            f"{figures['held_out'].get(c, float('nan')):<6.1f}"
            for c in categories
        )
        band = f"{figures['cv_standard_p10']:.1f}-{figures['cv_standard_p90']:.1f}"
        print(
            f"{name:<16} {figures['standard']:>8.1f} {figures['cv_standard']:>6.1f} "
            f"{band:>12}  {cells}"
        )
    print("(each category: at the 51-file threshold / held out)\n")


FLEET_SEED = 20_261_202
"""A seed no test uses."""
FLEET_METRIC = "request_latency_ms"


def bench_fleet(detector: str, hosts: int = 12) -> dict[str, Any]:
    """Per host on a generated fleet: the per-series model against a detector per host.

    Month 1 of every host but the last is learnt by the training path (``fit_series``: one
    state per host and a fleet prior), saved and loaded as a served version is; the last host
    is new to it, and starts from the prior. Months 2-3 of each host are then scored from its
    state in order, learning as they go (as the live loop and the batch scorer do), and also
    as the server answers (from the state as trained, nothing learnt). Beside them, a detector
    trained on that host's month 1 alone scores the same months learning as it goes. Every
    variant is judged on month 3 at the threshold chosen on month 2 (NAB's sweep over the
    hosts, nearest the detector's calibrated default among those within one false alarm)."""
    from perfml.detectors.series import fit_series, load_series
    from perfml.evaluation.nab import score_corpus, window_rows
    from perfml.evaluation.scores import detection_metrics, merge_windows
    from perfml.timeparse import to_epoch_ms

    fleet = generate_fleet(hosts, 3, FLEET_SEED)
    ticks = fleet.timestamps()
    month = int(np.searchsorted(ticks, ticks[0] + 31 * 86_400_000))
    judged_from = int(np.searchsorted(ticks, ticks[0] + 60 * 86_400_000))
    windows = fleet.windows()
    series = {}
    for host in fleet.host_names:
        values = fleet.host_values(host)[FLEET_METRIC]
        spans = [(to_epoch_ms(a), to_epoch_ms(b)) for a, b in windows[f"{FLEET_METRIC}/{host}.csv"]]
        series[host] = (values, merge_windows(window_rows(ticks, spans)))
    known, new = list(fleet.host_names[:-1]), fleet.host_names[-1]
    trained = fit_series(
        create(detector), known, [(ticks[:month], series[h][0][:month]) for h in known]
    )
    with tempfile.TemporaryDirectory() as scratch:
        trained.save(Path(scratch) / "version.zip")
        served = load_series(Path(scratch) / "version.zip")
    later = ticks[month:]
    scores: dict[str, dict[str, Any]] = {"live": {}, "served": {}, "own": {}}
    replayed = served.replay(
        list(fleet.host_names), [(later, series[h][0][month:]) for h in fleet.host_names]
    )
    for host, live in zip(fleet.host_names, replayed, strict=True):
        values = series[host][0][month:]
        rows = served.rows([host] * len(later))
        scores["live"][host] = live
        scores["served"][host] = served.score(rows, later, values)
        own = create(detector)
        own.learn(ticks[:month], series[host][0][:month])
        scores["own"][host] = own.score_values(later, values)
    default = create(detector).default_threshold
    cut = judged_from - month
    figures: dict[str, Any] = {}
    for variant, by_host in scores.items():
        scored = {host: (by_host[host], series[host][1]) for host in fleet.host_names}
        validation = _rows(scored, month, 0, cut)
        test = _rows(scored, month, cut, len(ticks) - month)
        threshold = score_corpus(
            validation, COSTS["standard"], probation=0, prior=default
        ).threshold
        alarms, f1 = [], []
        for scores_, spans in test.values():
            normal = np.ones(len(scores_), dtype=bool)
            for a, b in spans:
                normal[a : b + 1] = False
            alarms.append(float(np.mean(scores_[normal] >= threshold)) if normal.any() else 0.0)
            f1.append(detection_metrics(scores_, threshold, spans).summary().event_f1)
        figures[variant] = {
            "threshold": threshold,
            "false_alarm_rate_mean": float(np.mean(alarms)),
            "false_alarm_rate_max": float(np.max(alarms)),
            "false_alarm_rates": alarms,
            "event_f1_mean": float(np.mean(f1)),
            "event_f1": f1,
        }
    own_f1 = figures["own"]["event_f1"]
    for variant in ("live", "served"):
        mine = figures[variant]["event_f1"]
        figures[f"hosts_{variant}_f1_at_least_own"] = sum(
            a >= b for a, b in zip(mine, own_f1, strict=True)
        )
    figures["hosts"] = hosts
    figures["new_host"] = new
    return figures


def _rows(
    scored: dict[str, tuple[Any, list[tuple[int, int]]]], offset: int, first: int, end: int
) -> dict[str, tuple[Any, list[tuple[int, int]]]]:
    """Each series' scores of rows ``[first, end)`` (counted from ``offset``), its windows
    (rows counted from ``0``) clipped and moved with them."""
    found = {}
    for host, (scores, spans) in scored.items():
        inside = [
            (max(a - offset, first) - first, min(b - offset, end - 1) - first)
            for a, b in spans
            if b - offset >= first and a - offset < end
        ]
        found[host] = (scores[first:end], inside)
    return found


def print_fleet(detector: str, figures: dict[str, Any]) -> None:
    print(
        f"a generated fleet (seed {FLEET_SEED}, {figures['hosts']} hosts, {FLEET_METRIC}, "
        f"{figures['new_host']} new to the model): {detector} learnt on month 1, months 2-3 "
        "scored, threshold chosen on month 2, judged on month 3"
    )
    print(
        f"{'model':<44} {'false alarms mean':>18} {'max':>7} {'event F1 mean':>14} "
        f"{'hosts >= own':>13}"
    )
    labels = {
        "live": "per-series version, learning (live, batch)",
        "served": "per-series version, as served (no learning)",
        "own": "a detector trained on the host alone",
    }
    for variant, label in labels.items():
        f = figures[variant]
        at_least = figures.get(f"hosts_{variant}_f1_at_least_own", "-")
        print(
            f"{label:<44} {f['false_alarm_rate_mean']:>17.2%} {f['false_alarm_rate_max']:>7.1%} "
            f"{f['event_f1_mean']:>14.3f} {at_least!s:>13}"
        )
    print()


BULK_SERIES = 100_000
QUICK_BULK_HISTORY = 24
BULK_HISTORY = 288


def _fleet_values(series: int, points: int, seed: int) -> np.ndarray:
    """``points`` five-minute values of ``series`` series, each a noisy daily cycle of its own
    level and amplitude, as rows (point × series)."""
    rng = np.random.default_rng(seed)
    level, swing = rng.uniform(10, 90, series), rng.uniform(1, 20, series)
    phase = rng.uniform(0, 2 * np.pi, series)
    steps = np.arange(points)[:, None]
    values = level + swing * np.sin(2 * np.pi * steps / 288 + phase)
    return values + rng.normal(0, 1, (points, series)) * swing / 5


def bench_bulk(detector: str, history: int, rounds: int) -> dict[str, Any]:
    """One new point for each of :data:`BULK_SERIES` series, ``rounds`` times, through the
    per-series states (each series having learnt ``history`` points first), beside the floor
    of one NumPy pass that reads and writes every series' whole state once per round; and the
    per-series path (a detector per series, ``update``) on a sample, which must give the
    same scores."""
    from perfml.detectors.series import SeriesStates

    model = create(detector)
    states = SeriesStates.empty(model)
    names = [f"host-{i:06d}" for i in range(BULK_SERIES)]
    rows = states.rows(names, add=True)
    start = 1_700_000_000_000
    values = _fleet_values(BULK_SERIES, history + rounds, 1)
    ts = start + np.arange(history + rounds, dtype=np.int64) * 300_000
    began = time.perf_counter()
    states.learn(
        np.tile(rows, history), np.repeat(ts[:history], BULK_SERIES), values[:history].reshape(-1)
    )
    learn_s = time.perf_counter() - began
    sample = [0, 1, BULK_SERIES // 2, BULK_SERIES - 1]
    alone = [states.series(names[i]) for i in sample]
    got = []
    began = time.perf_counter()
    for r in range(history, history + rounds):
        got.append(states.step(rows, np.full(BULK_SERIES, ts[r]), values[r]))
    bulk_s = time.perf_counter() - began
    same = all(
        alone[k].update(int(ts[r]), float(values[r, i])) == got[r - history][i]
        for r in range(history, history + rounds)
        for k, i in enumerate(sample)
    )
    if not isinstance(states.bank, dict):
        raise SystemExit(f"{detector} keeps no bank of series: no bulk path to measure")
    bank = states.bank
    began = time.perf_counter()
    for _ in range(rounds):
        for array in bank.values():
            flat = array.view(np.uint8).reshape(len(array), -1)
            np.bitwise_or(flat, 0, out=flat)  # read and write every byte of every state
    floor_s = time.perf_counter() - began
    points = BULK_SERIES * rounds
    return {
        "series": BULK_SERIES,
        "history": history,
        "rounds": rounds,
        "learn_points_per_s": BULK_SERIES * history / learn_s,
        "bulk_points_per_s": points / bulk_s,
        "floor_points_per_s": points / floor_s,
        "vs_floor": floor_s / bulk_s,
        "per_series_path_same_scores": same,
        "state_bytes_per_series": states.state_bytes(),
    }


def bench_load(detector: str, series: int) -> dict[str, Any]:
    """A version of ``series`` series: saved, then loaded as serving loads it (digest checked
    once, the bank memory-mapped) and 10,000 random series scored, with the process' resident
    memory before and after: its own (anonymous) and the file's pages it maps (page cache the
    system takes back when it needs it)."""
    import hashlib

    from perfml.detectors.series import SeriesStates, load_series

    model = create(detector)
    states = SeriesStates.empty(model)
    names = [f"host-{i:07d}" for i in range(series)]
    rows = states.rows(names, add=True)
    values = _fleet_values(series, 12, 2)
    ts = 1_700_000_000_000 + np.arange(12, dtype=np.int64) * 300_000
    states.learn(np.tile(rows, 12), np.repeat(ts, series), values.reshape(-1))
    states.refresh_prior()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "version.zip"
        began = time.perf_counter()
        states.save(path)
        save_s = time.perf_counter() - began
        size = path.stat().st_size
        del states
        gc.collect()
        before = _resident()
        began = time.perf_counter()
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(16 << 20):
                digest.update(chunk)
        loaded = load_series(path, mmap=True, verified=True)
        load_s = time.perf_counter() - began
        pick = np.random.default_rng(3).choice(series, 10_000, replace=False)
        began = time.perf_counter()
        loaded.score(
            loaded.rows([names[i] for i in pick]),
            np.full(10_000, ts[-1] + 300_000),
            values[-1, pick],
        )
        score_s = time.perf_counter() - began
        after = _resident()
        del loaded
    return {
        "series": series,
        "saved_bytes": size,
        "saved_bytes_per_series": size / series,
        "save_s": save_s,
        "load_s": load_s,
        "score_10k_s": score_s,
        "anonymous_growth_bytes": after["RssAnon"] - before["RssAnon"],
        "file_mapped_growth_bytes": after["RssFile"] - before["RssFile"],
    }


def _resident() -> dict[str, int]:
    """The process' resident memory, anonymous and file-backed, in bytes (Linux)."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            found[key] = int(value.split()[0]) * 1024
    return found


def host_frames(months: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A month of history and the following months of one generated host, all six metrics."""
    fleet = generate_fleet(hosts=1, months=months, seed=0, drift_months=[])
    ts = fleet.timestamps()
    frame = pd.DataFrame({"ts": ts, **fleet.host_values(fleet.host_names[0])})
    month = int(np.searchsorted(ts, ts[0] + 31 * 86_400_000))
    return frame.iloc[:month].reset_index(drop=True), frame.iloc[month:].reset_index(drop=True)


def floor_scores(history: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A causal rolling z-score of every column, vectorised: each point against the
    ``FLOOR_WINDOW`` points before it (the history's tail first)."""
    both = np.concatenate([history[-FLOOR_WINDOW:], values])
    sums = np.concatenate([np.zeros((1, both.shape[1])), np.cumsum(both, axis=0)])
    squares = np.concatenate([np.zeros((1, both.shape[1])), np.cumsum(both**2, axis=0)])
    rows = np.arange(FLOOR_WINDOW, len(both))
    mean = (sums[rows] - sums[rows - FLOOR_WINDOW]) / FLOOR_WINDOW
    var = (squares[rows] - squares[rows - FLOOR_WINDOW]) / FLOOR_WINDOW - mean**2
    z = np.abs(both[FLOOR_WINDOW:] - mean) / np.sqrt(np.maximum(var, 1e-12))
    scores: np.ndarray = np.minimum(1.0, z / 6.0).max(axis=1)
    return scores


def bench_speed(
    detector: str, history: pd.DataFrame, later: pd.DataFrame, stream_rows: int, repeats: int
) -> dict[str, float]:
    """Training time and batch and streaming throughput of one detector."""
    multivariate = create(detector).multivariate
    columns = list(METRICS) if multivariate else ["cpu_util"]

    def frame(part: pd.DataFrame) -> pd.DataFrame:
        return part[["ts", *columns]].rename(columns={} if multivariate else {"cpu_util": "value"})

    train, test = frame(history), frame(later)
    fitted: list[Detector] = []
    train_s = best_of(repeats, lambda: fitted.append(create(detector).fit(train)))
    model = fitted[-1]
    batch_s = best_of(repeats, lambda: model.score(test))
    streamed = later.iloc[:stream_rows]
    ts = streamed["ts"].to_numpy()
    values = streamed[columns].to_numpy()
    points = values if multivariate else values[:, 0]

    def stream() -> None:
        online = model.copy()
        for t, v in zip(ts.tolist(), points, strict=True):
            online.update(t, v)

    stream_s = best_of(repeats, stream)
    state_heap, state_saved = state_bytes(detector, train)
    history_values = history[columns].to_numpy()
    test_values = later[columns].to_numpy()
    floor_s = best_of(max(repeats, 3), lambda: floor_scores(history_values, test_values))
    per_row = len(columns)
    batch_points = len(test) * per_row
    floor_pps = batch_points / floor_s
    return {
        "multivariate": multivariate,
        "train_points": len(train) * per_row,
        "train_s": train_s,
        "batch_points": batch_points,
        "batch_points_per_s": batch_points / batch_s,
        "stream_points": len(streamed) * per_row,
        "stream_points_per_s": len(streamed) * per_row / stream_s,
        "floor_points_per_s": floor_pps,
        "batch_vs_floor": batch_points / batch_s / floor_pps,
        "stream_vs_floor": len(streamed) * per_row / stream_s / floor_pps,
        "state_heap_bytes": state_heap,
        "state_saved_bytes": state_saved,
    }


def state_bytes(detector: str, train: pd.DataFrame) -> tuple[int, int]:
    """What one series' fitted state costs: the Python heap the fitted model keeps (what is
    still allocated after ``fit``, the training frame aside), and its saved form's size."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    model = create(detector).fit(train)
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "state.zip"
        model.save(path)
        return heap, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the default detector only, <1 min")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--default", default=DEFAULT_DETECTOR, help="the detector to headline")
    parser.add_argument("--detector", action="append", help="bench only these (repeatable)")
    parser.add_argument(
        "--grid",
        type=json.loads,
        help="settings of the default detector to choose among inside the cross-validation, "
        'as JSON (e.g. \'[{"share": 0.02}, {"rearm_hours": 24}]\'; the defaults are added)',
    )
    args = parser.parse_args()
    known = available()
    if args.default not in known:
        raise SystemExit(
            f"the default detector {args.default!r} is not registered (have: {', '.join(known)})"
        )
    chosen = args.detector or ([args.default] if args.quick else known)
    unknown = [d for d in chosen if d not in known]
    if unknown:
        raise SystemExit(f"unknown detector(s) {', '.join(unknown)} (have: {', '.join(known)})")
    chosen = [args.default, *(d for d in chosen if d != args.default)]
    univariate = [d for d in chosen if not create(d).multivariate]

    peer = bench_peer()
    splits = QUICK_CV_SPLITS if args.quick else CV_SPLITS
    peer51 = bench_peer51(splits)
    nab51 = {d: bench_nab51(d, splits) for d in univariate}
    tuned = None
    if args.grid and args.default in univariate:
        tuned = bench_tuned(args.default, args.grid, splits)
        print(
            f"{args.default}, its setting chosen inside the cross-validation among "
            f"{len(tuned['settings'])}: cv {tuned['cv_standard']:.1f} (defaults alone: "
            f"{nab51[args.default]['cv_standard']:.1f}); chosen: {tuned['chosen']}\n"
        )
    print_nab51(peer51, nab51)
    fleet = bench_fleet(args.default) if args.default in univariate else None
    if fleet is not None:
        print_fleet(args.default, fleet)
    nab = {d: bench_nab(d) for d in univariate}
    history, later = host_frames(2 if args.quick else 3)
    stream_rows = 2_000 if args.quick else 10_000
    repeats = 1 if args.quick else 3
    speed = {d: bench_speed(d, history, later, stream_rows, repeats) for d in chosen}
    bulk = bench_bulk(
        args.default, QUICK_BULK_HISTORY if args.quick else BULK_HISTORY, 3 if args.quick else 10
    )
    load = bench_load(args.default, 50_000 if args.quick else 1_000_000)

    default_nab, default_speed = nab.get(args.default), speed[args.default]
    print(
        f"NAB realAWSCloudwatch ({default_nab['series'] if default_nab else 17} files), "
        "normalised scores; peer: Numenta HTM's published results, scored in this run"
    )
    print(
        f"{'detector':<18} {'standard':>9} {'low_fp':>9} {'low_fn':>9} "
        f"{'vs HTM std':>11} {'vs HTM fp':>10} {'vs HTM fn':>10} {'corpus s':>9}"
    )
    peer_scores = peer["scores"]
    print(
        f"{'numenta (peer)':<18} "
        + " ".join(f"{peer_scores[p]:>9.1f}" for p in PROFILES)
        + f" {1.0:>11.2f} {1.0:>10.2f} {1.0:>10.2f} {'-':>9}"
    )
    ratios: dict[str, dict[str, float]] = {}
    for name, figures in nab.items():
        ours = figures["scores"]
        ratios[name] = {p: ours[p] / peer_scores[p] for p in PROFILES}
        print(
            f"{name:<18} "
            + " ".join(f"{ours[p]:>9.1f}" for p in PROFILES)
            + f" {ratios[name]['standard']:>11.2f} {ratios[name]['low_fp']:>10.2f}"
            + f" {ratios[name]['low_fn']:>10.2f} {figures['corpus_seconds']:>9.2f}"
        )
    print(
        f"\nspeed on a generated host: fit on {len(history):,} rows (a month), score the next "
        f"{len(later):,} rows; floor: NumPy rolling z-score ({FLOOR_WINDOW} points)"
    )
    print(
        f"{'detector':<20} {'train s':>8} {'batch pts/s':>13} {'vs floor':>9} "
        f"{'stream pts/s':>13} {'vs floor':>9} {'floor pts/s':>13} {'state heap':>11} "
        f"{'saved':>9}"
    )
    for name, figures in speed.items():
        label = name + (" (6 metrics)" if figures["multivariate"] else "")
        print(
            f"{label:<20} {figures['train_s']:>8.3f} {figures['batch_points_per_s']:>13,.0f} "
            f"{figures['batch_vs_floor']:>9.3g} {figures['stream_points_per_s']:>13,.0f} "
            f"{figures['stream_vs_floor']:>9.3g} {figures['floor_points_per_s']:>13,.0f} "
            f"{figures['state_heap_bytes'] / 1024:>9,.0f}Ki "
            f"{figures['state_saved_bytes'] / 1024:>7,.0f}Ki"
        )
    print(
        f"\none new point for each of {bulk['series']:,} series ({args.default}, "
        f"{bulk['state_bytes_per_series']:,} bytes of state each, {bulk['history']} points "
        f"learnt first at {bulk['learn_points_per_s']:,.0f} points/s): "
        f"{bulk['bulk_points_per_s']:,.0f} points/s; floor (one NumPy pass reading and writing "
        f"every state once) {bulk['floor_points_per_s']:,.0f} points/s; ratio "
        f"{bulk['vs_floor']:.3g}; the per-series path gives the same scores: "
        f"{bulk['per_series_path_same_scores']} (target: >= 1M points/s per core at 100k series)"
    )
    print(
        f"a version of {load['series']:,} series: {load['saved_bytes'] / 2**20:,.0f} MiB "
        f"({load['saved_bytes_per_series']:,.0f} bytes a series), saved in {load['save_s']:.1f} s, "
        f"loaded (digest checked, bank memory-mapped) in {load['load_s']:.1f} s; 10,000 random "
        f"series scored in {load['score_10k_s'] * 1000:.0f} ms; the process' own memory grew "
        f"{load['anonymous_growth_bytes'] / 2**20:,.0f} MiB (the file's pages it maps: "
        f"{load['file_mapped_growth_bytes'] / 2**20:,.0f} MiB, page cache)"
    )
    if default_nab is None:
        print(f"\n{args.default} is multivariate: it has no NAB score on a univariate corpus")
        figures_nab: dict[str, float | None] = dict.fromkeys(PROFILES)
        corpus_s = None
    else:
        corpus_s = default_nab["corpus_seconds"]
        verdict = "meets" if corpus_s < TARGET_CORPUS_SECONDS else "MISSES"
        standard = default_nab["scores"]["standard"]
        print(
            f"\ndefault detector {args.default}: NAB standard {standard:.1f} "
            f"(HTM {peer_scores['standard']:.1f}, ratio {ratios[args.default]['standard']:.2f}); "
            f"scored the whole corpus ({default_nab['points']:,} points) in {corpus_s:.2f} s, "
            f"{verdict} the {TARGET_CORPUS_SECONDS:.0f} s target; "
            f"{default_speed['batch_points_per_s']:,.0f} points/s batch"
        )
        figures_nab = dict(default_nab["scores"])
    default51 = nab51.get(args.default)
    flat51: dict[str, Any] = {}
    if default51 is not None:
        flat51 = {
            "nab51_standard": default51["standard"],
            "nab51_cv_standard": default51["cv_standard"],
            **{f"nab51_{c}": v for c, v in default51["categories"].items()},
            **{f"nab51_held_out_{c}": v for c, v in default51["held_out"].items()},
        }
    figures = {
        "default_detector": args.default,
        "quick": args.quick,
        **flat51,
        "fleet_false_alarm_rate": None if fleet is None else fleet["live"]["false_alarm_rate_mean"],
        "fleet_event_f1": None if fleet is None else fleet["live"]["event_f1_mean"],
        "fleet_event_f1_own_models": None if fleet is None else fleet["own"]["event_f1_mean"],
        "fleet": fleet,
        "bulk_points_per_s_100k": bulk["bulk_points_per_s"],
        "bulk_vs_floor": bulk["vs_floor"],
        "bulk": bulk,
        "state_bytes_per_series": bulk["state_bytes_per_series"],
        "state_saved_bytes_per_series": load["saved_bytes_per_series"],
        "load": load,
        "nab51": nab51,
        "nab51_cv_standard_tuned": None if tuned is None else tuned["cv_standard"],
        "nab51_tuned": tuned,
        "nab51_peer": peer51,
        "nab_standard": figures_nab["standard"],
        "nab_low_fp": figures_nab["low_fp"],
        "nab_low_fn": figures_nab["low_fn"],
        "points_per_s": default_speed["batch_points_per_s"],
        "points_per_s_vs_floor": default_speed["batch_vs_floor"],
        "corpus_seconds": corpus_s,
        "corpus_seconds_target": TARGET_CORPUS_SECONDS,
        "peer": peer,
        "nab": nab,
        "nab_vs_peer": ratios,
        "speed": speed,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
