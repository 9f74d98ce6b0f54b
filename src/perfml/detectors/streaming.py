"""The default detector: how surprising is this value, given every similar moment seen before?

A point is scored by the probability that the metric lands where it did, estimated without a
model of its shape: the share of the remembered mass within a tolerance of it (``±5%`` of the
range seen, the tolerance of NAB's spatial check). Three experts estimate it from different
memories, and a Bayesian mixture weighs them by how well each has predicted so far:

- **global**: the long-run history (decayed over ``history`` points). A value never seen
  before gets the Good–Turing probability of novelty (how often past points were new), so a
  metric that keeps producing new values is not alarmed by yet another one, and a regular one
  is, loudly;
- **phase**: the points seen at the same time of day (the daily cycle of performance metrics);
- **recent**: the last day (decayed over ``recent_hours``), which absorbs a new regime once
  it has become the norm.

The contextual experts shrink toward the global estimate (one pseudo-observation of it), so a
value is surprising only if no expert expects it; the mixture's weights follow each expert's
predictive likelihood with a fixed share (Herbster–Warmuth), so every series settles on what
explains it. The score is ``-log10`` of the mixed probability over ``full_scale`` (10: a
one-in-10^10 event scores 1), NAB's log-likelihood scale. An alarm no stronger than the level
of recent alarms (decaying over ``rearm_hours``) is reported at ``rearm_factor`` of its
strength, so that a long episode is announced once. The score of a row uses that row and the
rows before it; the row is then learnt. Missing values score 0 and are not learnt.

**The memory is a sketch, not the points**: decayed counts in 60 bins over the series' range
(global and recent) and in 20 bins for each half hour of the day (phase), on a grid that widens
when a value falls outside it — 2,904 bytes per series whatever its length. Every series is a
row of the same arrays, so :meth:`StreamingDetector.step_rows` scores (and learns) one new
point of each of many series in a few NumPy passes; the per-series path is the same code on
one row, so both give the same scores.

Design record — NAB, the 51 files of six categories scored as one corpus (one threshold):
standard 70.6, cross-validated 69.0 (threshold chosen on half the files, 50 random splits);
artificialWithAnomaly 60.0, realAWSCloudwatch 71.2, realAdExchange 70.6, realTraffic 70.9,
realTweets 71.8 (Numenta HTM: 73.0, 71.2; 70.2, 73.4, 76.9, 82.5, 68.0). The memory of
remembered points it replaces scored 72.1 (69.7) at 0.8 MiB per series. Tried on the 51
files: grid margins of 0, 3, 25, 50% (70.3, 68.4, 67.4, 66.2 against 69.6 at 10% before the
phase window held a whole bin), 96 phases 69.9, 120 / 240 bins 70.0 / 70.9 (over the state
budget), recent memory 12 / 48 h 67.7 / 69.5, history 4,032 69.4, fixed share 0.02 69.0,
re-arming over 48 h 70.0; none was adopted, as none raised the cross-validated score.

>>> import numpy as np
>>> ts = np.arange(3000, dtype=np.int64) * 300_000
>>> values = 50 + 10 * np.sin(np.arange(3000) * 2 * np.pi / 288)
>>> values[2500] = 90.0
>>> scores = StreamingDetector().score_arrays(ts, values)
>>> int(np.argmax(scores)), bool(scores[2500] > 0.5), bool(scores[1000:2500].max() < 0.3)
(2500, True, True)
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field

from perfml.detectors.base import Detector, DetectorParams, State, register
from perfml.detectors.binned import rebin, row_sums, window, window_mass
from perfml.detectors.errors import BadInputError
from perfml.detectors.frames import Floats, Millis

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
BINS = 60
"""Bins of the global and recent histograms: the tolerance of ±5% is 3 of them."""
PHASE_BINS = 20
"""Bins of each time-of-day histogram (3 global bins each)."""
PHASES = 48
"""Time-of-day histograms: one per half hour."""
GRID_MARGIN = 0.1
"""A widened grid reaches past the new value by this share of the range seen."""
RENORMALISE = 1e-4
"""Stored counts are rescaled when their lazy decay factor falls below this."""
PHASE_RENORMALISE = 1.0 / 16.0
"""The same for the time-of-day counts, stored in half precision."""
NOVEL_BELOW = 0.5
"""A point is new when less remembered mass than this lies within the tolerance of it."""

# The per-series numbers, one column each of ``memory``.
(
    SPAN_LO,
    SPAN_HI,
    GRID_LO,
    GRID_HI,
    SCALE,
    TOTAL,
    NOVEL,
    RECENT_AT,
    RECENT_TOTAL,
    W_GLOBAL,
    W_PHASE,
    W_RECENT,
    ALARM,
    LAST_TS,
    SEEN,
) = range(15)
MEMORY = 15

Bank = dict[str, npt.NDArray[Any]]
"""The states of many series: ``memory`` (rows × 15 float64), ``counts`` and ``recent``
(rows × 60 float32), ``phase`` (rows × 48 × 20 float16) with its ``phase_total`` and lazy
``phase_scale`` (rows × 48 float32)."""


@register
class StreamingDetector(Detector):
    """Scores each point by how improbable it is under a mixture of remembered contexts."""

    name = "streaming"
    state_version = 2
    vectorised: ClassVar[bool] = True
    max_state_bytes = 4096

    class Params(DetectorParams):
        resolution: float = Field(
            0.05, gt=0.0, le=0.25, description="tolerance: a fraction of the range of the history"
        )
        history: int = Field(
            8064, ge=32, description="points of long-run memory (4 weeks of 5-minute samples)"
        )
        recent_hours: float = Field(24.0, gt=0.0, description="the recent expert's memory")
        share: float = Field(0.05, gt=0.0, lt=1.0, description="fixed share of the mixture")
        rearm_hours: float = Field(96.0, gt=0.0, description="decay of the alarm level")
        rearm_factor: float = Field(
            0.5, ge=0.0, le=1.0, description="weight of an alarm below the alarm level"
        )
        full_scale: float = Field(10.0, gt=0.0, description="-log10 probability scoring 1")
        warmup: int = Field(10, ge=1, description="points learnt before the first score")

    params: Params

    def reset(self) -> None:
        self.bank = self.new_bank(1)

    # -- many series -------------------------------------------------------------------------

    def new_bank(self, rows: int) -> Bank:
        """The states of ``rows`` series that have seen nothing."""
        memory = np.zeros((rows, MEMORY))
        memory[:, SCALE] = 1.0
        memory[:, [W_GLOBAL, W_PHASE, W_RECENT]] = 1.0 / 3.0
        memory[:, LAST_TS] = np.nan
        return {
            "memory": memory,
            "counts": np.zeros((rows, BINS), np.float32),
            "recent": np.zeros((rows, BINS), np.float32),
            "phase": np.zeros((rows, PHASES, PHASE_BINS), np.float16),
            "phase_total": np.zeros((rows, PHASES), np.float32),
            "phase_scale": np.ones((rows, PHASES), np.float32),
        }

    def step_rows(
        self, bank: Bank, rows: npt.NDArray[np.intp], ts: Millis, values: Floats, learn: bool
    ) -> Floats:
        """Score one new point of each of the series ``rows`` (distinct) of ``bank``, at
        ``ts`` with ``values``; with ``learn``, then learn them (``bank`` is changed in place).
        """
        p = self.params
        memory = bank["memory"][rows]
        x = np.asarray(values, np.float64)
        t = np.asarray(ts, np.int64)
        finite = np.isfinite(x)
        x = np.where(finite, x, 0.0)
        warm = finite & (memory[:, SEEN] > p.warmup)

        # Where x lies on each series' grid, in global bins; the tolerance around it.
        lo, hi = memory[:, GRID_LO], memory[:, GRID_HI]
        width = np.where(hi > lo, (hi - lo) / BINS, 1.0)
        tolerance = np.maximum(p.resolution * (memory[:, SPAN_HI] - memory[:, SPAN_LO]), width)
        low, high = (x - tolerance - lo) / width, (x + tolerance - lo) / width

        columns, overlap = window(low, high, _reach(p.resolution, BINS), BINS)
        near = window_mass(bank["counts"], rows, columns, overlap) * memory[:, SCALE]
        total = memory[:, TOTAL] * memory[:, SCALE]
        novelty = (memory[:, NOVEL] * memory[:, SCALE] + 1.0) / (total + 1.0)
        p_global = (near + novelty) / (total + 1.0)

        phase = ((t % DAY_MS) * PHASES // DAY_MS).astype(np.intp)
        per_phase_bin = BINS / PHASE_BINS
        # At least the whole phase bin holding x, as the global window holds its bin.
        reach_p = np.maximum(tolerance, width * per_phase_bin) / (width * per_phase_bin)
        centre = (x - lo) / (width * per_phase_bin)
        columns_p, overlap_p = window(centre - reach_p, centre + reach_p,
                                      _reach(p.resolution, PHASE_BINS), PHASE_BINS)  # fmt: skip
        # The day's phase before, this one and the one after, side by side.
        around = rows[:, None] * PHASES + (phase[:, None] + np.array([-1, 0, 1])) % PHASES
        scale = np.take(bank["phase_scale"], around)
        cells = around[:, :, None] * PHASE_BINS + columns_p[:, None, :]
        found = np.take(bank["phase"].reshape(-1), cells).astype(np.float64)
        # Sums in a fixed order, so a series scores the same bits alone or among many.
        weighted = found * overlap_p[:, None, :]
        per_phase = row_sums(weighted.reshape(-1, weighted.shape[2])).reshape(-1, 3) * scale
        near_phase = per_phase[:, 0] + per_phase[:, 1] + per_phase[:, 2]
        totals = np.take(bank["phase_total"], around).astype(np.float64) * scale
        seen_phase = totals[:, 0] + totals[:, 1] + totals[:, 2]
        p_phase = (near_phase + p_global) / (seen_phase + 1.0)

        fade = np.exp(-np.maximum(t - memory[:, RECENT_AT], 0.0) / (p.recent_hours * HOUR_MS))
        near_recent = window_mass(bank["recent"], rows, columns, overlap) * fade
        recent_total = memory[:, RECENT_TOTAL] * fade
        p_recent = (near_recent + p_global) / (recent_total + 1.0)

        weights = memory[:, [W_GLOBAL, W_PHASE, W_RECENT]]
        experts = np.column_stack([p_global, p_phase, p_recent])
        mixed = weights[:, 0] * p_global + weights[:, 1] * p_phase + weights[:, 2] * p_recent
        updated = weights * experts * ((1.0 - p.share) / mixed)[:, None] + p.share / 3.0
        level = -np.log10(mixed) / p.full_scale
        since = np.where(np.isnan(memory[:, LAST_TS]), 0.0, t - memory[:, LAST_TS])
        alarm = memory[:, ALARM] * np.exp(-np.maximum(since, 0.0) / (p.rearm_hours * HOUR_MS))
        scores = np.where(level > alarm, level, level * p.rearm_factor)
        scores = np.where(warm, np.minimum(scores, 1.0), 0.0)
        if not learn:
            return scores

        memory[:, [W_GLOBAL, W_PHASE, W_RECENT]] = np.where(warm[:, None], updated, weights)
        memory[:, ALARM] = np.where(warm, np.maximum(alarm, level), memory[:, ALARM])
        novel = warm & (near < NOVEL_BELOW)
        self._learn(bank, rows[finite], memory[finite], t[finite], x[finite], novel[finite])
        return scores

    def _learn(
        self,
        bank: Bank,
        rows: npt.NDArray[np.intp],
        memory: Floats,
        t: Millis,
        x: Floats,
        novel: npt.NDArray[np.bool_],
    ) -> None:
        """Add the points to the memories of ``rows`` (``memory``: theirs, changed in place)."""
        p = self.params
        first = memory[:, SEEN] == 0
        memory[first, SPAN_LO] = memory[first, SPAN_HI] = x[first]
        nudge = np.maximum(np.abs(x[first]), 1.0) * 1e-9
        memory[first, GRID_LO], memory[first, GRID_HI] = x[first] - nudge, x[first] + nudge
        memory[:, SPAN_LO] = np.minimum(memory[:, SPAN_LO], x)
        memory[:, SPAN_HI] = np.maximum(memory[:, SPAN_HI], x)
        outside = (x < memory[:, GRID_LO]) | (x >= memory[:, GRID_HI])
        if outside.any():
            self._widen(bank, rows[outside], memory[outside], x[outside])
            memory[outside] = bank["memory"][rows[outside]]

        lo, hi = memory[:, GRID_LO], memory[:, GRID_HI]
        where = np.clip(((x - lo) / (hi - lo) * BINS).astype(np.intp), 0, BINS - 1)
        # Global: decayed per point, lazily (counts are stored divided by SCALE).
        keep = 1.0 - 1.0 / p.history
        memory[:, SCALE] *= keep
        scale = memory[:, SCALE]
        memory[:, TOTAL] += 1.0 / scale
        memory[:, NOVEL] += novel / scale
        flat = rows * BINS + where  # rows are distinct: no cell is added to twice
        bank["counts"].reshape(-1)[flat] += (1.0 / scale).astype(np.float32)
        # Recent: decayed over time, lazily (stored relative to RECENT_AT).
        tau = p.recent_hours * HOUR_MS
        first_recent = memory[:, SEEN] == 0
        memory[first_recent, RECENT_AT] = t[first_recent]
        grow = np.exp((t - memory[:, RECENT_AT]) / tau)
        memory[:, RECENT_TOTAL] += grow
        bank["recent"].reshape(-1)[flat] += grow.astype(np.float32)
        # Phase: each half hour's histogram decays as it gains a point, lazily too.
        phase = ((t % DAY_MS) * PHASES // DAY_MS).astype(np.intp)
        cell = rows * PHASES + phase
        scales = bank["phase_scale"].reshape(-1)
        scales[cell] *= np.float32(1.0 - PHASES / max(p.history, 2 * PHASES))
        added = 1.0 / scales[cell]
        bank["phase"].reshape(-1)[cell * PHASE_BINS + where * PHASE_BINS // BINS] += added
        bank["phase_total"].reshape(-1)[cell] += added
        low_scale = scales[cell] < PHASE_RENORMALISE
        if low_scale.any():
            fix = cell[low_scale]
            folded = bank["phase"].reshape(-1, PHASE_BINS)[fix] * scales[fix, None]
            bank["phase"].reshape(-1, PHASE_BINS)[fix] = folded
            bank["phase_total"].reshape(-1)[fix] *= scales[fix]
            scales[fix] = 1.0

        memory[:, LAST_TS] = t
        memory[:, SEEN] = np.minimum(memory[:, SEEN] + 1, 1e15)
        bank["memory"][rows] = memory
        self._renormalise(bank, rows, memory, t)

    def _widen(self, bank: Bank, rows: npt.NDArray[np.intp], memory: Floats, x: Floats) -> None:
        """Widen the grids of ``rows`` to hold ``x``, re-binning their counts."""
        lo, hi = memory[:, GRID_LO].copy(), memory[:, GRID_HI].copy()
        margin = GRID_MARGIN * (memory[:, SPAN_HI] - memory[:, SPAN_LO])
        new_lo = np.where(x < lo, x - margin, lo)
        new_hi = np.where(x >= hi, x + margin, hi)
        for name in ("counts", "recent", "phase"):
            bank[name][rows] = rebin(bank[name][rows], lo, hi, new_lo, new_hi)
        memory[:, GRID_LO], memory[:, GRID_HI] = new_lo, new_hi
        bank["memory"][rows] = memory

    def _renormalise(
        self, bank: Bank, rows: npt.NDArray[np.intp], memory: Floats, t: Millis
    ) -> None:
        """Fold the lazy decay into the stored counts where it has grown large."""
        small = memory[:, SCALE] < RENORMALISE
        if small.any():
            fix, scale = rows[small], memory[small, SCALE]
            bank["counts"][fix] = (bank["counts"][fix] * scale[:, None]).astype(np.float32)
            bank["memory"][fix, TOTAL] *= scale
            bank["memory"][fix, NOVEL] *= scale
            bank["memory"][fix, SCALE] = 1.0
        tau = self.params.recent_hours * HOUR_MS
        old = (t - memory[:, RECENT_AT]) / tau > 8.0
        if old.any():
            fix, fade = rows[old], np.exp(-(t[old] - memory[old, RECENT_AT]) / tau)
            bank["recent"][fix] = (bank["recent"][fix] * fade[:, None]).astype(np.float32)
            bank["memory"][fix, RECENT_TOTAL] *= fade
            bank["memory"][fix, RECENT_AT] = t[old]

    def prior(self, bank: Bank) -> Bank:
        """One state that summarises every series of ``bank``: the fleet prior a series never
        seen starts from. Their counts are put on one grid (the union of theirs) and averaged;
        the mixture's weights are averaged; the alarm level starts at zero."""
        memory = bank["memory"]
        seen = memory[:, SEEN] > 0
        merged = self.new_bank(1)
        if not seen.any():
            return merged
        memory = memory[seen]
        lo, hi = memory[:, GRID_LO], memory[:, GRID_HI]
        union_lo, union_hi = np.full_like(lo, lo.min()), np.full_like(hi, hi.max())
        into = merged["memory"][0]
        for name in ("counts", "recent"):
            fade = memory[:, SCALE] if name == "counts" else np.ones(len(memory))
            moved = rebin(bank[name][seen], lo, hi, union_lo, union_hi) * fade[:, None]
            merged[name][0] = moved.mean(axis=0).astype(np.float32)
        phase_scale = bank["phase_scale"][seen]
        phase = rebin(bank["phase"][seen], lo, hi, union_lo, union_hi).astype(np.float32)
        merged["phase"][0] = (phase * phase_scale[..., None]).mean(axis=0).astype(np.float16)
        merged["phase_total"][0] = (bank["phase_total"][seen] * phase_scale).mean(axis=0)
        latest = memory[:, RECENT_AT].max()
        tau = self.params.recent_hours * HOUR_MS
        recent_fade = np.exp(-(latest - memory[:, RECENT_AT]) / tau)
        merged["recent"][0] *= np.float32(np.mean(recent_fade))
        into[SPAN_LO], into[SPAN_HI] = memory[:, SPAN_LO].min(), memory[:, SPAN_HI].max()
        into[GRID_LO], into[GRID_HI] = lo.min(), hi.max()
        into[SCALE] = 1.0
        into[TOTAL] = np.mean(memory[:, TOTAL] * memory[:, SCALE])
        into[NOVEL] = np.mean(memory[:, NOVEL] * memory[:, SCALE])
        into[RECENT_AT] = latest
        into[RECENT_TOTAL] = np.mean(memory[:, RECENT_TOTAL] * recent_fade)
        weights = memory[:, [W_GLOBAL, W_PHASE, W_RECENT]].mean(axis=0)
        into[[W_GLOBAL, W_PHASE, W_RECENT]] = weights / weights.sum()
        into[LAST_TS] = memory[:, LAST_TS].max()
        into[SEEN] = memory[:, SEEN].max()
        return merged

    # -- one series --------------------------------------------------------------------------

    _ROW = np.zeros(1, np.intp)

    def update(self, ts: int, value: float | Floats) -> float:
        x = np.array([_scalar(value, self.name)])
        return float(self.step_rows(self.bank, self._ROW, np.array([int(ts)]), x, True)[0])

    def score_arrays(self, ts: Millis, values: Floats) -> Floats:
        column = _column(values, self.name)
        out = np.empty(len(column))
        for i in range(len(column)):
            out[i] = self.step_rows(self.bank, self._ROW, ts[i : i + 1], column[i : i + 1], True)[0]
        return out

    def learn(self, ts: Millis, values: Floats) -> None:
        self.score_arrays(ts, values)

    def score_values(self, ts: Millis, values: Floats) -> Floats:
        """Scores of the rows; the detector is left unchanged.

        One row (the common online request) is scored in place, as nothing is learnt before
        it; more rows are scored by a :meth:`copy`, which learns each before the next.
        """
        if len(ts) != 1:
            return self.copy().score_arrays(ts, values)
        column = _column(values, self.name)
        return self.step_rows(self.bank, self._ROW, ts[:1], column[:1], False)

    def copy(self) -> Self:
        twin = self.__class__(**self.params.model_dump())
        twin.bank = {name: array.copy() for name, array in self.bank.items()}
        twin.columns = None if self.columns is None else list(self.columns)
        return twin

    # -- state ------------------------------------------------------------------------------

    def get_state(self) -> State:
        return {}, {name: array.copy() for name, array in self.bank.items()}

    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        fresh = self.new_bank(1)
        for name, array in fresh.items():
            given = arrays.get(name)
            if given is None or given.shape != array.shape or given.dtype != array.dtype:
                raise ValueError(f"state array {name!r} missing or of the wrong shape or dtype")
        self.bank = {name: arrays[name].copy() for name in fresh}


def _reach(resolution: float, bins: int) -> int:
    """Bins a window of ``±resolution`` of the range (at least one bin each way) can touch."""
    return int(np.ceil(2 * max(resolution * bins, 1.0))) + 1


def _scalar(value: float | Floats, detector: str) -> float:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != 1:
        raise BadInputError(detector, f"scores one value column, got {array.size} values")
    return float(array[0])


def _column(values: Floats, detector: str) -> Floats:
    if values.ndim != 1:
        raise BadInputError(detector, f"scores one value column, got {values.shape[1]}")
    return values.astype(np.float64, copy=False)
