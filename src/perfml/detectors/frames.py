"""What detectors read: a frame with a ``ts`` column and value columns, as NumPy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from perfml.detectors.errors import BadInputError

Frame: TypeAlias = pa.Table | pa.RecordBatch | pd.DataFrame
Floats: TypeAlias = npt.NDArray[np.float64]
Millis: TypeAlias = npt.NDArray[np.int64]


def as_arrays(
    frame: Frame, detector: str, columns: Sequence[str] | None = None
) -> tuple[Millis, Floats, list[str]]:
    """``(ts in epoch ms, values, columns)``: values 1-D for one value column, else 2-D
    (rows × columns); ``columns`` names the value columns read.

    Without ``columns``, a frame with a ``value`` column gives that column; otherwise every
    numeric column but ``ts`` (and the long format's ``metric`` and ``entity``), in order.
    """
    table = (
        pa.Table.from_pandas(frame, preserve_index=False)
        if isinstance(frame, pd.DataFrame)
        else (pa.Table.from_batches([frame]) if isinstance(frame, pa.RecordBatch) else frame)
    )
    if "ts" not in table.column_names:
        raise BadInputError(detector, f"the frame has no 'ts' column (has {table.column_names})")
    ts_column = table.column("ts")
    if pa.types.is_timestamp(ts_column.type):
        ts = ts_column.cast(pa.timestamp("ms", tz=ts_column.type.tz)).cast(pa.int64())
    elif pa.types.is_integer(ts_column.type):
        ts = ts_column.cast(pa.int64())
    else:
        raise BadInputError(detector, f"'ts' must be a timestamp, not {ts_column.type}")
    if columns is None:
        if "value" in table.column_names:
            columns = ["value"]
        else:
            columns = [
                name
                for name, kind in zip(table.column_names, table.schema.types, strict=True)
                if name not in ("ts", "metric", "entity")
                and (pa.types.is_floating(kind) or pa.types.is_integer(kind))
            ]
    missing = [c for c in columns if c not in table.column_names]
    if missing or not columns:
        raise BadInputError(detector, f"the frame lacks value column(s) {missing or ['value']}")
    millis = np.asarray(ts.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = np.column_stack(
        [
            np.asarray(table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False))
            for c in columns
        ]
    )
    if len(millis) > 1 and np.any(np.diff(millis) < 0):
        raise BadInputError(detector, "'ts' must not go backwards (sort the frame by ts)")
    return millis, values[:, 0].copy() if len(columns) == 1 else values, list(columns)
