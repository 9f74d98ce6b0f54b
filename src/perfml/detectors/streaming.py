"""The default detector: how surprising is this value, and this change, given every similar
moment seen before?

A point is scored by the probability that the metric lands where it did, estimated without a
model of its shape: the share of the remembered mass within a tolerance of it (``±5%`` of the
range seen, the tolerance of NAB's spatial check). It is looked at in two *views*, each with
memories of its own: the **level** (the value itself) and the **change** (the value minus the
series' previous one), so that a value in its usual range reached as it never was (a cycle
that skips, a sensor that starts to flap) is seen as well as a value never seen. In each view,
experts estimate the probability from different memories, and a Bayesian mixture weighs them
by how well each has predicted so far:

- **global**: the long-run history (decayed over ``history`` points). A value never seen
  before gets the Good–Turing probability of novelty (how often past points were new), so a
  metric that keeps producing new values is not alarmed by yet another one, and a regular one
  is, loudly;
- **phase**: the points seen at the same time of day (the daily cycle of performance metrics),
  by the half hour for the level and by the hour for the change;
- **recent** (the level only): the last day (decayed over ``recent_hours``), which absorbs a
  new regime once it has become the norm.

The contextual experts shrink toward the global estimate (one pseudo-observation of it), so a
value is surprising only if no expert expects it; the mixture's weights follow each expert's
predictive likelihood with a fixed share (Herbster–Warmuth), so every series settles on what
explains it. A view's level is ``-log10`` of its mixed probability over ``full_scale`` (10: a
one-in-10^10 event scores 1), NAB's log-likelihood scale. An alarm no stronger than the level
of the view's recent alarms (decaying over ``rearm_hours``) is reported at ``rearm_factor`` of
its strength, so that a long episode is announced once. The point's score is the larger of the
level's and ``change_weight`` times the change's. The score of a row uses that row and the rows
before it; the row is then learnt. Missing values score 0 and are not learnt.

**The memory is a sketch, not the points**: decayed counts in 60 bins over the series' range
(level: global and recent) and in 40 bins over the range of its changes, and in 20 bins for
each half hour (level) or hour (change) of the day, on grids that widen when a value falls
outside them — 4,016 bytes per series whatever its length. Every series is a row of the same
arrays, so :meth:`StreamingDetector.step_rows` scores (and learns) one new point of each of many
series in a few NumPy passes; the per-series path is the same code on one row, so both give the
same scores.

Design record — NAB, the 51 files of six categories scored as one corpus (one threshold):
standard 75.2, cross-validated 73.8 (threshold chosen on half the files, 50 random splits);
artificialWithAnomaly 59.6, realAWSCloudwatch 77.0, realAdExchange 69.1, realTraffic 90.2,
realTweets 72.6 (Numenta HTM: 73.0, 71.2; 70.2, 73.4, 76.9, 82.5, 68.0). The level view alone
scored 70.6 (69.0). Tried on the 51 files: the change's phases by the half hour with 10 or
12 bins (71.4, 72.0: its 20 bins matter more than the finer hours), without neighbouring hours
(74.6), with a recent expert (73.8), one alarm level for both views (73.4: an alarm on one
view should not silence the other), views combined by their mean or norm instead of the
larger (66.4–66.5); changes over 3 or 12 points, or a smoothed level, as a third view (72.0–
72.6); Gaussian time-of-day statistics instead of histograms (66.4); the level's score as a
tail probability among the series' own past scores (62.8–69.8: the largest surprises so far
all look alike). Before the change view, with the level alone: grid margins of 0, 3, 25, 50%
(70.3, 68.4, 67.4, 66.2 against 69.6 at 10% before the phase window held a whole bin), 96
phases 69.9, 24 or 16 phases 68.1, 66.7, 15 or 12 phase bins 65.3, 64.0, 120 / 240 bins 70.0 /
70.9, recent memory 12 / 48 h 67.7 / 69.5, history 4,032 69.4, fixed share 0.02 69.0,
re-arming over 48 h 70.0.

>>> import numpy as np
>>> ts = np.arange(3000, dtype=np.int64) * 300_000
>>> values = 50 + 10 * np.sin(np.arange(3000) * 2 * np.pi / 288)
>>> values[2500] = 90.0
>>> scores = StreamingDetector().score_arrays(ts, values)
>>> int(np.argmax(scores)), bool(scores[2500] > 0.5), bool(scores[1000:2500].max() < 0.3)
(2500, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
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
GRID_MARGIN = 0.1
"""A widened grid reaches past the new value by this share of the range seen."""
RENORMALISE = 1e-4
"""Stored counts are rescaled when their lazy decay factor falls below this."""
PHASE_RENORMALISE = 1.0 / 16.0
"""The same for the time-of-day counts, stored in half precision."""
NOVEL_BELOW = 0.5
"""A point is new when less remembered mass than this lies within the tolerance of it."""

# The numbers every series keeps once, one column each of ``memory``...
SCALE, LAST_TS, SEEN, RECENT_AT, RECENT_TOTAL, LAST_VALUE = range(6)
SHARED = 6
# ... and those it keeps per view, from the view's first column.
SPAN_LO, SPAN_HI, GRID_LO, GRID_HI, TOTAL, NOVEL, W_GLOBAL, W_PHASE, W_RECENT, ALARM = range(10)
FIELDS = 10


@dataclass(frozen=True)
class View:
    """One way of looking at a series' points, with memories of its own: the value itself
    (``level``) or its change since the series' previous point (``change``)."""

    name: str
    first: int
    """Its first column in ``memory``."""
    bins: int
    """Bins of its long-run histogram (and of the recent one)."""
    phases: int
    """Its time-of-day histograms, one per ``24 / phases`` hours."""
    phase_bins: int
    """Bins of each time-of-day histogram."""
    neighbours: int
    """Phases either side that count with a point's own."""
    recent: bool
    """Whether it has a recent expert."""

    def column(self, field: int) -> int:
        return self.first + field

    @property
    def experts(self) -> list[int]:
        return [self.column(W_GLOBAL), self.column(W_PHASE), self.column(W_RECENT)]


LEVEL = View("level", SHARED, bins=60, phases=48, phase_bins=20, neighbours=1, recent=True)
CHANGE = View(
    "change", SHARED + FIELDS, bins=40, phases=24, phase_bins=20, neighbours=1, recent=False
)
VIEWS = (LEVEL, CHANGE)
MEMORY = SHARED + FIELDS * len(VIEWS)

Bank = dict[str, npt.NDArray[Any]]
"""The states of many series: ``memory`` (rows × 26 float64); per view, the long-run
histogram ``<view>_counts`` (rows × 60 float32) and the time-of-day histograms
``<view>_phase`` (rows × phases × 20 float16) with their lazy decay ``<view>_phase_scale``
(rows × phases float32); and the level's recent histogram ``level_recent``."""


@register
class StreamingDetector(Detector):
    """Scores each point by how improbable its value, and its change, are under mixtures of
    remembered contexts."""

    name = "streaming"
    state_version = 3
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
        change_weight: float = Field(
            0.9, ge=0.0, le=1.0, description="weight of the change's score beside the value's"
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
        memory[:, LAST_TS] = memory[:, LAST_VALUE] = np.nan
        bank = {"memory": memory}
        for view in VIEWS:
            memory[:, view.experts] = 1.0 / (3.0 if view.recent else 2.0)
            if not view.recent:
                memory[:, view.column(W_RECENT)] = 0.0
            bank[f"{view.name}_counts"] = np.zeros((rows, view.bins), np.float32)
            if view.recent:
                bank[f"{view.name}_recent"] = np.zeros((rows, view.bins), np.float32)
            bank[f"{view.name}_phase"] = np.zeros((rows, view.phases, view.phase_bins), np.float16)
            bank[f"{view.name}_phase_scale"] = np.ones((rows, view.phases), np.float32)
        return bank

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
        seen = memory[:, SEEN]
        # The change since the series' last (finite) point; none before its first.
        has_change = finite & np.isfinite(memory[:, LAST_VALUE])
        change = np.where(has_change, x - memory[:, LAST_VALUE], 0.0)
        since = np.where(np.isnan(memory[:, LAST_TS]), 0.0, t - memory[:, LAST_TS])
        rearm = np.exp(-np.maximum(since, 0.0) / (p.rearm_hours * HOUR_MS))

        scores = np.zeros(len(rows))
        found = []
        for view, y, warm, weight in (
            (LEVEL, x, finite & (seen > p.warmup), 1.0),
            (
                CHANGE,
                np.where(has_change, change, 0.0),
                has_change & (seen > p.warmup + 1),
                p.change_weight,
            ),
        ):
            level, near, updated = self._surprise(bank, view, rows, memory, t, y)
            alarm = memory[:, view.column(ALARM)] * rearm
            score = np.where(level > alarm, level, level * p.rearm_factor)
            scores = np.maximum(scores, np.where(warm, np.minimum(score, 1.0) * weight, 0.0))
            found.append((view, y, warm, level, near, updated, alarm))
        if not learn:
            return scores

        for view, _, warm, level, _, updated, alarm in found:
            experts = view.experts
            memory[:, experts] = np.where(warm[:, None], updated, memory[:, experts])
            memory[:, view.column(ALARM)] = np.where(
                warm, np.maximum(alarm, level), memory[:, view.column(ALARM)]
            )
        self._learn(bank, rows[finite], memory[finite], t[finite],
                    [(view, y[finite], (warm & (near < NOVEL_BELOW))[finite])
                     for view, y, warm, _, near, _, _ in found])  # fmt: skip
        return scores

    def _surprise(
        self, bank: Bank, view: View, rows: npt.NDArray[np.intp], memory: Floats, t: Millis,
        y: Floats,
    ) -> tuple[Floats, Floats, Floats]:  # fmt: skip
        """How surprising ``y`` is to ``view``'s memories of ``rows``: its level (``-log10``
        of the mixture's probability over ``full_scale``), the remembered mass near it, and
        the mixture's weights updated by how well each expert predicted it."""
        p = self.params
        c = view.column
        # Where y lies on each series' grid, in bins; the tolerance around it.
        lo, hi = memory[:, c(GRID_LO)], memory[:, c(GRID_HI)]
        width = np.where(hi > lo, (hi - lo) / view.bins, 1.0)
        span = memory[:, c(SPAN_HI)] - memory[:, c(SPAN_LO)]
        tolerance = np.maximum(p.resolution * span, width)
        low, high = (y - tolerance - lo) / width, (y + tolerance - lo) / width

        columns, overlap = window(low, high, _reach(p.resolution, view.bins), view.bins)
        counts = bank[f"{view.name}_counts"]
        near = window_mass(counts, rows, columns, overlap) * memory[:, SCALE]
        total = memory[:, c(TOTAL)] * memory[:, SCALE]
        novelty = (memory[:, c(NOVEL)] * memory[:, SCALE] + 1.0) / (total + 1.0)
        p_global = (near + novelty) / (total + 1.0)

        phase = ((t % DAY_MS) * view.phases // DAY_MS).astype(np.intp)
        per_phase_bin = view.bins / view.phase_bins
        # At least the whole phase bin holding y, as the global window holds its bin.
        reach_p = np.maximum(tolerance, width * per_phase_bin) / (width * per_phase_bin)
        centre = (y - lo) / (width * per_phase_bin)
        reach = _reach(p.resolution, view.phase_bins)
        columns_p, overlap_p = window(centre - reach_p, centre + reach_p, reach, view.phase_bins)
        # The day's phases around this one, side by side.
        offsets = np.arange(-view.neighbours, view.neighbours + 1)
        around = rows[:, None] * view.phases + (phase[:, None] + offsets) % view.phases
        scale = np.take(bank[f"{view.name}_phase_scale"], around)
        histograms = bank[f"{view.name}_phase"].reshape(-1, view.phase_bins)
        cells = around[:, :, None] * view.phase_bins + columns_p[:, None, :]
        found = np.take(histograms.reshape(-1), cells).astype(np.float64)
        # Sums in a fixed order, so a series scores the same bits alone or among many.
        weighted = found * overlap_p[:, None, :]
        per_phase = row_sums(weighted.reshape(-1, weighted.shape[2])).reshape(len(rows), -1)
        near_phase = _in_order(per_phase * scale)
        whole = histograms[around.reshape(-1)].astype(np.float64)
        seen_phase = _in_order(row_sums(whole).reshape(len(rows), -1) * scale)
        p_phase = (near_phase + p_global) / (seen_phase + 1.0)

        weights = memory[:, view.experts]
        if view.recent:
            fade = np.exp(-np.maximum(t - memory[:, RECENT_AT], 0.0) / (p.recent_hours * HOUR_MS))
            recent = bank[f"{view.name}_recent"]
            near_recent = window_mass(recent, rows, columns, overlap) * fade
            recent_total = memory[:, RECENT_TOTAL] * fade
            p_recent = (near_recent + p_global) / (recent_total + 1.0)
            share = np.full(3, p.share / 3.0)
        else:
            p_recent = np.zeros(len(rows))
            share = np.array([p.share / 2.0, p.share / 2.0, 0.0])
        experts = np.column_stack([p_global, p_phase, p_recent])
        mixed = weights[:, 0] * p_global + weights[:, 1] * p_phase + weights[:, 2] * p_recent
        updated = weights * experts * ((1.0 - p.share) / mixed)[:, None] + share
        level = -np.log10(mixed) / p.full_scale
        return level, near, updated

    def _learn(
        self,
        bank: Bank,
        rows: npt.NDArray[np.intp],
        memory: Floats,
        t: Millis,
        views: list[tuple[View, Floats, npt.NDArray[np.bool_]]],
    ) -> None:
        """Add the points to the memories of ``rows`` (``memory``: theirs, changed in place):
        to each view, its value ``y`` of them, ``novel`` where it was new."""
        p = self.params
        seen = memory[:, SEEN].copy()
        previous = np.isfinite(memory[:, LAST_VALUE])
        size = np.abs(views[0][1])  # how large the series' values are, for a first grid
        # Global: decayed per point, lazily (counts are stored divided by SCALE).
        memory[:, SCALE] *= 1.0 - 1.0 / p.history
        for view, y, novel in views:
            # The change view learns from a series' second point on.
            learns = previous if view is CHANGE else np.ones(len(rows), bool)
            self._learn_view(bank, view, rows[learns], memory, learns, t[learns], y[learns],
                             novel[learns], size[learns])  # fmt: skip
        # Recent (the level's): decayed over time, lazily (stored relative to RECENT_AT).
        memory[:, LAST_TS] = t
        memory[:, LAST_VALUE] = views[0][1]
        memory[:, SEEN] = np.minimum(seen + 1, 1e15)
        bank["memory"][rows] = memory
        self._renormalise(bank, rows, memory, t)

    def _learn_view(
        self,
        bank: Bank,
        view: View,
        rows: npt.NDArray[np.intp],
        all_memory: Floats,
        learns: npt.NDArray[np.bool_],
        t: Millis,
        y: Floats,
        novel: npt.NDArray[np.bool_],
        size: Floats,
    ) -> None:
        """Add ``y`` to ``view``'s memories of ``rows``, the rows ``learns`` of
        ``all_memory`` (``size``: the magnitude of the series' values there)."""
        p = self.params
        c = view.column
        memory = all_memory[learns]
        first = memory[:, c(GRID_HI)] <= memory[:, c(GRID_LO)]  # no grid yet
        memory[first, c(SPAN_LO)] = memory[first, c(SPAN_HI)] = y[first]
        # A first grid of almost no width, in proportion to the values (so that scaling a
        # series by a power of two scales every grid exactly).
        magnitude = np.maximum(np.abs(y[first]), size[first])
        nudge = np.where(magnitude > 0.0, magnitude, 1.0) * 1e-9
        memory[first, c(GRID_LO)], memory[first, c(GRID_HI)] = y[first] - nudge, y[first] + nudge
        memory[:, c(SPAN_LO)] = np.minimum(memory[:, c(SPAN_LO)], y)
        memory[:, c(SPAN_HI)] = np.maximum(memory[:, c(SPAN_HI)], y)
        outside = (y < memory[:, c(GRID_LO)]) | (y >= memory[:, c(GRID_HI)])
        if outside.any():
            self._widen(bank, view, rows[outside], memory[outside], y[outside])
            memory[outside] = bank["memory"][rows[outside]]

        lo, hi = memory[:, c(GRID_LO)], memory[:, c(GRID_HI)]
        where = np.clip(((y - lo) / (hi - lo) * view.bins).astype(np.intp), 0, view.bins - 1)
        scale = memory[:, SCALE]
        memory[:, c(TOTAL)] += 1.0 / scale
        memory[:, c(NOVEL)] += novel / scale
        flat = rows * view.bins + where  # rows are distinct: no cell is added to twice
        bank[f"{view.name}_counts"].reshape(-1)[flat] += (1.0 / scale).astype(np.float32)
        if view.recent:
            tau = p.recent_hours * HOUR_MS
            memory[first, RECENT_AT] = t[first]
            grow = np.exp((t - memory[:, RECENT_AT]) / tau)
            memory[:, RECENT_TOTAL] += grow
            bank[f"{view.name}_recent"].reshape(-1)[flat] += grow.astype(np.float32)
        # Phase: each histogram decays as it gains a point, lazily too.
        phase = ((t % DAY_MS) * view.phases // DAY_MS).astype(np.intp)
        cell = rows * view.phases + phase
        scales = bank[f"{view.name}_phase_scale"].reshape(-1)
        scales[cell] *= np.float32(1.0 - view.phases / max(p.history, 2 * view.phases))
        added = 1.0 / scales[cell]
        histograms = bank[f"{view.name}_phase"].reshape(-1, view.phase_bins)
        histograms.reshape(-1)[cell * view.phase_bins + where * view.phase_bins // view.bins] += (
            added
        )
        low_scale = scales[cell] < PHASE_RENORMALISE
        if low_scale.any():
            fix = cell[low_scale]
            histograms[fix] = histograms[fix] * scales[fix, None]
            scales[fix] = 1.0
        all_memory[learns] = memory

    def _widen(
        self, bank: Bank, view: View, rows: npt.NDArray[np.intp], memory: Floats, y: Floats
    ) -> None:
        """Widen the grids of ``view`` of ``rows`` to hold ``y``, re-binning its counts."""
        c = view.column
        lo, hi = memory[:, c(GRID_LO)].copy(), memory[:, c(GRID_HI)].copy()
        margin = GRID_MARGIN * (memory[:, c(SPAN_HI)] - memory[:, c(SPAN_LO)])
        new_lo = np.where(y < lo, y - margin, lo)
        new_hi = np.where(y >= hi, y + margin, hi)
        for name in _histograms(view):
            bank[name][rows] = rebin(bank[name][rows], lo, hi, new_lo, new_hi)
        memory[:, c(GRID_LO)], memory[:, c(GRID_HI)] = new_lo, new_hi
        bank["memory"][rows] = memory

    def _renormalise(
        self, bank: Bank, rows: npt.NDArray[np.intp], memory: Floats, t: Millis
    ) -> None:
        """Fold the lazy decay into the stored counts where it has grown large."""
        small = memory[:, SCALE] < RENORMALISE
        if small.any():
            fix, scale = rows[small], memory[small, SCALE]
            for view in VIEWS:
                counts = bank[f"{view.name}_counts"]
                counts[fix] = (counts[fix] * scale[:, None]).astype(np.float32)
                bank["memory"][fix, view.column(TOTAL)] *= scale
                bank["memory"][fix, view.column(NOVEL)] *= scale
            bank["memory"][fix, SCALE] = 1.0
        tau = self.params.recent_hours * HOUR_MS
        old = (t - memory[:, RECENT_AT]) / tau > 8.0
        if old.any():
            fix, fade = rows[old], np.exp(-(t[old] - memory[old, RECENT_AT]) / tau)
            recent = bank[f"{LEVEL.name}_recent"]
            recent[fix] = (recent[fix] * fade[:, None]).astype(np.float32)
            bank["memory"][fix, RECENT_TOTAL] *= fade
            bank["memory"][fix, RECENT_AT] = t[old]

    def prior(self, bank: Bank) -> Bank:
        """One state that summarises every series of ``bank``: the fleet prior a series never
        seen starts from. Each view's counts are put on one grid (the union of theirs) and
        averaged; the mixtures' weights are averaged; the alarm levels start at zero."""
        memory = bank["memory"]
        seen = memory[:, SEEN] > 0
        merged = self.new_bank(1)
        if not seen.any():
            return merged
        memory = memory[seen]
        into = merged["memory"][0]
        latest = memory[:, RECENT_AT].max()
        tau = self.params.recent_hours * HOUR_MS
        recent_fade = np.exp(-(latest - memory[:, RECENT_AT]) / tau)
        for view in VIEWS:
            c = view.column
            lo, hi = memory[:, c(GRID_LO)], memory[:, c(GRID_HI)]
            union_lo, union_hi = np.full_like(lo, lo.min()), np.full_like(hi, hi.max())
            for name in _histograms(view):
                moved = rebin(bank[name][seen], lo, hi, union_lo, union_hi).astype(np.float32)
                if name.endswith("_phase"):
                    moved = moved * bank[f"{name}_scale"][seen][..., None]
                elif name.endswith("_counts"):
                    moved = moved * memory[:, SCALE, None]
                else:
                    moved = moved * recent_fade[:, None]
                merged[name][0] = moved.mean(axis=0).astype(merged[name].dtype)
            into[c(SPAN_LO)], into[c(SPAN_HI)] = (
                memory[:, c(SPAN_LO)].min(),
                memory[:, c(SPAN_HI)].max(),
            )
            into[c(GRID_LO)], into[c(GRID_HI)] = lo.min(), hi.max()
            into[c(TOTAL)] = np.mean(memory[:, c(TOTAL)] * memory[:, SCALE])
            into[c(NOVEL)] = np.mean(memory[:, c(NOVEL)] * memory[:, SCALE])
            weights = memory[:, view.experts].mean(axis=0)
            into[view.experts] = weights / weights.sum()
        into[SCALE] = 1.0
        into[RECENT_AT] = latest
        into[RECENT_TOTAL] = np.mean(memory[:, RECENT_TOTAL] * recent_fade)
        into[LAST_TS] = memory[:, LAST_TS].max()
        into[LAST_VALUE] = np.nan  # a new series' first point has no change
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


def _histograms(view: View) -> list[str]:
    """The bank's histograms of ``view`` (their last axis is its grid)."""
    return [f"{view.name}_{part}" for part in ("counts", "recent", "phase")
            if part != "recent" or view.recent]  # fmt: skip


def _in_order(terms: Floats) -> Floats:
    """Each row's sum, its columns added left to right (the same bits for any number of
    rows)."""
    total = terms[:, 0].copy()
    for column in range(1, terms.shape[1]):
        total += terms[:, column]
    return total


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
