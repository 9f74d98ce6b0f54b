"""The compiled inner loop of :mod:`perfml.detectors.streaming`: score, and learn, points of
many series held as rows of the same arrays.

One call walks the points in the order given — a series' points in its own order, series side
by side — and for each reads and writes only its series' row, so a series gets the same bits
whether it is stepped alone or among a million others, and a point costs the same whatever the
number of series. The arrays and the meaning of every number are the streaming detector's
(see its module); this is its arithmetic, compiled with Numba (cached on disk, so a process
pays the compilation once per machine, not per start), with NumPy's rules for a division by
zero (no check before each division) and floating-point contraction and reassociation allowed
(the same machine code scores every point, so a series still gets the same bits alone or
among others; NaN and infinities keep their meaning).

The time-of-day histograms are stored in half precision, which Numba does not compute in:
they are passed as their bits (``uint16``) and converted here, rounding to nearest even as
NumPy does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

DAY_MS = 86_400_000
HOUR_MS = 3_600_000.0
RENORMALISE = 1e-4
PHASE_RENORMALISE = 0.5
NOVEL_BELOW = 0.5
GAP = 3.0
"""A point follows the series' last one (and has a change since it) when it comes within
this many of the series' usual steps; a point after a longer gap, or scored against a state
learnt long before, is judged on its value alone."""
STEP_RATE = 0.05
"""How fast the usual step follows the intervals between points (each clipped at twice it,
so that gaps do not stretch it)."""

# memory's columns: shared, then per view from its first column (streaming's layout)
SCALE, LAST_TS, SEEN, RECENT_AT, RECENT_TOTAL, LAST_VALUE, PHASE_SCALE, STEP = range(8)
SPAN_LO, SPAN_HI, GRID_LO, GRID_HI, TOTAL, NOVEL, W_GLOBAL, W_PHASE, W_RECENT, ALARM = range(10)

# params' positions (streaming's ``_kernel_params``)
P_RESOLUTION, P_HISTORY, P_RECENT_HOURS, P_SHARE, P_REARM_HOURS, P_REARM_FACTOR = range(6)
P_CHANGE_WEIGHT, P_FULL_SCALE, P_WARMUP = 6, 7, 8


# -- half precision --------------------------------------------------------------------------


@intrinsic
def _float32_of_bits(typingctx: Any, bits: Any) -> Any:
    """The float32 whose bits are the uint32 ``bits`` (a reinterpretation, not a conversion)."""
    signature = types.float32(types.uint32)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return signature, codegen


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def half(bits: np.uint16) -> float:
    """The value of IEEE half-precision ``bits``: exponent and fraction moved into a float32's
    places, then rescaled by the difference of the exponent biases (exact, subnormals too)."""
    h = np.uint32(bits)
    magnitude = float(_float32_of_bits((h & np.uint32(0x7FFF)) << np.uint32(13)))  # type: ignore[call-arg]
    magnitude *= 2.0**112
    if (h & np.uint32(0x7C00)) == np.uint32(0x7C00):
        magnitude = math.inf if (h & np.uint32(0x3FF)) == 0 else math.nan
    return -magnitude if h & np.uint32(0x8000) else magnitude


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def float_to_half(value: float) -> np.uint16:
    """The half-precision bits nearest ``value`` (ties to even), as NumPy rounds it."""
    sign = 0x8000 if value < 0.0 or (value == 0.0 and math.copysign(1.0, value) < 0.0) else 0
    magnitude = abs(value)
    if math.isnan(magnitude):
        return np.uint16(0x7E00)
    if magnitude == 0.0:
        return np.uint16(sign)
    if magnitude >= 65520.0:  # past the largest half, rounded: infinity
        return np.uint16(sign | 0x7C00)
    mantissa, exponent = math.frexp(magnitude)  # magnitude = mantissa * 2**exponent
    biased = exponent - 1 + 15
    if biased <= 0:  # subnormal: whole units of 2**-24 (1,024 of them make the smallest normal)
        return np.uint16(sign | int(np.rint(magnitude * 2.0**24)))
    fraction = int(np.rint((2.0 * mantissa - 1.0) * 1024.0))  # may carry into the exponent
    return np.uint16(sign | ((biased << 10) + fraction))


# -- histograms -------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _mass(row: np.ndarray, low: float, high: float) -> float:
    """The mass of a histogram row over ``[low, high]`` in bin units (bin ``j`` is
    ``[j, j + 1)``, its mass spread evenly), bins outside the row weighing nothing."""
    bins = row.shape[0]
    first = max(math.floor(low), 0)
    last = min(math.floor(high), bins - 1)
    total = 0.0
    for j in range(first, last + 1):
        overlap = min(high, j + 1.0) - max(low, float(j))
        if overlap > 0.0:
            total += float(row[j]) * min(overlap, 1.0)
    return total


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _half_mass(row: np.ndarray, low: float, high: float) -> float:
    """:func:`_mass` of a half-precision row (its bits)."""
    bins = row.shape[0]
    first = max(math.floor(low), 0)
    last = min(math.floor(high), bins - 1)
    total = 0.0
    for j in range(first, last + 1):
        overlap = min(high, j + 1.0) - max(low, float(j))
        if overlap > 0.0:
            total += half(row[j]) * min(overlap, 1.0)
    return total


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _rebin(
    values: np.ndarray, lo: float, hi: float, new_lo: float, new_hi: float,
    cumulative: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """``values``, a histogram over ``[lo, hi]``, on the wider grid ``[new_lo, new_hi]`` into
    ``out``, each old bin's mass spread evenly over it (``cumulative``: scratch, one longer)."""
    bins = values.shape[0]
    cumulative[0] = 0.0
    for j in range(bins):
        cumulative[j + 1] = cumulative[j] + values[j]
    old_width = (hi - lo) / bins
    below_previous = 0.0
    for e in range(bins + 1):
        edge = new_lo + (new_hi - new_lo) / bins * e
        if old_width > 0.0:
            position = min(max((edge - lo) / old_width, 0.0), float(bins))
        else:  # a grid of no width holds its mass at lo
            position = float(bins) if edge > lo else 0.0
        whole = min(math.floor(position), bins - 1)
        below = cumulative[whole] + (position - whole) * values[whole]
        if e > 0:
            out[e - 1] = below - below_previous
        below_previous = below


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _widen_row(
    counts: np.ndarray, recent: np.ndarray, phase: np.ndarray, r: int, has_recent: bool,
    lo: float, hi: float, new_lo: float, new_hi: float,
) -> None:  # fmt: skip
    """Series ``r``'s histograms of one view, from the grid ``[lo, hi]`` to the wider one."""
    bins = counts.shape[1]
    values, out, cumulative = np.empty(bins), np.empty(bins), np.empty(bins + 1)
    for j in range(bins):
        values[j] = counts[r, j]
    _rebin(values, lo, hi, new_lo, new_hi, cumulative, out)
    for j in range(bins):
        counts[r, j] = np.float32(out[j])
    if has_recent:
        for j in range(bins):
            values[j] = recent[r, j]
        _rebin(values, lo, hi, new_lo, new_hi, cumulative, out)
        for j in range(bins):
            recent[r, j] = np.float32(out[j])
    phase_bins = phase.shape[2]
    values, out, cumulative = np.empty(phase_bins), np.empty(phase_bins), np.empty(phase_bins + 1)
    for q in range(phase.shape[1]):
        held = False
        for j in range(phase_bins):
            values[j] = half(phase[r, q, j])
            held = held or values[j] != 0.0
        if held:  # an empty time of day stays empty
            _rebin(values, lo, hi, new_lo, new_hi, cumulative, out)
            for j in range(phase_bins):
                phase[r, q, j] = float_to_half(out[j])


# -- one view of one point ------------------------------------------------------------------


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _surprise(
    mem: np.ndarray,
    first: int,
    counts: np.ndarray,
    recent: np.ndarray,
    has_recent: bool,
    phase: np.ndarray,
    phase_total: np.ndarray,
    neighbours: int,
    r: int,
    t: int,
    y: float,
    params: np.ndarray,
    out: np.ndarray,
) -> None:
    """How surprising ``y`` is to one view of series ``r``: writes its level, the mass near
    it and the three experts' updated weights into ``out``."""
    bins = counts.shape[1]
    phases = phase.shape[1]
    phase_bins = phase.shape[2]
    lo, hi = mem[first + GRID_LO], mem[first + GRID_HI]
    width = (hi - lo) / bins if hi > lo else 1.0
    span = mem[first + SPAN_HI] - mem[first + SPAN_LO]
    tolerance = max(params[P_RESOLUTION] * span, width)
    low, high = (y - tolerance - lo) / width, (y + tolerance - lo) / width
    scale = mem[SCALE]
    near = _mass(counts[r], low, high) * scale
    total = mem[first + TOTAL] * scale
    novelty = (mem[first + NOVEL] * scale + 1.0) / (total + 1.0)
    p_global = (near + novelty) / (total + 1.0)

    # The phases around this one; at least the whole phase bin holding y.
    per_phase_bin = width * bins / phase_bins
    reach = max(tolerance, per_phase_bin) / per_phase_bin
    centre = (y - lo) / per_phase_bin
    own = (t % DAY_MS) * phases // DAY_MS
    near_phase = 0.0
    seen_phase = 0.0
    for offset in range(-neighbours, neighbours + 1):
        q = (own + offset) % phases
        near_phase += _half_mass(phase[r, q], centre - reach, centre + reach)
        seen_phase += phase_total[r, q]
    factor = mem[PHASE_SCALE]
    p_phase = (near_phase * factor + p_global) / (seen_phase * factor + 1.0)

    share = params[P_SHARE]
    w_global, w_phase, w_recent = mem[first + W_GLOBAL], mem[first + W_PHASE], mem[first + W_RECENT]
    if has_recent:
        fade = math.exp(-max(t - mem[RECENT_AT], 0.0) / (params[P_RECENT_HOURS] * HOUR_MS))
        near_recent = _mass(recent[r], low, high) * fade
        p_recent = (near_recent + p_global) / (mem[RECENT_TOTAL] * fade + 1.0)
        experts = 3.0
    else:
        p_recent = 0.0
        experts = 2.0
    mixed = w_global * p_global + w_phase * p_phase + w_recent * p_recent
    keep = (1.0 - share) / mixed
    out[0] = -math.log10(mixed) / params[P_FULL_SCALE]
    out[1] = near
    out[2] = w_global * p_global * keep + share / experts
    out[3] = w_phase * p_phase * keep + share / experts
    out[4] = w_recent * p_recent * keep + share / experts if has_recent else 0.0


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _learn_view(
    mem: np.ndarray,
    first: int,
    counts: np.ndarray,
    recent: np.ndarray,
    has_recent: bool,
    phase: np.ndarray,
    phase_total: np.ndarray,
    r: int,
    t: int,
    y: float,
    novel: bool,
    size: float,
    params: np.ndarray,
) -> None:
    """Add ``y`` to one view's memories of series ``r`` (``mem`` is its row)."""
    bins = counts.shape[1]
    phases = phase.shape[1]
    phase_bins = phase.shape[2]
    if mem[first + GRID_HI] <= mem[first + GRID_LO]:  # no grid yet
        mem[first + SPAN_LO] = mem[first + SPAN_HI] = y
        # A first grid of almost no width, in proportion to the values (so that scaling a
        # series by a power of two scales every grid exactly).
        magnitude = max(abs(y), size)
        nudge = (magnitude if magnitude > 0.0 else 1.0) * 1e-9
        mem[first + GRID_LO], mem[first + GRID_HI] = y - nudge, y + nudge
        if has_recent:
            mem[RECENT_AT] = t
    mem[first + SPAN_LO] = min(mem[first + SPAN_LO], y)
    mem[first + SPAN_HI] = max(mem[first + SPAN_HI], y)
    lo, hi = mem[first + GRID_LO], mem[first + GRID_HI]
    if y < lo or y >= hi:
        margin = 0.1 * (mem[first + SPAN_HI] - mem[first + SPAN_LO])
        new_lo = y - margin if y < lo else lo
        new_hi = y + margin if y >= hi else hi
        _widen_row(counts, recent, phase, r, has_recent, lo, hi, new_lo, new_hi)
        mem[first + GRID_LO], mem[first + GRID_HI] = new_lo, new_hi
        lo, hi = new_lo, new_hi
    where = min(max(int((y - lo) / (hi - lo) * bins), 0), bins - 1)
    # Global: decayed per point, lazily (counts are stored divided by SCALE).
    scale = mem[SCALE]
    mem[first + TOTAL] += 1.0 / scale
    if novel:
        mem[first + NOVEL] += 1.0 / scale
    counts[r, where] += np.float32(1.0 / scale)
    if has_recent:  # decayed over time, lazily (stored relative to RECENT_AT)
        grow = math.exp((t - mem[RECENT_AT]) / (params[P_RECENT_HOURS] * HOUR_MS))
        mem[RECENT_TOTAL] += grow
        recent[r, where] += np.float32(grow)
    # Phase: decayed per point as the global counts, lazily (stored divided by PHASE_SCALE).
    q = (t % DAY_MS) * phases // DAY_MS
    added = 1.0 / mem[PHASE_SCALE]
    cell = where * phase_bins // bins
    phase[r, q, cell] = float_to_half(half(phase[r, q, cell]) + added)
    phase_total[r, q] += np.float32(added)


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def _fold(phase: np.ndarray, phase_total: np.ndarray, r: int, scale: float) -> None:
    """Multiply series ``r``'s time-of-day histograms by ``scale``."""
    for q in range(phase.shape[1]):
        for j in range(phase.shape[2]):
            phase[r, q, j] = float_to_half(half(phase[r, q, j]) * scale)
        phase_total[r, q] = np.float32(phase_total[r, q] * scale)


# -- points of many series ------------------------------------------------------------------


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
def step(
    memory: np.ndarray,
    level_counts: np.ndarray,
    level_recent: np.ndarray,
    level_phase: np.ndarray,
    level_phase_total: np.ndarray,
    change_counts: np.ndarray,
    change_phase: np.ndarray,
    change_phase_total: np.ndarray,
    rows: np.ndarray,
    ts: np.ndarray,
    values: np.ndarray,
    learn: bool,
    params: np.ndarray,
    level_first: int,
    change_first: int,
    level_neighbours: int,
    change_neighbours: int,
) -> np.ndarray:
    """Score each point ``(rows[i], ts[i], values[i])`` in the order given, and with
    ``learn`` learn it before the next (see :meth:`StreamingDetector.step_rows`)."""
    n = rows.shape[0]
    scores = np.zeros(n)
    level_out = np.zeros(5)
    change_out = np.zeros(5)
    no_recent = level_recent[:0]
    warmup = params[P_WARMUP]
    tau = params[P_RECENT_HOURS] * HOUR_MS
    for i in range(n):
        r = rows[i]
        if r < 0 or r >= memory.shape[0]:
            raise IndexError("a row is not one of the bank's series")
        t = ts[i]
        mem = memory[r]
        x = values[i]
        finite = math.isfinite(x)
        if not finite:
            x = 0.0
        seen = mem[SEEN]
        since = 0.0 if math.isnan(mem[LAST_TS]) else t - mem[LAST_TS]
        step_ms = mem[STEP]
        previous = math.isfinite(mem[LAST_VALUE]) and (step_ms == 0.0 or since <= GAP * step_ms)
        has_change = finite and previous
        change = x - mem[LAST_VALUE] if has_change else 0.0
        rearm = math.exp(-max(since, 0.0) / (params[P_REARM_HOURS] * HOUR_MS))

        _surprise(
            mem,
            level_first,
            level_counts,
            level_recent,
            True,
            level_phase,
            level_phase_total,
            level_neighbours,
            r,
            t,
            x,
            params,
            level_out,
        )
        _surprise(
            mem,
            change_first,
            change_counts,
            no_recent,
            False,
            change_phase,
            change_phase_total,
            change_neighbours,
            r,
            t,
            change,
            params,
            change_out,
        )
        level_warm = finite and seen > warmup
        change_warm = has_change and seen > warmup + 1
        score = 0.0
        for view in range(2):
            out = level_out if view == 0 else change_out
            first = level_first if view == 0 else change_first
            warm = level_warm if view == 0 else change_warm
            alarm = mem[first + ALARM] * rearm
            level = out[0]
            found = level if level > alarm else level * params[P_REARM_FACTOR]
            if warm:
                weight = 1.0 if view == 0 else params[P_CHANGE_WEIGHT]
                score = max(score, min(found, 1.0) * weight)
                if learn:
                    mem[first + W_GLOBAL] = out[2]
                    mem[first + W_PHASE] = out[3]
                    mem[first + W_RECENT] = out[4]
                    mem[first + ALARM] = max(alarm, level)
        scores[i] = score
        if not learn or not finite:
            continue

        size = abs(x)
        keep = 1.0 - 1.0 / params[P_HISTORY]
        mem[SCALE] *= keep
        mem[PHASE_SCALE] *= keep
        _learn_view(
            mem,
            level_first,
            level_counts,
            level_recent,
            True,
            level_phase,
            level_phase_total,
            r,
            t,
            x,
            level_warm and level_out[1] < NOVEL_BELOW,
            size,
            params,
        )
        if previous:  # the change view learns from a series' second point on, gaps aside
            _learn_view(
                mem,
                change_first,
                change_counts,
                no_recent,
                False,
                change_phase,
                change_phase_total,
                r,
                t,
                change,
                change_warm and change_out[1] < NOVEL_BELOW,
                size,
                params,
            )
        if since > 0.0:
            if step_ms == 0.0:
                mem[STEP] = since
            else:
                mem[STEP] = step_ms + STEP_RATE * (min(since, 2.0 * step_ms) - step_ms)
        mem[LAST_TS] = t
        mem[LAST_VALUE] = x
        mem[SEEN] = min(seen + 1.0, 1e15)
        # Fold the lazy decays into the stored counts where they have grown large.
        if mem[SCALE] < RENORMALISE:
            scale = mem[SCALE]
            for j in range(level_counts.shape[1]):
                level_counts[r, j] = np.float32(level_counts[r, j] * scale)
            for j in range(change_counts.shape[1]):
                change_counts[r, j] = np.float32(change_counts[r, j] * scale)
            for first in (level_first, change_first):
                mem[first + TOTAL] *= scale
                mem[first + NOVEL] *= scale
            mem[SCALE] = 1.0
        if mem[PHASE_SCALE] < PHASE_RENORMALISE:  # half precision: fold often
            scale = mem[PHASE_SCALE]
            _fold(level_phase, level_phase_total, r, scale)
            _fold(change_phase, change_phase_total, r, scale)
            mem[PHASE_SCALE] = 1.0
        if (t - mem[RECENT_AT]) / tau > 8.0:
            fade = math.exp(-(t - mem[RECENT_AT]) / tau)
            for j in range(level_recent.shape[1]):
                level_recent[r, j] = np.float32(level_recent[r, j] * fade)
            mem[RECENT_TOTAL] *= fade
            mem[RECENT_AT] = t
    return scores
