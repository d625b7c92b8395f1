"""Fuzz targets for every parser, and a runner for long fuzzing sessions.

Each ``fuzz_*`` function feeds one input to one parser and fails only when the
parser raises something other than a ``LinkageError`` (a crash, as opposed to
a clear refusal). The test suite drives them with hypothesis for a few hundred
inputs; ``python -m bench.fuzz --seconds 300`` mutates seed inputs for longer
(with atheris, coverage-guided, when it is installed).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from functools import lru_cache

import numpy as np

from linkage.batch import EncodedBatch, read_batch, write_batch
from linkage.clks import clks_to_base64
from linkage.errors import LinkageError
from linkage.encoding.mapping import parse_mapping
from linkage.encoding.schema import default_schema_text, load_schema

__all__ = [
    "TARGETS",
    "fuzz_batch_file",
    "fuzz_clkhash_json",
    "fuzz_csv_export",
    "fuzz_mapping",
    "fuzz_schema",
    "valid_batch_bytes",
]


@lru_cache(maxsize=1)
def valid_batch_bytes() -> bytes:
    """A small, valid batch file to mutate."""
    rng = np.random.default_rng(0)
    clks = rng.integers(0, 2**63, size=(4, 2), dtype=np.uint64)
    return write_batch(EncodedBatch(["a", "b", "c", "d"], clks, 128, "f" * 64, "k" * 64))


def _refusal_only(parse, data: bytes) -> bool:
    """True when the parser refused the input with a clear error; raises on anything else."""
    try:
        parse(data)
    except LinkageError as error:
        if not str(error):
            raise AssertionError("a refusal must say what is wrong") from error
        return True
    return False


def fuzz_batch_file(data: bytes) -> bool:
    return _refusal_only(read_batch, data)


def fuzz_clkhash_json(data: bytes) -> bool:
    return _refusal_only(read_batch, data)


def fuzz_mapping(data: bytes) -> bool:
    def parse(raw: bytes):
        mapping = parse_mapping(raw.decode("utf-8", "replace"))
        mapping.check(load_schema(default_schema_text()), ["ID", "NAAM"])
    return _refusal_only(parse, data)


def fuzz_schema(data: bytes) -> bool:
    return _refusal_only(load_schema, data)


def fuzz_csv_export(data: bytes) -> bool:
    from linkage_service.client.files import read_csv_export
    return _refusal_only(read_csv_export, data)


TARGETS = {
    "batch": (fuzz_batch_file, valid_batch_bytes),
    "clkhash-json": (fuzz_clkhash_json,
                     lambda: json.dumps({"clks": clks_to_base64(
                         read_batch(valid_batch_bytes()).clks)}).encode()),
    "mapping": (fuzz_mapping, lambda: b'record_id = "ID"\n[fields.family_name]\ncolumn = "NAAM"\n'),
    "schema": (fuzz_schema, lambda: default_schema_text().encode()),
    "csv": (fuzz_csv_export, lambda: "ID,NAAM,GEBDAT\n1,Van den Berg,04/03/1980\n".encode()),
}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(buffer) + 1)
        choice = rng.random()
        if choice < 0.4 and buffer:
            buffer[min(position, len(buffer) - 1)] = rng.randrange(256)
        elif choice < 0.7:
            del buffer[position:position + rng.randint(1, 32)]
        else:
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buffer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append")
    args = parser.parse_args(argv)
    print(f"{'target':<14}{'inputs':>10}{'refused':>10}{'crashes':>9}")
    crashes = 0
    for name in args.target or sorted(TARGETS):
        target, seed = TARGETS[name]
        rng = random.Random(name)
        corpus = [seed()]
        tried = refused = failed = 0
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            data = _mutate(rng, rng.choice(corpus))
            tried += 1
            try:
                if target(data):
                    refused += 1
                elif len(corpus) < 200:
                    corpus.append(data)
            except Exception as error:  # noqa: BLE001 - a crash is what we look for
                failed += 1
                print(f"CRASH in {name}: {type(error).__name__}: {error!r:.200}", file=sys.stderr)
        crashes += failed
        print(f"{name:<14}{tried:>10}{refused:>10}{failed:>9}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
