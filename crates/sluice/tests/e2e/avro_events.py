"""Avro events for the end-to-end test, made independently of Sluice:
fastavro encodes each datum; the single-object header (C3 01 and the
schema's CRC-64-AVRO fingerprint, little-endian) is built here from the
Avro specification; lines are base64.

  avro_events.py write EVENTS.ndjson V1.avsc V2.avsc STRAY.avsc OUT.lines EXPECT.json
      Generator events that have a string event_id, event_type and RFC 3339
      ts become datums: every third one of V2 (its `campaign` field set to
      "c-" + event_id), the rest of V1; 25 of STRAY (a schema nobody
      registered) and 25 lines that are not Avro are added. EXPECT.json:
      the distinct ids and how many lines of each kind.
  avro_events.py read TABLE
      What delta-rs reads: rows, distinct ids (SHA-256 of the sorted ids
      joined by newlines), rows with a campaign, and rows whose campaign is
      not "c-" + their id.
"""
import base64
import datetime
import hashlib
import io
import json
import os
import struct
import sys

EMPTY = 0xC15D213AA4D7A795
TABLE = []
for i in range(256):
    fp = i
    for _ in range(8):
        fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
    TABLE.append(fp)


def rabin(data):
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp


def single_object(parsed, canonical, record):
    from fastavro import schemaless_writer
    body = io.BytesIO()
    schemaless_writer(body, parsed, record)
    header = b"\xc3\x01" + struct.pack("<Q", rabin(canonical.encode()))
    return base64.b64encode(header + body.getvalue()).decode()


def load(path):
    from fastavro import parse_schema
    from fastavro.schema import to_parsing_canonical_form
    with open(path) as f:
        schema = json.load(f)
    parsed = parse_schema(schema)
    return parsed, to_parsing_canonical_form(parsed)


def write(events, v1, v2, stray, out, expect):
    v1, v2, stray = load(v1), load(v2), load(stray)
    lines, ids = [], set()
    kinds = {"v1": 0, "v2": 0, "stray": 0, "garbage": 0}
    with open(events) as f:
        for raw in f:
            try:
                e = json.loads(raw)
                ts = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
                if not (isinstance(e["event_id"], str) and isinstance(e["event_type"], str)) or ts.tzinfo is None:
                    continue
            except Exception:
                continue
            record = {"event_id": e["event_id"], "event_type": e["event_type"], "ts": ts,
                      "user_id": e.get("user_id") if isinstance(e.get("user_id"), str) else None}
            if len(lines) % 3 == 2:
                record["campaign"] = "c-" + e["event_id"]
                lines.append(single_object(*v2, record))
                kinds["v2"] += 1
            else:
                lines.append(single_object(*v1, record))
                kinds["v1"] += 1
            ids.add(e["event_id"])
    for i in range(25):
        record = {"event_id": f"stray-{i}", "ts": datetime.datetime(2026, 11, 23, tzinfo=datetime.timezone.utc)}
        lines.insert(i * 7, single_object(*stray, record))
        kinds["stray"] += 1
        lines.insert(i * 11, base64.b64encode(f"not avro {i}".encode()).decode())
        kinds["garbage"] += 1
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    with open(expect, "w") as f:
        json.dump({"distinct": len(ids), "ids_sha256": digest, **kinds}, f)


def read(path):
    from deltalake import DeltaTable
    rows = DeltaTable(path).to_pyarrow_table(columns=["event_id", "campaign"]).to_pylist()
    ids = sorted({r["event_id"] for r in rows})
    with_campaign = [r for r in rows if r["campaign"] is not None]
    print(json.dumps({
        "rows": len(rows),
        "distinct": len(ids),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "with_campaign": len(with_campaign),
        "wrong_campaign": sum(1 for r in with_campaign if r["campaign"] != "c-" + r["event_id"]),
    }), flush=True)
    # pyarrow's threads sometimes abort the interpreter's teardown
    # ("terminate called without an active exception") after the answer is out.
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(*sys.argv[2:8])
    else:
        read(sys.argv[2])
