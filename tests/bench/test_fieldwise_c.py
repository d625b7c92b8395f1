"""Design C's within-agency training in the bench: on shares, each agency's u is what its own
sampled pairs' plaintext levels give, and its links follow its own rule."""

import numpy as np

from bench.attacks.fieldwise_c import train_within, within_rules
from linkage.mpc.field_run import OWN_SAMPLE_INDEX
from bench.attacks.fieldwise_shares import _plain_levels, share_links
from linkage.encoding.field_segments import layout_for
from linkage.matching.fellegi_sunter import FellegiSunterModel
from linkage.matching.field_aggregates import AggregateModel, within_model
from linkage.mpc.banded_run import sample_rows
from linkage.mpc.fieldwise import field_weights
from tests.linkage.test_mpc_fieldwise import BITS, _pack, _records

SEED = 5


def _agencies(rng):
    """Two agencies; the first full of near-copies (its records share a lot), the second not."""
    base = _records(rng, 20)
    first = base[rng.integers(0, 20, 130)] ^ (rng.random((130, sum(BITS))) < 0.005)
    second = _records(rng, 115)
    rows = np.concatenate([first, second])
    rows[np.flatnonzero(~rows.any(axis=1)), 0] = True
    return _pack(rows), np.repeat([0, 1], [130, 115])


def test_each_agencys_u_is_its_sampled_pairs_levels_and_its_links_its_rule():
    rng = np.random.default_rng(4)
    clks, owners = _agencies(rng)
    layout = layout_for(["a", "b", "c"], list(BITS))
    m = np.tile([0.6, 0.2, 0.1, 0.05, 0.05], (3, 1))
    u = np.tile([0.01, 0.02, 0.07, 0.2, 0.7], (3, 1))
    fitted = AggregateModel(FellegiSunterModel(("a", "b", "c"), m, u, 1e-3), np.zeros(2),
                            np.ones(3), 4.0, 0.9, 5.0)
    trained = train_within(clks, owners, layout, SEED)
    models = within_rules(fitted, trained["levels"])
    rules = {}
    for index, owner in enumerate((0, 1)):
        rows = np.flatnonzero(owners == owner)
        drawn = sample_rows(rows.size, SEED, OWN_SAMPLE_INDEX + index)
        rest = np.setdiff1d(np.arange(rows.size), drawn)
        lefts, rights = np.divmod(np.arange(drawn.size * rest.size), rest.size)
        levels = _plain_levels(clks[rows[drawn]], clks[rows[rest]], layout, lefts, rights)
        counts = np.stack([np.bincount(levels[levels[:, f] >= 0, f], minlength=5)
                           for f in range(3)])
        expected = within_model(fitted, counts)
        assert np.array_equal(trained["levels"][owner], counts)
        model, rule = models[owner]
        assert np.allclose(model.u, expected.u) and np.array_equal(model.m, m)
        assert np.array_equal(rule.table, field_weights(expected.weights, 4.0).table)
        rules[owner] = rule
    # the agency of near-copies agrees far more often inside: its exact level weighs less
    assert (rules[0].table[:, 0] < rules[1].table[:, 0]).all()
    # on shares, each agency's pairs are linked by its own rule (share_links checks every
    # link against the plaintext rule and raises otherwise)
    links = share_links(clks, owners, layout, rules, within=True)
    assert len(links.pairs) > 0
    owner_of = owners[links.pairs.left]
    assert (owner_of == owners[links.pairs.right]).all()
    for owner, rule in rules.items():
        assert rule.link(links.levels[owner_of == owner]).all()
