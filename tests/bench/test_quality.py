"""The quality harness and the issue's bar: FEBRL4 linked 1-to-1 with the auto threshold."""

import numpy as np
import pytest

from bench.quality import (
    PERSON_SCHEMA,
    encode_ours,
    links_from_labels,
    measure,
    render,
    run_dataset,
    true_links,
)
from bench.quality_data import load_febrl4, load_synthetic
from bench.quality_heldout import load_heldout
from linkage.matching.engine import link_records
from linkage.analysis.evaluation import pairwise_quality
from linkage.encoding.schema import load_schema


@pytest.fixture(scope="module")
def person_schema():
    return load_schema(PERSON_SCHEMA.read_text("utf-8"))


@pytest.mark.slow
def test_febrl4_with_the_auto_threshold_reaches_f1_0_999(person_schema):
    data = load_febrl4()
    _, clks = encode_ours(data, person_schema)
    result = link_records(clks, data.owners, threshold=None, max_per_owner=1,
                          cross_owner_only=True)
    quality = measure(true_links(data), links_from_labels(result.grouping.labels), data.owners)
    assert quality["within"] is None
    assert quality["all"].f1 >= 0.999, (result.choice.reason, quality["all"])
    # The groups' confidence is that of one-to-one links: nearly all are certain.
    assert np.mean(result.confidence >= 0.99) > 0.95


def test_recordlinkage_metrics_agree_with_pairwise_quality():
    data = load_synthetic(0.3, seed=3, records_per_agency=60)
    rng = np.random.default_rng(0)
    # A noisy prediction: the truth with a fifth of the records moved to random groups.
    labels = np.unique(data.entities, return_inverse=True)[1]
    moved = rng.random(labels.size) < 0.2
    labels[moved] = rng.integers(0, labels.max() + 1, int(moved.sum()))
    figures = measure(true_links(data), links_from_labels(labels), data.owners)
    keys = [(str(o), str(i)) for i, o in enumerate(data.owners.tolist())]
    reference = pairwise_quality(dict(zip(keys, labels.tolist())),
                                 dict(zip(keys, data.entities.tolist())))
    for part in ("all", "cross", "within"):
        ours, theirs = figures[part], reference[part]
        assert ours.correct_pairs == theirs.true_positives
        assert ours.predicted_pairs == theirs.true_positives + theirs.false_positives
        assert ours.true_pairs == theirs.true_positives + theirs.false_negatives
        assert ours.f1 == pytest.approx(theirs.f1)
    assert 0.3 < figures["all"].f1 < 0.95


@pytest.mark.slow
def test_the_harness_reports_every_method_and_the_calibration(person_schema):
    data = load_synthetic(0.2, seed=5, records_per_agency=300)
    figures = run_dataset(data, person_schema, anonlink=False, reviews=20,
                          log=lambda text: None)
    methods = {m["method"]: m for m in figures["methods"]}
    assert "ours, auto after reviewing up to 20 flagged groups" in methods
    auto = methods["ours, auto threshold"]["quality"]["all"]
    ecm = methods["recordlinkage ECM (plaintext)"]["quality"]["all"]
    splink = methods["Splink 5 EM (plaintext)"]["quality"]["all"]
    assert auto["f1"] > 0.85 and ecm["f1"] > 0.85 and splink["f1"] > 0.9
    check = figures["model_check"]
    assert abs(check["estimated_precision"] - check["measured_precision"]) < 0.05
    assert sum(row[2] for row in figures["group_calibration"]) == figures["groups"] > 50
    observed = [row[4] for row in figures["group_calibration"] if row[2] >= 20]
    assert observed and observed[-1] > 0.95  # the surest groups are nearly all right
    table = render(figures)
    assert "| ours, auto threshold |" in table and "Group confidence against truth" in table


def test_the_held_out_data_has_its_agencies_habits_and_customs():
    data = load_heldout(records_per_agency=120)
    again = load_heldout(records_per_agency=120)
    assert [e.rows for e in data.exports] == [e.rows for e in again.exports]
    exports = {e.name: e for e in data.exports}
    assert set(exports) == {"nl-kmar", "de-zoll", "fr-douane", "se-kustbevakning", "be-fedpol",
                            "pl-sg"}
    # Capitals without accents at one agency; no addresses at another.
    names = [row["ACHTERNAAM"] for row in exports["nl-kmar"].rows if row["ACHTERNAAM"]]
    assert names and all(n == n.upper() and n.isascii() for n in names)
    assert all(row["ADRES"] == "" and row["MIEJSCOWOSC"] == "" for row in exports["pl-sg"].rows)
    # Other naming customs: some double surnames or transliterated Arabic names appear.
    families = {row[c] for e in data.exports for row in e.rows for c in row
                if c in ("NACHNAME", "NOM_USAGE", "SLAKTNAMN", "FAMILIENAAM", "NAZWISKO")}
    assert any(" " in f or "-" in f for f in families)
    # Shared people across agencies and duplicates inside agencies are both there.
    truth = true_links(data)
    same = data.owners[truth.get_level_values(0)] == data.owners[truth.get_level_values(1)]
    assert same.any() and (~same).any()


@pytest.mark.slow
def test_febrl4_field_wise_reaches_f1_0_999_and_its_probabilities_are_calibrated(person_schema):
    from bench.quality_fieldwise import calibration, run_fieldwise

    data = load_febrl4()
    values, _ = encode_ours(data, person_schema)
    fieldwise = run_fieldwise(data, person_schema, values)
    quality = measure(true_links(data), links_from_labels(fieldwise["labels"]), data.owners)
    assert quality["all"].f1 >= 0.999, quality["all"]
    pairs = fieldwise["pairs"]
    codes = np.unique(data.entities, return_inverse=True)[1]
    is_true = codes[pairs.left] == codes[pairs.right]
    rows = calibration(fieldwise["probability"], is_true)
    # The two bins that hold nearly every pair are calibrated within 0.05.
    for low, high, count, mean, observed in rows:
        if count > 1000:
            assert low - 0.05 <= observed <= high + 0.05 and abs(observed - mean) < 0.05
