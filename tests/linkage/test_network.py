"""The broker network's betweenness, computed per connected component, equals networkx's on
the whole graph (exact, where the whole graph's used to be sampled above a node count)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from linkage.analysis import network
from linkage.analysis.network import Membership, build_network


def _memberships(seed: int, entities: int = 120) -> list[Membership]:
    """Entities seen in one to four cases at three agencies: many small components and a
    few larger ones (shared cases chain entities together)."""
    rng = np.random.default_rng(seed)
    out = []
    for entity in range(entities):
        for _ in range(int(rng.integers(1, 5))):
            agency = f"a{int(rng.integers(3))}"
            case = f"c-{int(rng.integers(0, 90)):012x}"
            out.append(Membership(f"g-{entity:03d}", agency, "person", case,
                                  str(rng.choice(["", "recruit", "logistics"]))))
    return out


def _whole_graph(memberships: list[Membership]) -> nx.Graph:
    graph = nx.Graph()
    for m in memberships:
        graph.add_node(m.group)
        if m.case_ref:
            graph.add_edge(m.group, f"{m.agency}:{m.case_ref}")
    return graph


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_betweenness_per_component_equals_the_whole_graphs(seed, monkeypatch):
    memberships = _memberships(seed)
    graph = _whole_graph(memberships)
    largest = max(len(c) for c in nx.connected_components(graph))
    assert nx.number_connected_components(graph) > 5 and largest >= 3
    # a limit below the graph's size but above every component's: exact all the same
    monkeypatch.setattr(network, "_EXACT_BETWEENNESS_NODES", largest)
    assert graph.number_of_nodes() > largest
    expected = nx.betweenness_centrality(graph, normalized=True)
    brokers = build_network(memberships).brokers
    assert len(brokers) == 120 and any(b.betweenness > 0 for b in brokers)
    for broker in brokers:
        assert broker.betweenness == pytest.approx(round(expected[broker.group], 6), abs=1e-6)


def test_a_component_above_the_limit_is_sampled_within_itself(monkeypatch):
    memberships = _memberships(4)
    graph = _whole_graph(memberships)
    monkeypatch.setattr(network, "_EXACT_BETWEENNESS_NODES", 3)
    scores = network._betweenness(graph, seed=0)
    assert set(scores) == set(graph) and all(v >= 0 for v in scores.values())
    assert any(v > 0 for v in scores.values())
    # two nodes alone have no betweenness; an isolated node neither
    assert network._betweenness(nx.path_graph(2), 0) == {0: 0.0, 1: 0.0}
