#!/usr/bin/env python3
"""Ingest reference in DuckDB: the batch job a user would otherwise write
for the generator's clickstream -- read NDJSON, keep rows that pass the
schema's main checks (required ids, event type enum, id and timestamp
shape), drop repeated event ids, write hour-partitioned zstd Parquet.

  ingest_duckdb.py INPUT.ndjson OUT_DIR [--threads N]

Prints one JSON line: engine, threads, rows in, rows written, seconds.
DuckDB's reader is lenient (rows the schema rejects can pass), so this is a
yardstick for speed, not for correctness.
"""
import argparse
import json
import os
import shutil
import time

import duckdb

# The generator's event shape (crates/sluice-gen/schemas/clickstream.schema.json).
SHAPE = {
    "event_id": "VARCHAR",
    "event_type": "VARCHAR",
    "ts": "VARCHAR",
    "user_id": "VARCHAR",
    "session_id": "VARCHAR",
    "page": "STRUCT(url VARCHAR, referrer VARCHAR, title VARCHAR)",
    "device": "STRUCT(os VARCHAR, browser VARCHAR, screen STRUCT(w BIGINT, h BIGINT))",
    "geo": "STRUCT(country VARCHAR, region VARCHAR, city VARCHAR)",
    "props": "JSON",
}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z"
EVENT_TYPES = ("page_view", "click", "search", "add_to_cart", "purchase")


def count_lines(con, path):
    return con.execute(
        "SELECT count(*) FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = CHR(1), quote = '', "
        "escape = '', header = false, auto_detect = false)",
        [path],
    ).fetchone()[0]


def main():
    args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("input")
    args.add_argument("out")
    args.add_argument("--threads", type=int, default=os.cpu_count())
    a = args.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    shape = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in SHAPE.items()) + "}"
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    started = time.perf_counter()
    rows_in = count_lines(con, a.input)
    con.execute(f"""
        COPY (
          WITH parsed AS (
            SELECT * FROM read_json('{a.input}', format = 'newline_delimited', columns = {shape},
                                    ignore_errors = true)
          ), checked AS (
            SELECT *, TRY_CAST(ts AS TIMESTAMPTZ) AS event_time FROM parsed
            WHERE event_id IS NOT NULL AND user_id IS NOT NULL AND session_id IS NOT NULL
              AND regexp_full_match(event_id, '{UUID}')
              AND event_type IN ({types})
              AND regexp_full_match(ts, '{TIMESTAMP}')
          )
          SELECT * EXCLUDE (ts),
                 strftime(event_time AT TIME ZONE 'UTC', '%Y-%m-%d') AS dt,
                 strftime(event_time AT TIME ZONE 'UTC', '%H') AS hour
          FROM checked WHERE event_time IS NOT NULL
          QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY event_time) = 1
        ) TO '{a.out}' (FORMAT parquet, PARTITION_BY (dt, hour), COMPRESSION zstd)
    """)
    seconds = time.perf_counter() - started
    rows_out = con.execute(f"SELECT count(*) FROM read_parquet('{a.out}/**/*.parquet')").fetchone()[0]
    print(json.dumps({
        "engine": f"duckdb {duckdb.__version__}",
        "threads": a.threads,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows_in / seconds),
    }))


if __name__ == "__main__":
    main()
