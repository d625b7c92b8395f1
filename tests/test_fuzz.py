"""Hostile and broken input for every parser: a clear domain error or a result, never a crash.

The same functions are fuzz targets (``python -m bench.fuzz``) for longer runs.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import (
    fuzz_batch_file,
    fuzz_clkhash_json,
    fuzz_csv_export,
    fuzz_mapping,
    fuzz_schema,
    valid_batch_bytes,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_as_batch_file(data):
    fuzz_batch_file(data)


@FUZZ
@given(st.data())
def test_damaged_batch_files(data):
    original = bytearray(valid_batch_bytes())
    for _ in range(data.draw(st.integers(1, 5))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(original) - 1, 0)))
        if kind == "flip" and original:
            original[position] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del original[position:position + data.draw(st.integers(1, 64))]
        else:
            original[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    fuzz_batch_file(bytes(original))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                       children, max_size=4),
    max_leaves=20)


@FUZZ
@given(st.one_of(json_values.map(lambda v: json.dumps({"clks": v})),
                 st.lists(st.text(max_size=30), max_size=5).map(lambda v: json.dumps({"clks": v})),
                 st.text(max_size=200)))
def test_clkhash_json(text):
    fuzz_clkhash_json(text.encode("utf-8"))


@FUZZ
@given(st.text(max_size=400))
def test_mapping_toml(text):
    fuzz_mapping(text.encode("utf-8"))


@FUZZ
@given(json_values)
def test_schema_json(value):
    fuzz_schema(json.dumps(value).encode("utf-8"))


@FUZZ
@given(st.one_of(
    st.binary(max_size=600),
    st.lists(st.lists(st.text(max_size=12), max_size=9), max_size=6).map(
        lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8")),
    st.text(max_size=300).map(lambda t: ("\ufeff" + "ID,VOORNAAM\n" + t).encode("utf-8")),
    st.just(b"ID,NAAM\n1," + b"x" * 200_000 + b"\n"),
    st.just("ID,NAAM\n1,Müller\n".encode("latin-1")),
))
def test_csv_exports(data):
    fuzz_csv_export(data)
