"""CLK hardening: salting, diffusion, BLIP and balancing, their schema section and encoding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from linkage.batch import EncodedBatch, read_batch, write_batch
from linkage.clks import popcounts
from linkage.encoding.encoder import encode_values, key_check_value, prepare_records
from linkage.matching.engine import link_records
from linkage.errors import SchemaError
from linkage.encoding.hardening import (
    BlipSpec,
    DiffusionSpec,
    HardeningSpec,
    apply_hardening,
    balance,
    balancing_permutation,
    blip,
    diffuse,
    diffusion_index_sets,
    flip_probability,
    salt_key,
    salt_value,
)
from linkage.encoding.mapping import AgencyMapping, FieldMapping
from linkage.encoding.schema import LinkageSchema, default_schema_text, load_schema

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
SALT_YEAR = {"feature": "date_of_birth", "prefixLength": 4}

BELGIAN = AgencyMapping(record_id="ID", fields={
    "given_name": FieldMapping("VOORNAAM"), "family_name": FieldMapping("NAAM"),
    "date_of_birth": FieldMapping("GEBDAT", date_format="%d/%m/%Y"),
    "address": FieldMapping("ADRES"), "city": FieldMapping("GEMEENTE"),
    "phone": FieldMapping("TEL", phone_region="BE"),
})


def _schema(hardening: dict | None) -> LinkageSchema:
    document = json.loads(default_schema_text())
    document.pop("hardening", None)
    if hardening is not None:
        document["hardening"] = hardening
    return load_schema(json.dumps(document))


def _row(record_id, given="Jan", family="Van den Berg", born="04/03/1980",
         address="Kerkstraat 12", city="Antwerpen", phone="0470 12 34 56"):
    return {"ID": record_id, "VOORNAAM": given, "NAAM": family, "GEBDAT": born, "ADRES": address,
            "GEMEENTE": city, "TEL": phone}


def _random_clks(count: int, bits: int = 1024, density: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(np.packbits(rng.random((count, bits)) < density,
                                            axis=1)).view("<u8")


def _dice(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    common = np.bitwise_count(left & right).sum(axis=1)
    return 2 * common / (popcounts(left) + popcounts(right))


def _unpacked(clks: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(clks).view(np.uint8), axis=1)


# -- balancing ----------------------------------------------------------------------------------


def test_balancing_gives_every_clk_the_same_popcount():
    clks = _random_clks(300, density=0.2)
    clks[0] = 0  # an empty CLK too
    balanced = balance(clks, balancing_permutation(SECRET, 2048))
    assert balanced.shape == (300, 32)
    assert set(popcounts(balanced).tolist()) == {1024}
    assert len(set(popcounts(clks).tolist())) > 10


def test_balancing_is_the_clk_and_its_complement_under_a_secret_permutation():
    clks = _random_clks(5)
    permutation = balancing_permutation(SECRET, 2048)
    assert sorted(permutation.tolist()) == list(range(2048))
    bits = _unpacked(clks)
    expected = np.concatenate([bits, 1 - bits], axis=1)[:, permutation]
    assert np.array_equal(_unpacked(balance(clks, permutation)), expected)
    assert np.array_equal(balancing_permutation(SECRET, 2048), permutation)
    assert not np.array_equal(balancing_permutation(OTHER_SECRET, 2048), permutation)


def test_balancing_preserves_the_dice_order_in_expectation():
    rng = np.random.default_rng(1)
    base = _random_clks(400, seed=2)
    noise = rng.uniform(0.0, 0.4, size=(400, 1))
    flips = np.ascontiguousarray(np.packbits(rng.random((400, 1024)) < noise, axis=1)).view("<u8")
    variant = base ^ flips
    permutation = balancing_permutation(SECRET, 2048)
    before = _dice(base, variant)
    after = _dice(balance(base, permutation), balance(variant, permutation))
    assert stats.spearmanr(before, after).statistic > 0.95
    # More noise, lower score, on average, both before and after balancing.
    low, high = noise[:, 0] < 0.1, noise[:, 0] > 0.3
    assert after[low].mean() > after[high].mean() + 0.1
    assert before[low].mean() > before[high].mean()


# -- diffusion ----------------------------------------------------------------------------------


def test_diffusion_is_deterministic_under_one_secret_and_differs_under_another():
    spec = DiffusionSpec(t=5)
    sets = diffusion_index_sets(SECRET, 1024, spec)
    assert sets.shape == (1024, 5)
    assert np.array_equal(diffusion_index_sets(SECRET, 1024, spec), sets)
    other = diffusion_index_sets(OTHER_SECRET, 1024, spec)
    assert (other != sets).any(axis=1).mean() > 0.9
    clks = _random_clks(50)
    assert np.array_equal(diffuse(clks, sets), diffuse(clks, sets))
    assert not np.array_equal(diffuse(clks, sets), diffuse(clks, other))


def test_diffusion_pinned_values_do_not_depend_on_numpy_random_streams():
    # Every agency must derive the same mapping, whatever its numpy version: pinned here.
    assert diffusion_index_sets(SECRET, 64, DiffusionSpec(3, 64))[:2].tolist() == [
        [11, 17, 6], [31, 35, 16]]
    assert balancing_permutation(SECRET, 128)[:8].tolist() == [91, 126, 57, 100, 94, 43, 56, 106]
    assert salt_key(SECRET, "date_of_birth", "1980").hex()[:16] == "aadbfc5511bc2462"


def test_diffusion_index_sets_are_distinct_per_output_and_use_every_input_evenly():
    sets = diffusion_index_sets(SECRET, 1024, DiffusionSpec(t=10, output_bits=2048))
    assert sets.shape == (2048, 10)
    assert all(len(set(row)) == 10 for row in sets.tolist())
    uses = np.bincount(sets.ravel(), minlength=1024)
    assert uses.min() >= 19 and uses.max() <= 21  # 2048 * 10 / 1024 = 20 each
    with pytest.raises(SchemaError, match="hardening/diffusion/t"):
        diffusion_index_sets(SECRET, 64, DiffusionSpec(t=65))


def test_diffusion_xors_the_chosen_input_bits():
    clks = _random_clks(40)
    sets = diffusion_index_sets(SECRET, 1024, DiffusionSpec(t=3, output_bits=512))
    expected = np.bitwise_xor.reduce(_unpacked(clks)[:, sets], axis=2)
    out = diffuse(clks, sets)
    assert out.shape == (40, 8)
    assert np.array_equal(_unpacked(out), expected)


# -- BLIP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [1.0, 2.0, 4.0])
def test_blip_flip_rate_matches_epsilon(epsilon):
    clks = _random_clks(1000)
    expected = flip_probability(epsilon)
    assert expected == pytest.approx(1 / (1 + math.exp(epsilon)))
    for rng in (np.random.default_rng(3), None):  # seeded, and the OS's randomness
        flipped = blip(clks, epsilon, rng)
        rate = float(np.bitwise_count(flipped ^ clks).sum()) / (1000 * 1024)
        deviation = math.sqrt(expected * (1 - expected) / (1000 * 1024))
        assert abs(rate - expected) < 5 * deviation


def test_blip_is_random_per_encoding_and_reproducible_with_an_rng():
    clks = _random_clks(20)
    assert not np.array_equal(blip(clks, 2.0), blip(clks, 2.0))
    assert np.array_equal(blip(clks, 2.0, np.random.default_rng(5)),
                          blip(clks, 2.0, np.random.default_rng(5)))


def test_blip_before_balancing_keeps_the_popcount_constant():
    spec = HardeningSpec(blip=BlipSpec(1.0), balancing=True)
    out = apply_hardening(_random_clks(100), spec, SECRET, rng=np.random.default_rng(0))
    assert set(popcounts(out).tolist()) == {1024}


# -- salting ------------------------------------------------------------------------------------


def test_salt_values_and_keys():
    assert salt_value("1980-03-04", 4) == "1980"
    assert salt_value("1980-03-04", None) == "1980-03-04"
    assert salt_value("", 4) is None
    keys = {salt_key(SECRET, "date_of_birth", v) for v in ("1980", "1981", "", None)}
    keys.add(salt_key(SECRET, "city", "1980"))
    keys.add(salt_key(OTHER_SECRET, "date_of_birth", "1980"))
    assert len(keys) == 6
    assert salt_key(SECRET, "date_of_birth", "1980") == salt_key(SECRET, "date_of_birth", "1980")


def test_salting_different_salt_never_matches_same_salt_matches_as_before():
    rows = [
        _row("a"),
        _row("b", family="VANDENBERG", given="JAN", phone="+32 470 12 34 56"),  # same year
        _row("c", born="04/03/1981"),                                         # other year
        _row("d", born=""), _row("e", born="", given="Jann"),                 # year missing
    ]
    plain, salted = _schema(None), _schema({"salting": SALT_YEAR})
    before = encode_values(prepare_records(rows, plain, BELGIAN).values, plain, SECRET)
    after = encode_values(prepare_records(rows, salted, BELGIAN).values, salted, SECRET)
    assert after.shape == before.shape
    # Same year: scored as before (other hash positions, so not to the last bit).
    assert _dice(after[:1], after[1:2])[0] == pytest.approx(_dice(before[:1], before[1:2])[0],
                                                            abs=0.05)
    # Another year: a near-identical record becomes a stranger.
    assert _dice(before[:1], before[2:3])[0] > 0.9
    assert _dice(after[:1], after[2:3])[0] < 0.6
    # Missing years share the "missing" salt: they match each other only.
    assert _dice(after[3:4], after[4:5])[0] > 0.85
    assert _dice(after[:1], after[3:4])[0] < 0.6
    groups = {frozenset(g.tolist()) for g in
              link_records(after, np.arange(5), threshold=0.8).grouping.members()}
    assert groups == {frozenset({0, 1}), frozenset({3, 4})}


# -- schema -------------------------------------------------------------------------------------


def test_schema_hardening_sets_the_clk_length_the_server_expects():
    assert _schema(None).clk_bits == 1024 and not _schema(None).hardening.enabled
    assert _schema({"balancing": True}).clk_bits == 2048
    assert _schema({"diffusion": {"t": 5}}).clk_bits == 1024
    assert _schema({"diffusion": {"t": 5, "outputBits": 2048}}).clk_bits == 2048
    both = _schema({"diffusion": {"t": 3, "outputBits": 512}, "balancing": True,
                    "blip": {"epsilon": 6}, "salting": SALT_YEAR})
    assert (both.clk_bits, both.clkhash_bits) == (1024, 1024)
    assert both.hardening.blip.flip_probability == pytest.approx(1 / (1 + math.exp(6)))


def test_schema_validation_lists_every_hardening_problem():
    document = json.loads(default_schema_text())
    document["features"][5]["ignored"] = True
    document["hardening"] = {
        "salting": {"feature": "phone", "prefixLength": 0, "colour": 1},
        "diffusion": {"t": 0, "outputBits": 100},
        "blip": {"epsilon": -1},
        "balancing": "yes",
        "folding": True,
    }
    with pytest.raises(SchemaError) as error:
        load_schema(json.dumps(document))
    problems = "\n".join(error.value.problems)
    for expected in ("hardening/folding: unknown option", "hardening/salting/colour",
                     "hardening/salting/feature: 'phone' is ignored",
                     "hardening/salting/prefixLength", "hardening/diffusion/t",
                     "hardening/diffusion/outputBits", "hardening/blip/epsilon",
                     "hardening/balancing"):
        assert expected in problems
    assert len(error.value.problems) == 8
    document["hardening"] = {"salting": {"feature": "nickname"}}
    with pytest.raises(SchemaError, match="hardening/salting/feature: must name a schema"):
        load_schema(json.dumps(document))
    document["hardening"] = ["balancing"]
    with pytest.raises(SchemaError, match="hardening: must be an object"):
        load_schema(json.dumps(document))


def test_fingerprint_changes_when_hardening_changes():
    prints = {_schema(h).fingerprint for h in (
        None, {}, {"balancing": True}, {"blip": {"epsilon": 6}}, {"blip": {"epsilon": 8}},
        {"diffusion": {"t": 5}}, {"diffusion": {"t": 10}}, {"salting": SALT_YEAR},
        {"salting": {"feature": "date_of_birth"}})}
    assert len(prints) == 9


# -- encoding round trip ------------------------------------------------------------------------


def test_empty_hardening_encodes_exactly_as_plain_clkhash():
    prepared = prepare_records([_row("a"), _row("b", given="Piet")], _schema(None), BELGIAN)
    assert np.array_equal(encode_values(prepared.values, _schema(None), SECRET),
                          encode_values(prepared.values, _schema({}), SECRET))


def test_hardened_encode_round_trip_links_variants_and_not_strangers():
    schema = _schema({"salting": SALT_YEAR, "diffusion": {"t": 3, "outputBits": 2048},
                      "blip": {"epsilon": 8}, "balancing": True})
    rows = [
        _row("a"),
        _row("b", family="VANDENBERG", given="JAN", phone="+32 470 12 34 56"),
        _row("c", family="Vandenberg", address="Kerkstr. 12"),
        _row("d", given="Sofia", family="Lindqvist", born="17/11/1980", address="Storgatan 5",
             city="Malmö", phone="+46 70 123 45 67"),
    ]
    prepared = prepare_records(rows, schema, BELGIAN)
    clks = encode_values(prepared.values, schema, SECRET)
    assert clks.shape == (4, schema.clk_bits // 64) and schema.clk_bits == 4096
    assert set(popcounts(clks).tolist()) == {2048}
    batch = EncodedBatch(prepared.record_ids, clks, schema.clk_bits, schema.fingerprint,
                         key_check_value(SECRET))
    back = read_batch(write_batch(batch))
    assert back.clk_bits == 4096 and np.array_equal(back.clks, clks)
    members = link_records(back.clks, np.arange(4), threshold=0.75).grouping.members()
    assert [sorted(m.tolist()) for m in members] == [[0, 1, 2]]
    # Deterministic apart from BLIP: without it, re-encoding gives the same CLKs.
    quiet = _schema({"salting": SALT_YEAR, "diffusion": {"t": 3}, "balancing": True})
    first = encode_values(prepared.values, quiet, SECRET)
    assert np.array_equal(first, encode_values(prepared.values, quiet, SECRET))
    assert not np.array_equal(first, encode_values(prepared.values, quiet, OTHER_SECRET))
