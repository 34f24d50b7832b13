"""Independent reader for the end-to-end test: reads a Delta table with the
`deltalake` Python package (delta-rs via pyarrow) and prints what it holds.

Usage: read_delta.py TABLE_PATH ID_COLUMN TIME_COLUMN [SCHEMA_PATH]
Prints JSON: rows, distinct ids, SHA-256 of the sorted distinct ids joined by
newlines, distinct ids per UTC hour (YYYY-MM-DDTHH), rows whose dt/hour
partition values disagree with their event time, the revenue of distinct
purchases in cents (clickstream tables: `event_type`, `props.revenue`), the
table's columns in order, and, given SCHEMA_PATH, the JSON Schema's
properties in the order the file writes them.
"""
import hashlib
import json
import os
import sys

from deltalake import DeltaTable


def main():
    path, id_col, time_col = sys.argv[1:4]
    schema_properties = None
    if len(sys.argv) > 4:
        with open(sys.argv[4]) as f:
            schema_properties = list(json.load(f)["properties"])
    columns = [field.name for field in DeltaTable(path).schema().fields]
    table = DeltaTable(path).to_pyarrow_table(columns=[id_col, time_col, "dt", "hour", "event_type", "props"])
    ids = table.column(id_col).to_pylist()
    types = table.column("event_type").to_pylist()
    revenues = table.column("props").combine_chunks().field("revenue").to_pylist()
    times = table.column(time_col).to_pylist()
    dts = table.column("dt").to_pylist()
    hours = table.column("hour").to_pylist()
    seen = {}
    mismatched = 0
    revenue_cents = 0
    for i, t, d, h, kind, revenue in zip(ids, times, dts, hours, types, revenues):
        hour = t.strftime("%Y-%m-%dT%H")
        if i not in seen and kind == "purchase":
            revenue_cents += round(revenue * 100)
        seen.setdefault(i, hour)
        if f"{d}T{h}" != hour:
            mismatched += 1
    per_hour = {}
    for hour in seen.values():
        per_hour[hour] = per_hour.get(hour, 0) + 1
    digest = hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest()
    print(json.dumps({"rows": len(ids), "distinct": len(seen), "ids_sha256": digest,
                      "per_hour": dict(sorted(per_hour.items())), "partition_mismatches": mismatched,
                      "purchase_revenue_cents": revenue_cents, "columns": columns,
                      "schema_properties": schema_properties}), flush=True)
    # pyarrow's threads sometimes abort the interpreter's teardown
    # ("terminate called without an active exception") after the answer is out.
    os._exit(0)


if __name__ == "__main__":
    main()
