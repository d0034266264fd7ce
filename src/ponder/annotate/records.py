"""Resumable chunked JSONL: the on-disk record of a long labelling run.

Work is cut into fixed chunks (e.g. 16 problems). A finished chunk is appended as one
`write` followed by fsync; every line carries its chunk index and the chunk's record count.
On restart, complete chunks are kept and a torn or partial tail (a kill mid-write) is cut
off, so the run continues at the first unfinished chunk. Because each chunk's randomness is
a function of (seed, chunk index) only, the finished file equals that of an uninterrupted
run: no record lost, none duplicated.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ponder.runs import atomic_write


def read_complete_chunks(path: Path) -> tuple[list[dict], int]:
    """(records of the leading complete chunks, index of the next chunk to run). Truncates
    the file to exactly those records if a partial chunk trails them."""
    path = Path(path)
    if not path.exists():
        return [], 0
    lines = path.read_text().splitlines()
    records, good_lines, pending, pending_lines = [], [], [], []
    expected = 0
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # torn last line
        if rec.get("chunk") != expected:
            break
        pending.append(rec)
        pending_lines.append(line)
        if len(pending) == rec["chunk_records"]:
            records += pending
            good_lines += pending_lines
            pending, pending_lines = [], []
            expected += 1
    if len(good_lines) != len(lines):
        atomic_write(path, "".join(l + "\n" for l in good_lines))
    return records, expected


def append_chunk(path: Path, chunk: int, records: list[dict]) -> None:
    """Append one chunk's records durably (one write, then fsync). An empty chunk still
    writes a marker line so that resume knows it is done."""
    if not records:
        records = [{"marker": True}]
    lines = [json.dumps({"chunk": chunk, "chunk_records": len(records), **r}) for r in records]
    with open(path, "a") as f:
        f.write("".join(l + "\n" for l in lines))
        f.flush()
        os.fsync(f.fileno())

