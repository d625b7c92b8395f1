"""The pure core: schema, batches, candidates, grouping, thresholds, evaluation."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from linkage.batch import EncodedBatch, read_batch, write_batch
from linkage.matching.candidates import CandidatePairs, dice
from linkage.clks import clks_from_base64, clks_from_bytes, clks_to_base64, popcounts
from linkage.encoding.encoder import key_check_value, parse_secret
from linkage.errors import (
    BatchFormatError,
    ClkError,
    DuplicateRecordError,
    EmptyBatchError,
    MappingError,
    SchemaError,
    SecretError,
)
from linkage.analysis.evaluation import pairwise_quality
from linkage.matching.grouping import greedy_groups
from linkage.encoding.mapping import parse_mapping
from linkage.encoding.schema import default_schema_text, load_schema
from linkage.matching.threshold import choose_threshold, parse_threshold

# -- schema -------------------------------------------------------------------------------------


def test_default_schema_loads_with_kinds():
    schema = load_schema(default_schema_text())
    assert schema.clkhash_bits == 1024 and schema.clk_bits == 2048  # balanced
    kinds = {f.identifier: f.kind for f in schema.features}
    assert kinds["date_of_birth"] == "date" and kinds["phone"] == "phone"
    assert kinds["family_name"] == "name"


def test_fingerprint_ignores_formatting_but_not_content():
    document = json.loads(default_schema_text())
    same = load_schema(json.dumps(document, indent=None, sort_keys=False))
    assert same.fingerprint == load_schema(default_schema_text()).fingerprint
    document["features"][0]["hashing"]["strategy"]["bitsPerToken"] = 99
    assert load_schema(json.dumps(document)).fingerprint != same.fingerprint


def test_schema_errors_list_every_problem():
    document = json.loads(default_schema_text())
    document["clkConfig"]["l"] = 1000
    document["features"][1]["hashing"]["hash"] = {"type": "doubleHash"}
    document["features"][2]["identifier"] = document["features"][0]["identifier"]
    document["normalisation"]["phone"] = "telepathy"
    with pytest.raises(SchemaError) as error:
        load_schema(json.dumps(document))
    message = str(error.value)
    assert len(error.value.problems) == 5  # the renamed feature also orphans its normaliser
    assert "multiple of 64" in message and "doubleHash" in message
    assert "appears twice" in message and "telepathy" in message


@pytest.mark.parametrize("text", ["not json", "[]", '{"version": 2}', '{"version": 3}'])
def test_bad_schemas_are_schema_errors(text):
    with pytest.raises(SchemaError):
        load_schema(text)


# -- mapping ------------------------------------------------------------------------------------


def test_mapping_shape_from_the_issue():
    mapping = parse_mapping('record_id = "ID"\n[fields.date_of_birth]\ncolumn = "GEBDAT"\n'
                            'date_format = "%d/%m/%Y"\n[fields.phone]\ncolumn = "TEL"\n'
                            'phone_region = "BE"\n')
    assert mapping.record_id == "ID"
    assert mapping.fields["date_of_birth"].date_format == "%d/%m/%Y"
    assert mapping.fields["phone"].phone_region == "BE"


def test_mapping_problems_are_all_listed():
    with pytest.raises(MappingError) as error:
        parse_mapping('colour = 1\n[fields.phone]\ncolumn = 3\n[fields.x]\nfoo = "y"\n'
                      'column = "X"\n')
    assert len(error.value.problems) == 3
    with pytest.raises(MappingError):
        parse_mapping("not = [toml")
    schema = load_schema(default_schema_text())
    mapping = parse_mapping('record_id = "ID"\n[fields.phone]\ncolumn = "TEL"\n')
    with pytest.raises(MappingError) as error:
        mapping.check(schema, ["ID", "NAME"])
    assert "TEL" in str(error.value) and "given_name" in str(error.value)


# -- secrets ------------------------------------------------------------------------------------


def test_key_check_value_distinguishes_secrets_and_hides_them():
    first, second = b"\x01" * 32, b"\x02" * 32
    assert key_check_value(first) == key_check_value(first)
    assert key_check_value(first) != key_check_value(second)
    assert first.hex() not in key_check_value(first)
    assert parse_secret((b"\xab" * 32).hex().encode() + b"\n") == b"\xab" * 32
    for bad in (b"zz", b"abcd", "é".encode()):
        with pytest.raises(SecretError):
            parse_secret(bad)


# -- CLKs and batches ----------------------------------------------------------------------------

clk_matrices = st.integers(1, 4).flatmap(
    lambda words: arrays(np.uint64, st.tuples(st.integers(0, 40), st.just(words))))


@given(clk_matrices)
def test_clk_serialisation_round_trips(matrix):
    bits = matrix.shape[1] * 64
    assert np.array_equal(clks_from_base64(clks_to_base64(matrix), bits).reshape(matrix.shape),
                          matrix)


def test_clk_bit_order_matches_clkhash_bytes():
    raw = bytes([0b10000000] + [0] * 7)
    matrix = clks_from_bytes([raw], 64)
    assert popcounts(matrix)[0] == 1
    assert base64.b64decode(clks_to_base64(matrix)[0]) == raw
    with pytest.raises(ClkError):
        clks_from_bytes([b"\x00" * 7], 64)
    with pytest.raises(ClkError):
        clks_from_bytes([b"\x00" * 8], 60)


def _batch(count=5, bits=128):
    rng = np.random.default_rng(count)
    clks = rng.integers(0, 2**63, size=(count, bits // 64), dtype=np.uint64)
    return EncodedBatch([f"r{i}" for i in range(count)], clks, bits, "f" * 64, "k" * 64)


def test_batch_file_round_trips_and_detects_damage():
    batch = _batch()
    data = write_batch(batch)
    back = read_batch(data)
    assert back.record_ids == batch.record_ids and np.array_equal(back.clks, batch.clks)
    assert back.schema_fingerprint == batch.schema_fingerprint
    with pytest.raises(BatchFormatError, match="truncated"):
        read_batch(data[:-10])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with pytest.raises(BatchFormatError, match="corrupted"):
        read_batch(bytes(flipped))
    with pytest.raises(BatchFormatError):
        read_batch(b"garbage")


def test_clkhash_json_is_read_with_row_numbers_as_ids():
    batch = _batch()
    document = json.dumps({"clks": clks_to_base64(batch.clks)}).encode()
    back = read_batch(document)
    assert back.record_ids == ["0", "1", "2", "3", "4"]
    assert back.schema_fingerprint is None and back.clk_bits == 128
    with pytest.raises(ClkError):
        read_batch(json.dumps({"clks": ["AAAA", "!!"]}).encode())
    with pytest.raises(EmptyBatchError):
        read_batch(b'{"clks": []}')
    with pytest.raises(BatchFormatError):
        read_batch(b'{"clk": []}')


def test_batch_validation():
    batch = _batch(3)
    with pytest.raises(DuplicateRecordError):
        EncodedBatch(["a", "a", "b"], batch.clks, 128, None, None).validate()
    with pytest.raises(EmptyBatchError):
        EncodedBatch([], batch.clks[:0], 128, None, None).validate()


# -- Dice and candidates --------------------------------------------------------------------------

def _random_clks(rng, count, words, density):
    bits = rng.random((count, words * 64)) < density
    return np.packbits(bits, axis=1).view("<u8").reshape(count, words)


@given(arrays(np.uint64, 4), arrays(np.uint64, 4))
def test_dice_is_symmetric_and_bounded(a, b):
    assert dice(a, b) == dice(b, a)
    assert 0.0 <= dice(a, b) <= 1.0
    if popcounts(a[None, :])[0]:
        assert dice(a, a) == 1.0


# -- grouping -----------------------------------------------------------------------------------

def _pairs(*triples):
    left, right, score = zip(*triples)
    return CandidatePairs(np.array(left), np.array(right), np.array(score, dtype=float))


def test_grouping_does_not_chain_dissimilar_records():
    # 0~1 and 1~2 but 0 and 2 are not similar: 2 must not join 0 and 1.
    grouping = greedy_groups(_pairs((0, 1, 0.95), (1, 2, 0.9)), 3, np.array([0, 1, 2]))
    assert grouping.labels[0] == grouping.labels[1] != grouping.labels[2]
    assert grouping.labels[2] == -1


def test_grouping_builds_multi_party_groups_when_all_pairs_agree():
    pairs = _pairs((0, 1, 0.95), (1, 2, 0.9), (0, 2, 0.85), (3, 4, 0.8))
    grouping = greedy_groups(pairs, 6, np.array([0, 1, 2, 0, 1, 2]))
    assert grouping.group_count == 2
    assert len({grouping.labels[i] for i in (0, 1, 2)}) == 1
    assert grouping.weakest_score[grouping.labels[0]] == pytest.approx(0.85)
    assert grouping.labels[5] == -1


def test_one_to_one_constraint_keeps_the_best_partner():
    pairs = _pairs((0, 2, 0.9), (1, 2, 0.95))
    grouping = greedy_groups(pairs, 3, np.array([0, 0, 1]), max_per_owner=1)
    assert grouping.labels[1] == grouping.labels[2] and grouping.labels[0] == -1
    duplicates = greedy_groups(_pairs((0, 1, 0.9), (0, 2, 0.9), (1, 2, 0.9)), 3,
                               np.array([0, 0, 1]))
    assert grouping.group_count == 1 and duplicates.group_count == 1
    assert len(set(duplicates.labels.tolist())) == 1


# -- thresholds -----------------------------------------------------------------------------------

def test_auto_threshold_separates_a_clear_mixture():
    rng = np.random.default_rng(3)
    non_matches = np.clip(rng.normal(0.56, 0.04, 3000), 0.5, 1)
    matches = np.clip(rng.normal(0.9, 0.04, 500), 0.5, 1)
    choice = choose_threshold(np.concatenate([non_matches, matches]))
    assert 0.66 < choice.threshold < 0.8
    assert choice.estimated_precision > 0.95 and choice.estimated_recall > 0.95
    probability = choice.model.match_probability(np.array([0.55, 0.95]))
    assert probability[0] < 0.05 and probability[1] > 0.95


def test_auto_threshold_falls_back_and_says_why():
    choice = choose_threshold(np.array([0.9, 0.91]))
    assert choice.threshold == 0.8 and "default" in choice.reason
    assert choose_threshold(np.array([0.9] * 50), 0.7).reason == "set by the coordinator"
    assert parse_threshold("auto") is None and parse_threshold(" 0.75 ") == 0.75


# -- evaluation -----------------------------------------------------------------------------------

def test_pairwise_quality_counts():
    truth = {("a", "1"): "x", ("b", "1"): "x", ("a", "2"): "x", ("b", "2"): "y"}
    predicted = {("a", "1"): 1, ("b", "1"): 1, ("b", "2"): 1}
    quality = pairwise_quality(predicted, truth)
    assert quality["all"].true_positives == 1
    assert quality["all"].false_positives == 2
    assert quality["all"].false_negatives == 2
    assert quality["within"].false_negatives == 1


@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(0, 120),
       st.sampled_from([None, 1, 2, {0: 1}, {1: 1, 2: 2}]), st.integers(1, 4))
@settings(max_examples=80, deadline=None)
def test_compiled_grouping_equals_the_reference(seed, records, pair_count, max_per_owner,
                                                owner_kinds):
    from linkage.matching.grouping import greedy_groups_reference

    rng = np.random.default_rng(seed)
    left = rng.integers(0, records, pair_count)
    right = rng.integers(0, records, pair_count)
    keep = left != right
    low, high = np.minimum(left, right)[keep], np.maximum(left, right)[keep]
    unique = np.unique(low * records + high)
    low, high = unique // records, unique % records
    scores = np.round(rng.random(low.size), 2)  # ties on purpose
    pairs = CandidatePairs(low, high, scores)
    owners = rng.integers(0, owner_kinds, records)
    fast = greedy_groups(pairs, records, owners, max_per_owner=max_per_owner)
    slow = greedy_groups_reference(pairs, records, owners, max_per_owner=max_per_owner)
    assert np.array_equal(fast.labels, slow.labels)
    assert np.allclose(fast.weakest_score, slow.weakest_score)


def test_per_owner_limit_keeps_duplicates_of_owners_that_did_not_declare_deduplication():
    # Records 0, 1 belong to owner 7 (deduplicated: one per group), 2, 3 to owner 9.
    pairs = CandidatePairs(np.array([0, 0, 2, 0, 1, 1]), np.array([1, 2, 3, 3, 2, 3]),
                           np.array([0.99, 0.95, 0.97, 0.9, 0.9, 0.9]))
    owners = np.array([7, 7, 9, 9])
    grouping = greedy_groups(pairs, 4, owners, max_per_owner={7: 1})
    members = sorted(sorted(m.tolist()) for m in grouping.members())
    assert members == [[0, 2, 3]]  # 0~1 (same deduplicated owner) refused; 2~3 allowed
    unlimited = greedy_groups(pairs, 4, owners)
    assert sorted(sorted(m.tolist()) for m in unlimited.members()) == [[0, 1, 2, 3]]


@pytest.mark.parametrize("ids, error, message", [
    (["a", "b", "a"], DuplicateRecordError, "position 2"),
    (["a", ""], BatchFormatError, "#1 has an empty"),
    (["a", "x" * 300], BatchFormatError, "limited to"),
    (["a", "b\x07"], BatchFormatError, r"U\+0007"),
    (["é", "b\u200b"], BatchFormatError, r"U\+200B"),
    (["é", "é"], DuplicateRecordError, "position 1"),
])
def test_validate_names_the_record_whatever_path_checks_it(ids, error, message):
    """Plain ASCII ids are checked in one pass; any other batch id by id, with the same messages."""
    batch = EncodedBatch(ids, np.zeros((len(ids), 2), np.uint64), 128, None, None)
    with pytest.raises(error, match=message):
        batch.validate()
