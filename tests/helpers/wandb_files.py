"""Reading a W&B offline run file (``wandb/offline-run-*/run-<id>.wandb``) back, as ``wandb sync`` would upload
it: LevelDB's log format (32 KiB blocks of records split as FULL, or FIRST, MIDDLE... LAST) after a 7-byte
``:W&B`` header, each record one protobuf ``Record`` of wandb."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
HEADER = 7  # checksum (4), length (2), type (1)
FULL, LAST = 1, 4


def records(path: Path) -> Iterator[object]:
    """The records of an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = 7, b""
    while position + HEADER <= len(data):
        room = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if room < HEADER or (length == 0 and kind == 0):  # the zero padding at the end of a block
            position += room
            continue
        pending += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_run(run_dir: Path) -> dict:
    """What the W&B offline runs under `run_dir` hold: per run file, its run id, its config keys, the summary
    values it set (JSON) and the metrics of its history."""
    runs = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        run = {"id": None, "config": set(), "summary": {}, "history": set()}
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run["id"] = record.run.run_id
            elif kind == "config":
                run["config"] |= {item.key for item in record.config.update}
            elif kind == "history":
                run["history"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
            elif kind == "summary":
                run["summary"].update({item.key: item.value_json for item in record.summary.update if item.key})
        runs.append(run)
    return {"runs": runs}
