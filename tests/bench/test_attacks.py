"""The re-identification attacks must work on plain CLKs (an attack that finds nothing proves
nothing), and their pieces must do what they claim."""

import numpy as np
import pytest

from bench.attacks.align import dice_matrix, refine
from bench.attacks.frequency import frequency_attack, mine_patterns
from bench.attacks.graph import graph_attack
from bench.attacks.population import make_world, people, schema_with
from linkage.matching.candidates import dice

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


# -- two-server mode: what a server holds, and the real processes ---------------------------------

def test_a_share_gives_the_single_server_attacks_nothing(plain_world):
    """A server's share of an agency's file, read as CLKs, is noise to both attacks."""
    from bench.attacks.learned import share_world

    shared = share_world(plain_world)
    assert graph_attack(shared).success < 0.05
    assert frequency_attack(shared).success < 0.05


def test_the_learned_graph_is_the_kernels_bipartite_hit_graph():
    from bench.attacks.learned import make_linkage_world, server_hit_graph
    from linkage.matching.kernel import dice_candidates_native

    schema = schema_with({})
    world = make_linkage_world(schema, 60, run=0)
    graph, sent = server_hit_graph(world.a_clks, world.b_clks, 0.8, schema.clk_bits)
    plain = dice_candidates_native(world.a_clks, world.b_clks, 0.8)
    assert graph.shape == (120, 120) and np.array_equal(graph, graph.T)
    assert not graph[:60, :60].any() and not graph[60:, 60:].any()  # no within-agency edge
    assert set(zip(*np.nonzero(graph[:60, 60:]))) == set(zip(plain.left.tolist(),
                                                             plain.right.tolist()))
    assert 20 <= len(plain) <= 40 and sent > 0  # most of the 30 shared people, few others


def test_seeded_attack_on_a_learned_graph_finds_the_seeds_partners_only():
    """On a graph of disjoint linked pairs a seed names its partner and nothing else."""
    from bench.attacks.learned import learned_graph_attack

    n = 100
    graph = np.zeros((2 * n, 2 * n), np.float32)
    graph[np.arange(n), n + np.arange(n)] = 1
    graph[n + np.arange(n), np.arange(n)] = 1
    rng = np.random.default_rng(0)
    order = rng.permutation(2 * n)
    truth = np.argsort(order)
    theirs = graph[np.ix_(order, order)]
    result = learned_graph_attack(graph, theirs, truth, seeds=10)
    assert result.partners == 10
    assert result.correct <= result.partners + 3


def test_two_server_processes_link_exactly_the_kernels_pairs():
    from bench.attacks.two_server import link_on_two_servers
    from linkage.matching.kernel import dice_candidates_native

    rng = np.random.default_rng(7)
    left_bits = rng.random((90, 256)) < 0.3
    right_bits = left_bits[rng.integers(0, 90, 70)] ^ (rng.random((70, 256)) < 0.05)
    left, right = (np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)
                   for bits in (left_bits, right_bits))
    result = link_on_two_servers(left, right, 256, 0.8)
    plain = dice_candidates_native(left, right, 0.8)
    order = np.lexsort((plain.right, plain.left))
    assert len(plain) > 0
    assert np.array_equal(result["left"], plain.left[order])
    assert np.array_equal(result["right"], plain.right[order])
    assert all(s["rounds"] == 8 for s in result["servers"])
    assert result["dealer"]["bytes_to_server0"] == 32  # server 0's material is one seed


def test_a_frame_of_the_wrong_size_is_refused():
    import socket

    from bench.attacks.two_server import recv_array, send_array

    first, second = socket.socketpair()
    send_array(first, np.zeros(5, np.uint32))
    with pytest.raises(ConnectionError, match="expected shape"):
        recv_array(second, np.uint32, (6,))
    first.close()
    second.close()


def test_the_banded_graph_is_the_kernels_hits_with_their_bands():
    """``auto`` in two-server mode: the sampled histogram, the chosen edge, the hits' bands."""
    from bench.attacks.banded import DEFAULT_EDGES, banded_link, banded_reference
    from bench.attacks.learned import make_linkage_world, server_band_graph

    schema = schema_with({})
    world = make_linkage_world(schema, 60, run=0)
    run = banded_link(world.a_clks, world.b_clks, schema.clk_bits, DEFAULT_EDGES, sample=0.5,
                      sample_seed=1, hit_step=0.01)
    at_least, link, pairs, band, _ = banded_reference(world.a_clks, world.b_clks, DEFAULT_EDGES,
                                                   run.sample_rows, 0.01)
    assert run.sample_rows.size == 30 and np.array_equal(run.sample_at_least, at_least)
    assert run.hits.link == link and run.threshold in DEFAULT_EDGES
    assert np.array_equal(run.hits.left, pairs.left) and np.array_equal(run.hits.band, band)
    assert np.all(run.hits.score <= pairs.score) and np.all(pairs.score - run.hits.score <= 0.01 + 1e-9)
    graph, opened = server_band_graph(world.a_clks, world.b_clks, schema.clk_bits, sample=0.5,
                                      run=1)
    assert not graph[:60, :60].any() and np.array_equal(graph, graph.T)
    assert opened["hits"] == int((graph[:60, 60:] > 0).sum())
    assert set(np.unique(graph[graph > 0])) <= set(np.float32(DEFAULT_EDGES))


def test_one_to_one_by_band_keeps_the_better_band():
    from bench.attacks.banded import one_to_one

    left, right = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2])
    kept = one_to_one(left, right, np.array([0.9, 0.8, 0.85, 0.7]), 3, 3)
    assert sorted(zip(kept[0].tolist(), kept[1].tolist())) == [(0, 0), (1, 1), (2, 2)]
