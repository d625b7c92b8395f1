"""The re-identification attacks must work on plain CLKs (an attack that finds nothing proves
nothing), and their pieces must do what they claim."""

import numpy as np
import pytest

from bench.attacks.align import dice_matrix, refine
from bench.attacks.frequency import frequency_attack, mine_patterns
from bench.attacks.graph import graph_attack
from bench.attacks.population import make_world, people, schema_with
from linkage.candidates import dice

RECORDS = 200


@pytest.fixture(scope="module")
def plain_world():
    return make_world(schema_with({}), RECORDS, run=0, attacker_secrets=1)


def test_graph_attack_reidentifies_most_plain_clks(plain_world):
    result = graph_attack(plain_world)
    assert result.success >= 0.9, result


def test_seeded_graph_attack_reidentifies_most_plain_clks(plain_world):
    result = graph_attack(plain_world, seeds=10)
    assert result.success >= 0.9, result
    assert result.records - result.seeds == RECORDS - 10


def test_frequency_attack_reidentifies_most_plain_clks(plain_world):
    result = frequency_attack(plain_world)
    assert result.success >= 0.8, result
    assert result.named_right >= 0.8 * result.patterns, result


def test_frequency_attack_sees_through_balancing():
    """Balancing keeps each bit's complement beside it; a schema-aware miner drops that half."""
    world = make_world(schema_with({"balancing": True}), RECORDS, run=1, attacker_secrets=1)
    assert frequency_attack(world).success >= 0.8


@pytest.mark.slow
def test_diffusion_stops_the_unseeded_attacks_on_a_small_file():
    world = make_world(schema_with({"diffusion": {"t": 5}, "balancing": True}), RECORDS,
                       run=0, attacker_secrets=1)
    assert graph_attack(world).success < 0.1
    assert frequency_attack(world).success < 0.1


def test_world_truth_pairs_the_same_people(plain_world):
    world = make_world(schema_with({}), 40, run=3, overlap=0.5)
    agency_people = people(60, seed=1003)[:40]
    for row, position in enumerate(world.truth):
        if position >= 0:
            assert world.plaintext[position] == agency_people[row]
    assert (world.truth >= 0).sum() == 20
    assert len(set(map(tuple, world.plaintext))) == 40


def test_dice_matrix_is_the_symmetric_pairwise_dice(plain_world):
    clks = plain_world.agency_clks[:25]
    matrix = dice_matrix(clks)
    assert np.array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 0)
    for i, j in [(0, 1), (3, 17), (24, 5)]:
        assert matrix[i, j] == pytest.approx(dice(clks[i], clks[j]), abs=1e-6)


def test_refine_recovers_a_hidden_permutation_from_few_anchors():
    rng = np.random.default_rng(5)
    points = rng.random((200, 6))
    sim = 1.0 / (1.0 + np.square(points[:, None] - points[None]).sum(-1))
    np.fill_diagonal(sim, 0)
    order = rng.permutation(200)  # node i of A is node inverse[i] of B
    inverse = np.argsort(order)
    permuted = sim[np.ix_(order, order)]
    anchors = np.arange(8)
    result = refine(sim, permuted, anchors, inverse[anchors])
    assert np.mean(result.mapping == inverse) > 0.95


def test_mine_patterns_finds_planted_token_positions():
    rng = np.random.default_rng(2)
    bits = rng.random((800, 256)) < 0.15
    planted = [np.arange(10, 20), np.arange(100, 108)]
    for positions, share in zip(planted, (0.3, 0.1)):
        holders = rng.random(800) < share
        bits[np.ix_(holders, positions)] = True
    found = [set(p.tolist()) for p in mine_patterns(bits)]
    for positions in planted:
        assert any(len(set(positions.tolist()) & group) >= len(positions) - 1 for group in found)
