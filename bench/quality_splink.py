"""Plaintext Splink 5 (DuckDB backend) as a peer in ``bench.quality``.

Why: Splink is the bar for classification quality on plaintext. It compares
fields separately, weights each agreement level by its own m and u
(Fellegi-Sunter, trained by EM without labels), treats a missing value as no
evidence and recognises given and family names written the other way round.
Our encodings should come close to it; this module measures how close, on the
same normalised values we encode (so the normalisation is the same for both),
in the same run.

The model follows Splink's own tutorials: names with ``NameComparison`` and
``ForenameSurnameComparison`` (swapped names), dates with
``DateOfBirthComparison``, addresses and cities by Jaro-Winkler levels, phone
numbers and registration numbers exactly. ``probability_two_random_records_match``
from a strict deterministic rule, u by random sampling, m by EM on two
blocking rules that leave each other's fields free. Pairs come from a union of
blocking rules; records are clustered at match probability 0.5 by connected
components (``link_and_dedupe``; ``link_only`` for one-to-one data such as
FEBRL4, with the clusters then cut to one record per owner by keeping the best
link of each record, as Splink's ``cluster_using_single_best_links`` does).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

__all__ = ["SPLINK_THRESHOLD", "run_splink"]

#: Match probability at which pairs are clustered.
SPLINK_THRESHOLD = 0.5

_NAME_FEATURES = ("given_name", "family_name", "company_name")
_EXACT_FEATURES = ("phone", "registration_number")


def _comparisons(features: list[str]):
    import splink.comparison_library as cl

    comparisons = []
    if "given_name" in features and "family_name" in features:
        comparisons.append(cl.ForenameSurnameComparison("given_name", "family_name"))
    for feature in features:
        if feature in ("given_name", "family_name") and "given_name" in features \
                and "family_name" in features:
            continue
        if feature == "date_of_birth":
            comparisons.append(cl.DateOfBirthComparison(
                feature, input_is_string=True, datetime_format="%Y-%m-%d"))
        elif feature in _NAME_FEATURES:
            comparisons.append(cl.NameComparison(feature))
        elif feature in _EXACT_FEATURES:
            comparisons.append(cl.ExactMatch(feature))
        else:
            comparisons.append(cl.JaroWinklerAtThresholds(feature, [0.9, 0.7]))
    return comparisons


def _blocking(features: list[str]):
    """Rules that generate candidate pairs: one per identifying field, plus name prefixes."""
    from splink import block_on

    rules = [block_on(f) for f in ("date_of_birth", "phone", "registration_number")
             if f in features]
    if "given_name" in features and "family_name" in features:
        rules += [block_on("given_name", "family_name"),
                  block_on("substr(family_name, 1, 3)", "substr(given_name, 1, 2)"),
                  # swapped names
                  "l.given_name = r.family_name and l.family_name = r.given_name"]
    if "company_name" in features:
        rules.append(block_on("substr(company_name, 1, 4)"))
    if "city" in features and "family_name" in features:
        rules.append(block_on("family_name", "city"))
    if "address" in features:
        rules.append(block_on("address"))
    return rules


def _training_rules(features: list[str]):
    """Two EM sessions, each leaving the other's fields free to be estimated."""
    from splink import block_on

    if "date_of_birth" in features and "family_name" in features:
        return [block_on("date_of_birth"), block_on("given_name", "family_name")]
    if "company_name" in features:
        second = [f for f in ("registration_number", "city", "address") if f in features][:1]
        return [block_on("substr(company_name, 1, 4)")] + [block_on(f) for f in second]
    return [block_on(features[0])]


def _deterministic_rule(features: list[str]):
    from splink import block_on

    strict = [f for f in ("given_name", "family_name", "date_of_birth") if f in features]
    if len(strict) < 2:
        strict = [f for f in ("company_name", "registration_number") if f in features]
    return block_on(*strict)


def run_splink(values: list[list[str]], features: list[str], owners: np.ndarray, *,
               one_to_one: bool, seed: int = 0) -> pd.MultiIndex:
    """Splink's predicted links (global record numbers, smaller first) on plaintext values.

    ``values`` are the normalised values we encode (one list per record, in
    ``features`` order; "" = missing), ``owners`` each record's owner index.
    """
    from splink import DuckDBAPI, Linker, SettingsCreator

    logging.getLogger("splink").setLevel(logging.ERROR)
    frame = pd.DataFrame(values, columns=features)
    frame = frame.mask(frame == "").astype(object)
    # A field nobody holds (FEBRL has no phone numbers) has nothing to train on.
    features = [f for f in features if frame[f].notna().any()]
    frame = frame[features]
    frame.insert(0, "unique_id", np.arange(len(frame), dtype=np.int64))
    db_api = DuckDBAPI()
    names = [f"owner_{owner}" for owner in np.unique(owners).tolist()]
    tables = [db_api.register(frame[owners == owner].reset_index(drop=True),
                              dataset_display_name=name)
              for owner, name in zip(np.unique(owners).tolist(), names)]
    link_type = "link_only" if one_to_one else (
        "link_and_dedupe" if len(tables) > 1 else "dedupe_only")
    settings = SettingsCreator(
        link_type=link_type,
        comparisons=_comparisons(features),
        blocking_rules_to_generate_predictions=_blocking(features),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker(tables if len(tables) > 1 else tables[0], settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [_deterministic_rule(features)], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=seed)
    for rule in _training_rules(features):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.05)
    if one_to_one:
        clusters = linker.clustering.cluster_using_single_best_links(
            predictions, duplicate_free_datasets=names,
            threshold_match_probability=SPLINK_THRESHOLD)
    else:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=SPLINK_THRESHOLD)
    table = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    labels = np.full(len(frame), -1, np.int64)
    codes = pd.factorize(table["cluster_id"])[0]
    labels[table["unique_id"].to_numpy(np.int64)] = codes
    from .quality import links_from_labels

    return links_from_labels(labels)
