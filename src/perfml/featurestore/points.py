"""Checking and normalising points before they reach the store.

Everything a write receives passes through :func:`normalize` first, so that the rest of the
store can rely on one shape: ``metric`` and ``entity`` dictionary-encoded, ``ts`` in UTC
milliseconds, ``value`` a finite float, no nulls, valid names — or an error naming the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfml.featurestore.errors import InvalidPointsError, MissingColumnsError
from perfml.featurestore.schema import LONG_SCHEMA, METRIC_NAME, TIMESTAMP_TYPE

NAME_TYPE = pa.dictionary(pa.int32(), pa.string())
BATCH_SCHEMA = pa.schema(
    [
        pa.field("metric", NAME_TYPE, nullable=False),
        pa.field("entity", NAME_TYPE, nullable=False),
        pa.field("ts", TIMESTAMP_TYPE, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Normalized:
    """A batch in BATCH_SCHEMA (one chunk per column), and the non-finite points dropped."""

    table: pa.Table
    dropped_nonfinite: int


def normalize(
    data: pa.Table | pa.RecordBatch, where: str, first_row: int = 0, drop_nonfinite: bool = False
) -> Normalized:
    """Bring ``data`` to BATCH_SCHEMA or raise an error naming the row and the value.

    ``where`` names the input in messages (a file, ``"points"``); ``first_row`` is the position
    of the batch's first row in the whole write, so that a message points at the right row.
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    missing = [name for name in LONG_SCHEMA.names if name not in table.column_names]
    if missing:
        raise MissingColumnsError(where, missing, table.column_names)
    columns: dict[str, pa.Array] = {}
    for name in LONG_SCHEMA.names:
        column = table.column(name)
        if column.null_count:
            row = first_row + _first_true(pc.is_null(column))
            raise InvalidPointsError(f"{where} row {row}", f"{name} is empty")
        columns[name] = _cast(column, name, where, first_row)
    for name in ("metric", "entity"):
        _check_names(columns[name], name, where, first_row)
    values = columns["value"].to_numpy(zero_copy_only=False)
    finite = np.isfinite(values)
    dropped = 0
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        if not drop_nonfinite:
            raise InvalidPointsError(
                f"{where} row {first_row + bad}",
                f"value {float(values[bad])!r} is not finite "
                "(drop such points explicitly with the drop-nonfinite option)",
            )
        dropped = int(len(values) - finite.sum())
        mask = pa.array(finite)
        columns = {k: v.filter(mask) for k, v in columns.items()}
    return Normalized(pa.table(columns, schema=BATCH_SCHEMA), dropped)


def _cast(column: pa.ChunkedArray, name: str, where: str, first_row: int) -> pa.Array:
    target = BATCH_SCHEMA.field(name).type
    if name in ("metric", "entity"):
        if pa.types.is_dictionary(column.type):
            column = column.cast(pa.dictionary(pa.int32(), column.type.value_type))
            if column.type.value_type != pa.string():
                column = column.cast(pa.string())
        elif not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise InvalidPointsError(where, f"column {name} holds {column.type}, not text")
        if pa.types.is_dictionary(column.type):
            return column.unify_dictionaries().combine_chunks()
        return pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
    column = column.combine_chunks()
    if column.type == target:
        return column
    if name == "ts" and pa.types.is_timestamp(column.type):
        if column.type.tz is None:  # naive instants are taken as UTC
            column = pc.assume_timezone(column, "UTC")
        return column.cast(TIMESTAMP_TYPE)
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for offset, value in enumerate(column.to_pylist()):  # slow path only to name the culprit
        try:
            pa.array([value]).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidPointsError(
                f"{where} row {first_row + offset}", f"{name} {value!r} is not a valid {target}"
            ) from None
    raise InvalidPointsError(where, f"column {name} of type {column.type} cannot become {target}")


def _check_names(column: pa.DictionaryArray, name: str, where: str, first_row: int) -> None:
    codes = column.indices.to_numpy(zero_copy_only=False)
    used = np.flatnonzero(np.bincount(codes, minlength=len(column.dictionary)))
    names = column.dictionary.to_pylist()
    for code in used:
        text = names[code]
        if name == "metric" and not METRIC_NAME.match(text):
            problem = f"metric name {text!r} is not valid (letters, digits and _, not first digit)"
        elif name == "entity" and (not text or "/" in text or text != text.strip()):
            problem = f"entity {text!r} is not valid (non-empty, no '/', no outer spaces)"
        else:
            continue
        row = first_row + int(np.flatnonzero(codes == code)[0])
        raise InvalidPointsError(f"{where} row {row}", problem)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))[0])
