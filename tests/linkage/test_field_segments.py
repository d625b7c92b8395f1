"""Per-field segments and the Fellegi-Sunter model over their similarity levels."""

import hashlib

import numpy as np
import pytest

from linkage.matching.candidates import CandidatePairs, dice
from linkage.matching.fellegi_sunter import (
    LEVEL_THRESHOLDS,
    TrainingSession,
    fit_fellegi_sunter,
    levels_of,
)
from linkage.encoding.field_segments import (
    encode_field_segments,
    field_similarities,
    layout_for,
    swapped_name_similarities,
)
from linkage.encoding.schema import default_schema_text, load_schema

SECRET = hashlib.sha256(b"test field segments").digest()


@pytest.fixture(scope="module")
def encoded():
    schema = load_schema(default_schema_text())
    fields = schema.feature_names
    layout = layout_for(fields, [256, 256, 128, 256, 128, 128])
    values = [
        ["jan", "peeters", "1980-05-17", "kerkstraat 12", "antwerpen", "+32470123456"],
        ["jan", "peeters", "1980-05-17", "kerkstraat 12", "antwerpen", "+32470123456"],
        ["peeters", "jan", "1980-05-17", "", "antwerpen", ""],           # names swapped
        ["anna", "lindqvist", "1975-11-02", "storgatan 3", "malmo", "+46701234567"],
    ]
    clks = encode_field_segments(values, schema.text, SECRET, layout)
    return layout, clks


def test_the_segments_fill_the_layout_and_each_one_is_a_field(encoded):
    layout, clks = encoded
    assert clks.shape == (4, layout.words) and layout.bits == 1152
    # Record 2 has no address and no phone: those segments are empty.
    assert not layout.segment(clks, "address")[2].any()
    assert not layout.segment(clks, "phone")[2].any()
    assert layout.segment(clks, "address")[3].any()


def test_field_similarities_are_segment_dice_and_nan_when_missing(encoded):
    layout, clks = encoded
    pairs = CandidatePairs(np.array([0, 0, 0]), np.array([1, 2, 3]), np.zeros(3))
    sims = field_similarities(clks, layout, pairs)
    assert np.allclose(sims[0], 1.0)                      # identical records
    fields = list(layout.fields)
    assert np.isnan(sims[1, fields.index("address")]) and np.isnan(sims[1, fields.index("phone")])
    assert sims[1, fields.index("date_of_birth")] == 1.0
    for column, name in enumerate(fields):               # against the reference Dice
        expected = dice(layout.segment(clks, name)[0], layout.segment(clks, name)[3])
        assert sims[2, column] == pytest.approx(expected)
    assert np.nanmax(sims[2]) < 0.9


def test_swapped_names_agree_crosswise(encoded):
    layout, clks = encoded
    pairs = CandidatePairs(np.array([0]), np.array([2]), np.zeros(1))
    straight = field_similarities(clks, layout, pairs)[0, :2]
    crossed = swapped_name_similarities(clks, layout, pairs, "given_name", "family_name")[0]
    assert crossed.min() > 0.85 and straight.max() < 0.5


def test_levels_order_similarities_and_mark_missing():
    sims = np.array([[1.0, 0.9, np.nan], [0.72, 0.5, 0.1]])
    levels = levels_of(sims)
    assert levels.tolist() == [[0, 1, -1], [2, 3, len(LEVEL_THRESHOLDS)]]


M_TRUE = np.array([0.8, 0.1, 0.05, 0.03, 0.02])
U_TRUE = np.array([0.01, 0.02, 0.07, 0.2, 0.7])


def _population(rng, matches, non_matches, fields=4):
    count = len(LEVEL_THRESHOLDS) + 1
    levels = np.concatenate([rng.choice(count, (matches, fields), p=M_TRUE),
                             rng.choice(count, (non_matches, fields), p=U_TRUE)])
    truth = np.concatenate([np.ones(matches, bool), np.zeros(non_matches, bool)])
    return levels, truth


def _sessions(levels):
    """Pairs blocked on exact agreement of field 0, then of field 1 (as the blocked EM does)."""
    return [TrainingSession(levels[levels[:, k] == 0], (k,)) for k in (0, 1)]


def test_blocked_em_recovers_m_and_u_from_unlabelled_pairs():
    rng = np.random.default_rng(3)
    levels, truth = _population(rng, 3_000, 300_000)
    levels[rng.random(levels.shape) < 0.1] = -1                      # missing: no evidence
    random_levels = rng.choice(len(U_TRUE), (50_000, 4), p=U_TRUE)
    share = truth.mean()
    model = fit_fellegi_sunter(tuple("abcd"), _sessions(levels), random_levels, share)
    assert model.sessions == (1, 1, 2, 2)
    assert np.allclose(model.m, M_TRUE, atol=0.04), model.m
    assert np.allclose(model.u, U_TRUE, atol=0.01)
    predicted = model.match_probability(levels) >= 0.5
    assert (predicted == truth).mean() > 0.99
    # A missing field contributes no weight; weights never rise with a worse level.
    assert model.field_weights(np.array([[-1, -1, -1, -1]])).sum() == 0.0
    assert np.all(np.diff(model.weights, axis=1) <= 0)


def test_a_few_labelled_pairs_move_the_model_only_a_little():
    rng = np.random.default_rng(4)
    levels, truth = _population(rng, 2_000, 200_000, fields=3)
    random_levels = rng.choice(len(U_TRUE), (20_000, 3), p=U_TRUE)
    sessions = _sessions(levels)
    plain = fit_fellegi_sunter(tuple("abc"), sessions, random_levels, truth.mean())
    reviewed = fit_fellegi_sunter(tuple("abc"), sessions, random_levels, truth.mean(),
                                  known_non_matches=np.array([[0, 0, 0], [0, 0, 1]]))
    assert np.abs(plain.m - reviewed.m).max() < 0.01
    assert np.abs(plain.match_probability(levels) - reviewed.match_probability(levels)).max() \
        < 0.2


def test_exact_segment_blocking_pairs_records_that_share_a_field(encoded):
    from linkage.encoding.field_segments import exact_segment_pairs

    layout, clks = encoded
    by_date = exact_segment_pairs(clks, layout, ("date_of_birth",))
    assert sorted(zip(by_date.left.tolist(), by_date.right.tolist())) == [(0, 1), (0, 2), (1, 2)]
    assert np.all(by_date.left < by_date.right)
    # Record 2 has no phone: an empty segment blocks nothing.
    by_phone = exact_segment_pairs(clks, layout, ("phone",))
    assert list(zip(by_phone.left.tolist(), by_phone.right.tolist())) == [(0, 1)]
    assert by_phone.score[0] == pytest.approx(1.0)
    # Blocks above max_block are left out.
    assert len(exact_segment_pairs(clks, layout, ("date_of_birth",), max_block=2).left) == 0


def test_term_frequencies_make_rare_exact_agreements_count_more(encoded):
    from linkage.encoding.field_segments import segment_frequencies

    layout, clks = encoded
    share = segment_frequencies(clks, layout, "date_of_birth")
    assert share.tolist() == [0.75, 0.75, 0.75, 0.25]
    assert np.isnan(segment_frequencies(clks, layout, "phone")[2])
    rng = np.random.default_rng(5)
    levels, truth = _population(rng, 1_000, 100_000, fields=2)
    model = fit_fellegi_sunter(("a", "b"), _sessions(levels),
                               rng.choice(len(U_TRUE), (20_000, 2), p=U_TRUE), truth.mean())
    pair = np.array([[0, 3]])
    rare, common = np.array([[0.001, np.nan]]), np.array([[0.2, np.nan]])
    assert model.match_weight(pair, rare)[0] > model.match_weight(pair)[0] \
        > model.match_weight(pair, common)[0]
    # Only exact agreements are adjusted.
    assert model.match_weight(np.array([[1, 3]]), rare)[0] == model.match_weight(
        np.array([[1, 3]]))[0]


# -- the schema section, the encoder and the batch format -----------------------------------------

def _segments_schema_text(**changes) -> str:
    import json
    from importlib import resources

    document = json.loads(resources.files("linkage.encoding").joinpath(
        "schemas/person_segments.json").read_text("utf-8"))
    document.update(changes)
    return json.dumps(document)


def test_a_schema_names_its_segments_and_the_clk_is_their_concatenation():
    schema = load_schema(_segments_schema_text())
    assert schema.segments.fields == tuple(schema.feature_names)
    assert schema.clk_bits == schema.segments.bits == 1152
    # A schema without the section is a record-level CLK, as before.
    assert load_schema(default_schema_text()).segments is None
    assert load_schema(default_schema_text()).clk_bits == 2048


def test_every_problem_of_the_section_is_named_at_once():
    from linkage.errors import SchemaError

    bad = {"segments": [{"feature": "given_name", "bits": 256},
                        {"feature": "family_name", "bits": 192},
                        {"feature": "given_name", "bits": 256},
                        {"feature": "shoe_size", "bits": 100},
                        {"feature": "city", "bits": 128, "weight": 3}],
           "colour": "red"}
    with pytest.raises(SchemaError) as caught:
        load_schema(_segments_schema_text(fieldSegments=bad, hardening={"balancing": True}))
    text = "\n".join(caught.value.problems)
    for expected in ("fieldSegments/colour: unknown key",
                     "segments/2: feature 'given_name' has a segment already",
                     "segments/3: no feature named 'shoe_size'",
                     "segments/3: 'bits' must be a multiple of 64",
                     "segments/4: must be an object with 'feature' and 'bits' only",
                     "give them equal bits, got [256, 192]",
                     "hardening option 'balancing'"):
        assert expected in text, text
    with pytest.raises(SchemaError, match="non-empty 'segments' list"):
        load_schema(_segments_schema_text(fieldSegments={"segments": []}))
    # BLIP flips bits in place: allowed.
    assert load_schema(_segments_schema_text(hardening={"blip": {"epsilon": 8}})).segments


def test_encode_emits_segments_in_a_version_3_batch_and_old_batches_still_read():
    import json
    import struct

    from linkage_service.client.files import encode_export
    from linkage.batch import EncodedBatch, read_batch, write_batch

    text = _segments_schema_text()
    schema = load_schema(text)
    csv = ("record_id,given_name,family_name,date_of_birth,address,city,phone\n"
           "r1,Jan,Peeters,1980-05-17,Kerkstraat 12,Antwerpen,+32470123456\n"
           "r2,Peeters,Jan,1980-05-17,,Antwerpen,\n").encode()
    outcome = encode_export(text, SECRET, csv, None)
    batch = outcome.batch
    assert batch.field_layout == schema.segments and batch.clks.shape == (2, 18)
    # The segments are the per-field encoder's, field by field.
    expected = encode_field_segments(outcome.prepared.values, text, SECRET, schema.segments)
    assert np.array_equal(batch.clks, expected)
    data = write_batch(batch)
    header = json.loads(data[12:12 + struct.unpack_from("<I", data, 8)[0]])
    assert header["version"] == 3 and header["field_layout"]["words"] == [4, 4, 2, 4, 2, 2]
    again = read_batch(data)
    assert again.field_layout == schema.segments and np.array_equal(again.clks, batch.clks)
    # A record-level batch is still version 2, and reads without a layout.
    plain = EncodedBatch(["a"], np.zeros((1, 16), np.uint64) + 1, 1024, None, None)
    data = write_batch(plain)
    assert json.loads(data[12:12 + struct.unpack_from("<I", data, 8)[0]])["version"] == 2
    assert read_batch(data).field_layout is None


def test_linkage_encode_writes_the_segments_the_schema_names(tmp_path):
    from click.testing import CliRunner

    from linkage_service.client.cli import main
    from linkage.batch import read_batch

    (tmp_path / "schema.json").write_text(_segments_schema_text())
    (tmp_path / "records.csv").write_text(
        "record_id,given_name,family_name,date_of_birth,address,city,phone\n"
        "r1,Jan,Peeters,1980-05-17,Kerkstraat 12,Antwerpen,+32470123456\n")
    runner = CliRunner()
    made = runner.invoke(main, ["keygen", "-o", str(tmp_path / "secret.key")])
    assert made.exit_code == 0, made.output
    encoded = runner.invoke(main, ["encode", "--schema", str(tmp_path / "schema.json"),
                                   "--secret", str(tmp_path / "secret.key"),
                                   str(tmp_path / "records.csv"), "-o", str(tmp_path / "b.clk")])
    assert encoded.exit_code == 0, encoded.output
    batch = read_batch((tmp_path / "b.clk").read_bytes())
    assert batch.field_layout == load_schema(_segments_schema_text()).segments
    assert batch.clk_bits == 1152
