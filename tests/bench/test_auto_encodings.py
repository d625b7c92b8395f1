"""bench.auto_encodings: its pair F1 agrees with the evaluation module's; a short run."""

import numpy as np

from bench import auto_encodings
from linkage.analysis.evaluation import pairwise_quality
from linkage.encoding.encoder import encode_values
from linkage.encoding.schema import default_schema_text, load_schema
from linkage.matching.engine import link_records


def test_the_bench_scores_links_as_the_evaluation_module_does():
    schema_text = default_schema_text()
    values, owners, truth, names = auto_encodings.prepare(11, 250, 3, 0.2, schema_text)
    assert len(names) == 3 and set(np.unique(owners)) == {0, 1, 2}
    clks = encode_values(values, load_schema(schema_text), auto_encodings.encoding_secret(0),
                         workers=1, rng=np.random.default_rng(0))
    result = link_records(clks, owners, threshold=0.75, max_per_owner=1, cross_owner_only=True)
    labels = result.grouping.labels
    data = auto_encodings.load_synthetic(0.2, 11, 250)
    chosen = sorted(range(len(data.exports)), key=lambda i: data.exports[i].name)[:3]
    entities = np.concatenate([data.entities[data.owners == owner] for owner in chosen])
    predicted = {(int(owners[r]), r): (int(labels[r]) if labels[r] >= 0 else -1 - r)
                 for r in range(len(owners))}
    actual = {(int(owners[r]), r): entities[r] for r in range(len(owners))}
    cross = pairwise_quality(predicted, actual)["cross"]
    assert truth.size == cross.true_positives + cross.false_negatives > 50
    assert cross.true_positives > 0 and cross.false_positives > 0  # a real comparison
    expected = 2 * cross.true_positives / (2 * cross.true_positives + cross.false_positives
                                           + cross.false_negatives)
    measured = auto_encodings._f1(auto_encodings._linked_codes(labels, owners), truth)
    assert abs(measured - expected) < 1e-12


def test_two_small_agencies_get_a_threshold_between_the_non_matches_and_the_matches(capsys):
    # 2 x 120 records, 17 true pairs: before the match probability was capped below the
    # non-match mean, encodings 1-4 and 6-8 (of 0-9) chose about 0.53 and linked every
    # record (F1 0.25).
    assert auto_encodings.main(["--encodings", "5", "--agencies", "2", "--records", "120"]) == 0
    out = capsys.readouterr().out
    assert "encodings: 5; auto link F1 below 0.9: 0;" in out and "| worst encodings |" in out
    rows = [line.split("|") for line in out.splitlines() if line[:4] in {f"| {i} " for i in
                                                                         range(5)}]
    assert len(rows) == 5
    for row in rows:
        auto_threshold, auto_f1, best_f1 = float(row[2]), float(row[3]), float(row[5])
        assert auto_threshold > 0.7 and auto_f1 > 0.9 and best_f1 > 0.9, row


def test_fits_with_their_matches_among_the_non_matches_are_not_used():
    # Encodings 26 and 53 of the same two agencies: the best kept-links fit put its match
    # beta at 0.68, among the non-match links, called 104 of 120 links matches (17 are)
    # and chose 0.54 (F1 0.25). Encodings 19 and 46: the all-candidates fit's "matches"
    # were the bulk of the pairs (19) or an even spread (46), and chose 0.51 and 0.72.
    schema_text = default_schema_text()
    values, owners, truth, _ = auto_encodings.prepare(11, 120, 2, 0.2, schema_text)
    for index in (19, 26, 46, 53):
        result = auto_encodings.run_encoding(index, values, owners, truth, schema_text)
        assert result.threshold > 0.7 and result.f1 > 0.9, result


def test_the_fit_check_takes_the_quantile_of_the_law_cut_at_the_floor():
    # Encoding 44 of two agencies of 60 records (10 true pairs): the kept-links fit with
    # power 0.007 put its beta at 0.67, among the non-match links, and passed the check on
    # the uncut law's quantile (0.63, below the floor's non-match links); it chose 0.59
    # (F1 0.30).
    schema_text = default_schema_text()
    values, owners, truth, _ = auto_encodings.prepare(11, 60, 2, 0.2, schema_text)
    result = auto_encodings.run_encoding(44, values, owners, truth, schema_text)
    assert result.threshold > 0.7 and result.f1 > 0.9, result


def test_five_agencies_are_not_cut_above_their_damaged_matches():
    # Encoding 11 of five agencies of 250 records: 9 of the 848 decoys were matches, the
    # normal fitted to them alone called the links at 0.78-0.82 (19, all matches) 11-75%
    # likely, and auto chose 0.8175 (F1 0.9163; 0.76-0.78 give 0.944-0.947).
    schema_text = default_schema_text()
    values, owners, truth, _ = auto_encodings.prepare(11, 250, 5, 0.2, schema_text)
    result = auto_encodings.run_encoding(11, values, owners, truth, schema_text)
    assert result.threshold < 0.79 and result.f1 > 0.935, result
