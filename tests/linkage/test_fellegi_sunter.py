"""score_fieldwise: the core call the server's run makes on per-field segments."""

import hashlib

import numpy as np
import pytest

from linkage.matching.candidates import CandidatePairs
from linkage.matching.fellegi_sunter import LINK_PROBABILITY, ReviewedPairs, score_fieldwise
from linkage.encoding.field_segments import blocking_pairs, encode_field_segments, layout_for, union_pairs
from linkage.encoding.schema import default_schema_text, load_schema

SECRET = hashlib.sha256(b"test fellegi sunter").digest()

GIVEN = ["jan", "anna", "piet", "sofie", "lars", "ingrid", "ahmed", "fatima", "marek", "ewa",
         "luc", "els", "tom", "lisa", "karl", "olga", "ivan", "nina", "omar", "sara"]
FAMILY = ["peeters", "janssens", "maes", "jacobs", "lindqvist", "berg", "haddad", "nowak",
          "kowalski", "dubois", "martin", "claes", "wouters", "olsen", "novak", "smit",
          "de vries", "bakker", "visser", "mertens", "hansen", "nilsson", "kaya", "yilmaz"]
CITIES = ["antwerpen", "gent", "malmo", "goteborg", "brussel", "gdansk", "rotterdam"]


def _typo(rng, text: str) -> str:
    if len(text) < 3:
        return text
    at = int(rng.integers(1, len(text) - 1))
    return text[:at] + "xyzq"[int(rng.integers(0, 4))] + text[at + 1:]


def _people(seed: int = 0, people: int = 400):
    """Two owners; 60% of the people at both, with typos, moves, missing phones, swapped names."""
    rng = np.random.default_rng(seed)
    persons = []
    for _ in range(people):
        persons.append([GIVEN[rng.integers(len(GIVEN))], FAMILY[rng.integers(len(FAMILY))],
                        f"19{rng.integers(40, 99)}-{rng.integers(1, 13):02d}-"
                        f"{rng.integers(1, 29):02d}",
                        f"{['kerk', 'dorp', 'stations', 'markt'][rng.integers(4)]}straat "
                        f"{rng.integers(1, 200)}",
                        CITIES[rng.integers(len(CITIES))], f"+32470{rng.integers(0, 10**6):06d}"])
    values, owners, entities = [], [], []
    for person_id, person in enumerate(persons):
        values.append(list(person))
        owners.append(0)
        entities.append(person_id)
        if rng.random() < 0.6:
            copy = list(person)
            if rng.random() < 0.3:
                copy[1] = _typo(rng, copy[1])
            if rng.random() < 0.3:
                copy[3] = "nieuwstraat 5"                                  # moved
            if rng.random() < 0.4:
                copy[5] = ""                                               # no phone
            if rng.random() < 0.1:
                copy[0], copy[1] = copy[1], copy[0]                        # swapped columns
            values.append(copy)
            owners.append(1)
            entities.append(person_id)
    return values, np.array(owners), np.array(entities)


@pytest.fixture(scope="module")
def scenario():
    schema = load_schema(default_schema_text())
    layout = layout_for(schema.feature_names, [256, 256, 128, 256, 128, 128])
    values, owners, entities = _people()
    clks = encode_field_segments(values, schema.text, SECRET, layout)
    # Candidates: everything across owners that shares a name, a date or a phone.
    pairs = blocking_pairs(clks, layout, (("family_name",), ("given_name",),
                                          ("date_of_birth",), ("phone",)), max_block=10_000)
    keep = owners[pairs.left] != owners[pairs.right]
    pairs = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
    return layout, clks, owners, entities, pairs


def test_fieldwise_scores_link_the_true_pairs_and_are_calibrated(scenario):
    layout, clks, owners, entities, pairs = scenario
    scores = score_fieldwise(clks, layout, pairs, owners=owners, cross_owner_only=True)
    truth = entities[pairs.left] == entities[pairs.right]
    linked = scores.probability >= LINK_PROBABILITY
    precision = truth[linked].mean()
    recall = linked[truth].mean()
    assert precision > 0.97 and recall > 0.95, (precision, recall)
    # The expected counts are close to the real ones, without labels.
    expected_precision, expected_recall = scores.expected_quality()
    assert abs(expected_precision - precision) < 0.03
    assert abs(scores.probability.sum() - truth.sum()) < 0.1 * truth.sum()
    # The estimated match share among all pairs is of the right size.
    true_share = truth.sum() / ((owners == 0).sum() * (owners == 1).sum())
    assert 0.5 < scores.model.match_share / true_share < 2.0
    # Every array is parallel to the pairs; a missing field weighs nothing.
    assert scores.levels.shape == scores.weights.shape == (len(pairs), len(layout.fields))
    assert np.all(scores.weights[scores.levels < 0] == 0)
    assert np.allclose(scores.match_weight,
                       scores.model.prior_weight() + scores.weights.sum(axis=1))


def test_swapped_names_are_compared_crosswise(scenario):
    layout, clks, owners, entities, pairs = scenario
    scores = score_fieldwise(clks, layout, pairs, owners=owners, cross_owner_only=True)
    truth = entities[pairs.left] == entities[pairs.right]
    assert scores.swapped[truth].sum() >= 5
    assert scores.probability[scores.swapped & truth].min() > LINK_PROBABILITY
    assert not scores.swapped[~truth].any() or scores.swapped[~truth].mean() < 0.01


def test_two_reviews_do_not_swing_the_model(scenario):
    layout, clks, owners, entities, pairs = scenario
    plain = score_fieldwise(clks, layout, pairs, owners=owners, cross_owner_only=True)
    truth = entities[pairs.left] == entities[pairs.right]
    # The reviewer is shown the two most uncertain pairs and says the opposite of the model.
    uncertain = np.argsort(np.abs(plain.probability - 0.5))[:2]
    reviewed = ReviewedPairs(pairs.left[uncertain], pairs.right[uncertain],
                             plain.probability[uncertain] < 0.5)
    swung = score_fieldwise(clks, layout, pairs, owners=owners, cross_owner_only=True,
                            reviewed=reviewed)
    assert swung.reviews_used == 2
    before, after = plain.expected_quality(), swung.expected_quality()
    assert abs(before[0] - after[0]) < 0.01 and abs(before[1] - after[1]) < 0.01, (before, after)
    changed = (plain.probability >= 0.5) != (swung.probability >= 0.5)
    assert changed.sum() <= 0.01 * truth.sum()
    assert np.abs(plain.model.m - swung.model.m).max() < 0.01


def test_bad_input_is_refused_with_a_clear_error(scenario):
    layout, clks, owners, _, pairs = scenario
    with pytest.raises(ValueError, match="layout"):
        score_fieldwise(clks[:, :2], layout, pairs)
    outside = CandidatePairs(np.array([0]), np.array([clks.shape[0]]), np.zeros(1))
    with pytest.raises(ValueError, match="outside"):
        score_fieldwise(clks, layout, outside)


def test_union_of_pairs_keeps_each_pair_once():
    a = CandidatePairs(np.array([0, 1]), np.array([2, 3]), np.array([0.5, 0.6]))
    b = CandidatePairs(np.array([1, 0]), np.array([3, 4]), np.array([0.6, 0.7]))
    joined = union_pairs([a, b])
    assert list(zip(joined.left.tolist(), joined.right.tolist())) == [(0, 2), (0, 4), (1, 3)]


def test_auto_takes_the_cut_off_with_the_best_expected_f1(scenario):
    import dataclasses

    layout, clks, owners, _, pairs = scenario
    scores = score_fieldwise(clks, layout, pairs, owners=owners, cross_owner_only=True)
    cutoff, best = scores.best_cutoff()
    for point, precision, recall in scores.quality_curve():
        assert best >= 2 * precision * recall / max(precision + recall, 1e-12) - 1e-9
    # Where the evidence is weak the best cut-off lies below 0.5: 100 pairs at 0.45 are worth
    # linking beside 100 at 0.9 when 1,000 others at 0.05 hold the rest of the matches.
    planted = dataclasses.replace(scores, probability=np.repeat([0.05, 0.45, 0.9], [1000, 100, 100]))
    cutoff, best = planted.best_cutoff()
    assert 0.05 < cutoff <= 0.45 and best == pytest.approx(270 / 385)
    at_half = planted.expected_quality(LINK_PROBABILITY)
    assert 2 * at_half[0] * at_half[1] / sum(at_half) == pytest.approx(180 / 285)


def test_a_pair_is_supported_by_a_third_record_both_are_confidently_the_same_as():
    from linkage.matching.fellegi_sunter import path_support

    # records 0..5: 0-2 and 2-1 are confident, 0-1 weak; 3-4 confident but 4-5 is not
    left = np.array([0, 1, 0, 3, 4, 3])
    right = np.array([2, 2, 1, 4, 5, 5])
    probability = np.array([0.95, 0.92, 0.10, 0.99, 0.80, 0.05])
    pairs = CandidatePairs(left, right, np.zeros(left.size))
    support = path_support(pairs, probability, 6)
    assert support[2] == pytest.approx(0.95 * 0.92)
    # 3-5 has a path through 4, but 4-5 is below the strong level: no support
    assert support[5] == 0.0
    # the confident pairs have no third record in common with both ends
    assert support[0] == support[1] == support[3] == support[4] == 0.0
    # the largest path wins; pairs given in either orientation
    left2 = np.array([2, 0, 3, 0, 1])
    right2 = np.array([0, 3, 1, 1, 3])
    probability2 = np.array([0.91, 0.99, 0.97, 0.2, 0.93])
    support2 = path_support(CandidatePairs(left2, right2, np.zeros(5)), probability2, 4)
    assert support2[3] == pytest.approx(max(0.91 * 0.93, 0.99 * 0.97))


def test_scored_probabilities_are_at_least_their_support(scenario):
    layout, clks, owners, entities, pairs = scenario
    # One file (deduplication): a person's two records and the path through a third exist.
    scores = score_fieldwise(clks, layout, pairs, owners=np.zeros_like(owners))
    assert scores.support is not None and scores.support.shape == scores.probability.shape
    assert np.all(scores.probability >= scores.support - 1e-12)
