#!/usr/bin/env python3
"""Compaction reference in DuckDB: read a list of Parquet files (a lake
table's active files), drop duplicate event ids (first by file order), and
write hour-partitioned zstd Parquet, as `sluice compact` does.

  compact_duckdb.py FILE_LIST OUT_DIR [--threads N]

Prints one JSON line: engine, rows in, rows written, seconds.
"""
import argparse
import json
import shutil
import time

import duckdb


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file_list")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    files = [f for f in open(a.file_list).read().splitlines() if f]
    con = duckdb.connect()
    con.execute(f"SET threads={a.threads}")
    t0 = time.perf_counter()
    source = f"read_parquet({files!r}, hive_partitioning = true, filename = true, file_row_number = true)"
    n_in = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    con.execute(f"""
        COPY (
          SELECT * EXCLUDE (filename, file_row_number) FROM {source}
          QUALIFY row_number() OVER (PARTITION BY dt, hour, event_id ORDER BY filename, file_row_number) = 1
        ) TO '{a.out}' (FORMAT parquet, PARTITION_BY (dt, hour), COMPRESSION zstd)
    """)
    secs = time.perf_counter() - t0
    n_out = con.execute(f"SELECT count(*) FROM read_parquet('{a.out}/**/*.parquet')").fetchone()[0]
    print(json.dumps({"engine": f"duckdb {duckdb.__version__}", "threads": a.threads, "rows_in": n_in,
                      "rows_out": n_out, "seconds": round(secs, 3)}))


if __name__ == "__main__":
    main()
