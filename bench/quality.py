"""Linkage quality on labelled data: our pipeline against clkhash+anonlink and recordlinkage.

    python -m bench.quality              # febrl4, febrl3, synthetic and companies at 0.1-0.4
    python -m bench.quality --datasets synthetic --corruption 0.2 --seed 7
    python -m bench.quality --datasets febrl4 --skip-anonlink --json out.json

Why this exists: agencies have no ground truth, so the ``auto`` threshold and
the group confidence must be right without one. This harness runs the whole
pipeline (normalise, encode with clkhash through ``linkage.encoding.encoder``, match
with ``linkage.matching.engine.link_records``, group) on data whose truth is known
(FEBRL4, FEBRL3, the project's person generator and a company generator,
``bench.quality_data`` and ``bench.quality_company``) and
prints pairwise precision / recall / F1 from ``recordlinkage``'s metrics,
split into cross-owner and within-owner pairs, beside two peers on the same
data:

* **clkhash+anonlink oracle**: the raw values encoded with a clkhash schema in
  the style of clkhash's FEBRL tutorial (bigrams per field, positional unigrams
  for dates and numbers; no normalisation beyond what clkhash does), candidate
  pairs from anonlink's ``find_candidate_pairs`` and its ``greedy_solve``, at
  the threshold that is best in hindsight (a scan against the truth: a number
  no user could know). anonlink needs numpy<2, so it runs in ``.bench-venv``
  in a subprocess, as in ``bench.dice``.
* **Splink 5** (``bench.quality_splink``): plaintext Fellegi-Sunter with EM on
  the same normalised values, ``link_and_dedupe``, DuckDB backend: the bar for
  classification quality.
* **recordlinkage ECM**: plaintext linkage with the recordlinkage toolkit on
  the same normalised values we encode (blocking on a few keys, thresholded
  string and exact comparisons, the unsupervised ECM classifier): the
  non-private reference.

Ours runs with the ``auto`` threshold and, for context, at its own
hindsight-best threshold. Beside the measured figures the harness prints the
score model's estimated precision and recall, and two calibration tables:
group confidence against the observed share of pure groups, and the pairs'
match probability against the observed share of true pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import recordlinkage
from clkhash import schema as clkhash_schema
from clkhash.clk import generate_clks

from linkage.matching.candidates import CandidatePairs
from linkage.clks import clks_from_bytes
from linkage.encoding.encoder import encode_values, prepare_records
from linkage.matching.engine import (
    LinkageResult,
    compare_new_records,
    decide,
    link_records,
)
from linkage.analysis.evaluation import pairwise_quality
from linkage.matching.grouping import greedy_groups
from linkage.encoding.mapping import parse_mapping
from linkage.encoding.schema import LinkageSchema, load_schema
from linkage.matching.threshold import REVIEW_PROBABILITIES

from .quality_company import load_companies
from .quality_data import LabelledData, load_febrl3, load_febrl4, load_synthetic
from .quality_heldout import load_heldout

__all__ = [
    "COMPANY_SCHEMA",
    "PERSON_SCHEMA",
    "Quality",
    "encode_ours",
    "links_from_labels",
    "main",
    "measure",
    "render",
    "run_dataset",
    "run_ours",
    "true_links",
]

ROOT = Path(__file__).resolve().parent.parent
PERSON_SCHEMA = ROOT / "linkage" / "encoding" / "schemas" / "person.json"
COMPANY_SCHEMA = ROOT / "linkage" / "encoding" / "schemas" / "company.json"
SECRET = hashlib.sha256(b"bench.quality shared secret").digest()
BLIP_SEED = 20240
#: Thresholds scanned for the hindsight-best ("oracle") figures.
SCAN = np.round(np.arange(0.50, 0.9951, 0.005), 3)
PARTS = ("all", "cross", "within")
CONFIDENCE_BINS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0 + 1e-9)


@dataclass(frozen=True)
class Quality:
    """Pairwise precision, recall and F1 with the counts behind them."""

    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int


# -- pairs ---------------------------------------------------------------------------------------

def _links(first: np.ndarray, second: np.ndarray) -> pd.MultiIndex:
    """Pairs of global record numbers as a MultiIndex, smaller number first, each pair once."""
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    keep = low != high
    unique = np.unique(np.stack([low[keep], high[keep]], axis=1), axis=0) if keep.any() else \
        np.zeros((0, 2), np.int64)
    return pd.MultiIndex.from_arrays([unique[:, 0], unique[:, 1]], names=["left", "right"])


def links_from_labels(labels: np.ndarray) -> pd.MultiIndex:
    """Every pair of records that share a label (-1 = no group)."""
    firsts, seconds = [], []
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    start = int(np.searchsorted(ordered, 0))
    bounds = np.flatnonzero(np.diff(ordered[start:])) + 1
    for members in np.split(order[start:], bounds):
        if members.size > 1:
            for a, b in combinations(members.tolist(), 2):
                firsts.append(a)
                seconds.append(b)
    return _links(np.array(firsts, np.int64), np.array(seconds, np.int64))


def true_links(data: LabelledData) -> pd.MultiIndex:
    """Every pair of records of one entity."""
    codes = pd.factorize(data.entities)[0]
    return links_from_labels(codes)


def _part(links: pd.MultiIndex, owners: np.ndarray, part: str) -> pd.MultiIndex:
    if part == "all" or len(links) == 0:
        return links
    same = owners[links.get_level_values(0)] == owners[links.get_level_values(1)]
    return links[same if part == "within" else ~same]


def measure(truth: pd.MultiIndex, predicted: pd.MultiIndex, owners: np.ndarray
            ) -> dict[str, Quality | None]:
    """Precision / recall / F1 with recordlinkage's metrics, for all, cross- and within-owner pairs.

    A part with neither true nor predicted pairs is ``None``.
    """
    out: dict[str, Quality | None] = {}
    for part in PARTS:
        true_part, found_part = _part(truth, owners, part), _part(predicted, owners, part)
        if len(true_part) == 0 and len(found_part) == 0:
            out[part] = None
            continue
        correct = len(true_part.intersection(found_part))
        precision = float(recordlinkage.precision(true_part, found_part)) if len(found_part) \
            else 1.0
        recall = float(recordlinkage.recall(true_part, found_part)) if len(true_part) else 1.0
        f1 = float(recordlinkage.fscore(true_part, found_part)) if correct else 0.0
        out[part] = Quality(precision, recall, f1, len(true_part), len(found_part), correct)
    return out


def _cross_check(data: LabelledData, labels: np.ndarray, reported: Quality | None) -> None:
    """linkage.analysis.evaluation.pairwise_quality must agree with the recordlinkage figures."""
    keys = [(str(o), str(i)) for i, o in enumerate(data.owners.tolist())]
    predicted = {k: int(g) for k, g in zip(keys, labels.tolist()) if g >= 0}
    truth = dict(zip(keys, data.entities.tolist()))
    ours = pairwise_quality(predicted, truth)["all"]
    if reported is not None and abs(ours.f1 - reported.f1) > 1e-9:
        raise AssertionError(f"pairwise_quality F1 {ours.f1} != recordlinkage F1 {reported.f1}")


# -- ours ----------------------------------------------------------------------------------------

@dataclass
class OursRun:
    """Our pipeline's output on one data set: ``result`` is what ``link_records`` returns."""

    values: list[list[str]]
    clks: np.ndarray
    result: LinkageResult
    scan_pairs: CandidatePairs
    seconds_encode: float
    seconds_link: float


def encode_ours(data: LabelledData, schema: LinkageSchema) -> tuple[list[list[str]], np.ndarray]:
    """Normalise each owner's export with its mapping and encode every record with clkhash."""
    values: list[list[str]] = []
    for export in data.exports:
        prepared = prepare_records(export.rows, schema, parse_mapping(export.mapping_toml))
        values.extend(prepared.values)
    return values, _encode(values, schema)


def _encode(values: list[list[str]], schema: LinkageSchema) -> np.ndarray:
    """``encode_values`` with BLIP's coins (if the schema hardens with BLIP) seeded: repeatable."""
    return encode_values(values, schema, SECRET, rng=np.random.default_rng(BLIP_SEED))


def _limits(data: LabelledData) -> dict:
    return {"max_per_owner": 1 if data.one_to_one else None,
            "cross_owner_only": data.one_to_one}


def run_ours(data: LabelledData, schema: LinkageSchema) -> OursRun:
    """Encode, then link with ``link_records`` and the auto threshold, as the server does."""
    started = time.perf_counter()
    values, clks = encode_ours(data, schema)
    encoded = time.perf_counter()
    result = link_records(clks, data.owners, threshold=None, **_limits(data))
    linked = time.perf_counter()
    # From the engine's floor: below it, balanced (hardened) CLKs put nearly every pair.
    scan = compare_new_records(clks, np.ones(len(data), bool), result.floor)
    if data.one_to_one:
        keep = data.owners[scan.left] != data.owners[scan.right]
        scan = CandidatePairs(scan.left[keep], scan.right[keep], scan.score[keep])
    return OursRun(values, clks, result, scan, encoded - started, linked - encoded)


def group_at(data: LabelledData, pairs: CandidatePairs, threshold: float) -> np.ndarray:
    """Our grouping of the pairs at or above ``threshold`` (labels per record)."""
    keep = pairs.score >= threshold
    kept = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
    limits = _limits(data)
    return greedy_groups(kept, len(data), data.owners,
                         max_per_owner=limits["max_per_owner"]).labels


# -- clkhash + anonlink ---------------------------------------------------------------------------

# Runs inside .bench-venv: argv = clks.npy owners.npy thresholds.npy one_to_one out.npz
_ANONLINK_CHILD = r"""
import array, json, sys, time
import numpy as np
from bitarray import bitarray
from anonlink.candidate_generation import find_candidate_pairs
from anonlink.similarities import dice_coefficient_accelerated
from anonlink.solving import greedy_solve

clks = np.load(sys.argv[1]); owners = np.load(sys.argv[2]); thresholds = np.load(sys.argv[3])
one_to_one = sys.argv[4] == "1"
pool = []
for row in clks:
    bits = bitarray(endian="big"); bits.frombytes(row.tobytes()); pool.append(bits)
started = time.perf_counter()
# One pooled data set compared with itself, so that duplicates inside an owner are candidates too
# (anonlink compares only across data sets); each unordered pair is kept once.
sims, _, (rec0, rec1) = find_candidate_pairs([pool, pool], dice_coefficient_accelerated,
                                             float(thresholds.min()))
sims, rec0, rec1 = np.asarray(sims), np.asarray(rec0, np.int64), np.asarray(rec1, np.int64)
keep = rec0 < rec1
if one_to_one:
    keep &= owners[rec0] != owners[rec1]
sims, rec0, rec1 = sims[keep], rec0[keep], rec1[keep]
order = np.argsort(-sims, kind="stable")
sims, rec0, rec1 = sims[order], rec0[order], rec1[order]
candidate_seconds = time.perf_counter() - started
labels = np.full((thresholds.size, clks.shape[0]), -1, np.int64)
for row, threshold in enumerate(thresholds):
    take = sims >= threshold
    zeros = array.array("I", bytes(4 * int(take.sum())))
    candidates = (array.array("d", sims[take].tolist()), (zeros, zeros),
                  (array.array("I", rec0[take].tolist()), array.array("I", rec1[take].tolist())))
    for label, group in enumerate(greedy_solve(candidates)):
        for _, record in group:
            labels[row, record] = label
np.savez(sys.argv[5], labels=labels)
print(json.dumps({"candidates": int(sims.size), "candidate_seconds": candidate_seconds,
                  "seconds": time.perf_counter() - started}))
"""


def encode_plain(data: LabelledData) -> np.ndarray:
    """The raw values encoded with plain clkhash under the data set's tutorial-style schema."""
    schema = clkhash_schema.from_json_dict(data.plain_schema)
    columns = [f["identifier"] for f in data.plain_schema["features"]]
    rows = data.plain[columns].astype(str).values.tolist()
    bloom_filters = generate_clks(rows, schema, SECRET, validate=False)
    return clks_from_bytes([bf.tobytes() for bf in bloom_filters], schema.l)


def scan_floor(clks: np.ndarray, pairs_per_record: int = 100, seed: int = 0) -> float:
    """The lowest scanned threshold above which about ``pairs_per_record`` pairs per record lie.

    Estimated from random pairs, like ``linkage.matching.engine.choose_floor``: plain
    clkhash CLKs of FEBRL score most non-matches above 0.6, and anonlink would
    return tens of millions of candidates from a lower start.
    """
    count = clks.shape[0]
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, count, 200_000), rng.integers(0, count, 200_000)
    distinct = first != second
    first, second = first[distinct], second[distinct]
    ones = np.bitwise_count(clks).sum(axis=1, dtype=np.int64)
    common = np.bitwise_count(clks[first] & clks[second]).sum(axis=1, dtype=np.int64)
    scores = 2.0 * common / np.maximum(ones[first] + ones[second], 1)
    share = min(1.0, pairs_per_record * count / (count * (count - 1) / 2))
    wanted = float(np.quantile(scores, 1.0 - share))
    return float(SCAN[min(int(np.searchsorted(SCAN, wanted)), SCAN.size - 1)])


def run_anonlink(data: LabelledData, clks: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """anonlink candidates and greedy_solve groups at every scanned threshold from ``scan_floor``.

    Returns (thresholds, labels per threshold, anonlink's timings and counts).
    """
    from .dice import anonlink_python

    # One-to-one linkage does best at low thresholds: look further down (more candidates).
    thresholds = SCAN[SCAN >= scan_floor(clks, 400 if data.one_to_one else 100)]
    with tempfile.TemporaryDirectory() as folder:
        files = [os.path.join(folder, n) for n in ("clks.npy", "owners.npy", "t.npy", "out.npz")]
        np.save(files[0], clks)
        np.save(files[1], data.owners)
        np.save(files[2], thresholds)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        done = subprocess.run([str(anonlink_python()), "-c", _ANONLINK_CHILD, files[0], files[1],
                               files[2], "1" if data.one_to_one else "0", files[3]],
                              capture_output=True, text=True, env=env, cwd=folder, check=False)
        if done.returncode:
            raise SystemExit(f"anonlink run failed:\n{done.stderr}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        info["scan_from"] = float(thresholds[0])
        return thresholds, np.load(files[3])["labels"], info


# -- recordlinkage ECM ---------------------------------------------------------------------------

#: Comparisons per person-schema feature: (method, threshold); None = exact.
ECM_COMPARISONS = {
    "given_name": ("jarowinkler", 0.85), "family_name": ("jarowinkler", 0.85),
    "date_of_birth": (None, None), "address": ("levenshtein", 0.8),
    "city": ("jarowinkler", 0.85), "phone": (None, None),
    "company_name": ("jarowinkler", 0.85), "registration_number": (None, None),
}
ECM_BLOCKS = ("given_name", "family_name", "date_of_birth", "phone", "company_name",
              "registration_number")
ECM_SORTED_NEIGHBOURHOOD = ("family_name", "company_name")


def run_ecm(data: LabelledData, values: list[list[str]], features: list[str]) -> pd.MultiIndex:
    """recordlinkage: union of blocks, thresholded comparisons, ECM; predicted pairs."""
    frame = pd.DataFrame(values, columns=features)
    frame = frame.mask(frame == "")
    indexer = recordlinkage.Index()
    for key in ECM_BLOCKS:
        if key in features:
            indexer.block(key)
    for key in ECM_SORTED_NEIGHBOURHOOD:
        if key in features:
            indexer.sortedneighbourhood(key, window=7)
    candidates = indexer.index(frame)
    if data.one_to_one:
        first = candidates.get_level_values(0).to_numpy()
        second = candidates.get_level_values(1).to_numpy()
        candidates = candidates[data.owners[first] != data.owners[second]]
    compare = recordlinkage.Compare()
    for feature in features:
        method, threshold = ECM_COMPARISONS.get(feature, ("jarowinkler", 0.85))
        if method is None:
            compare.exact(feature, feature, label=feature)
        else:
            compare.string(feature, feature, method=method, threshold=threshold, label=feature)
    comparison = compare.compute(candidates, frame)
    comparison = comparison.loc[:, comparison.nunique() > 1].astype(int)
    links = recordlinkage.ECMClassifier(binarize=None).fit_predict(comparison)
    return _links(links.get_level_values(0).to_numpy(), links.get_level_values(1).to_numpy())


# -- calibration ---------------------------------------------------------------------------------

def group_calibration(data: LabelledData, result: LinkageResult) -> list[tuple]:
    """(bin low, bin high, groups, mean confidence, share of pure groups) per confidence bin.

    A group is pure when all its records belong to one entity: exactly the event
    whose probability the confidence (match probability of the weakest link of
    a complete-linkage group) claims.
    """
    codes = pd.factorize(data.entities)[0]
    members = result.grouping.members()
    pure = np.array([np.unique(codes[m]).size == 1 for m in members], bool)
    return _bins(result.confidence, pure)


def _basis(data: LabelledData, run: OursRun) -> tuple[np.ndarray, np.ndarray]:
    """Scores and truth of what the score model describes.

    Candidate pairs at or above the floor; or, with the one-to-one solver's
    evidence, the links the solver makes at the floor.
    """
    result = run.result
    pairs = run.scan_pairs
    keep = pairs.score >= result.floor
    pairs = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
    codes = pd.factorize(data.entities)[0]
    if "one-to-one solver" in result.choice.reason:
        grouping = greedy_groups(pairs, len(data), data.owners, max_per_owner=1)
        pure = np.array([np.unique(codes[m]).size == 1 for m in grouping.members()], bool)
        return grouping.weakest_score, pure
    return pairs.score, codes[pairs.left] == codes[pairs.right]


def pair_calibration(data: LabelledData, run: OursRun) -> list[tuple]:
    """The same for what the model describes (see ``_basis``): its P(match) against truth."""
    model = run.result.choice.model
    if model is None:
        return []
    scores, outcome = _basis(data, run)
    return _bins(model.match_probability(scores), outcome)


def _bins(probability: np.ndarray, outcome: np.ndarray) -> list[tuple]:
    rows = []
    for low, high in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:]):
        inside = (probability >= low) & (probability < high)
        if inside.any():
            rows.append((low, min(high, 1.0), int(inside.sum()),
                         float(probability[inside].mean()), float(outcome[inside].mean())))
    return rows


# -- one data set ----------------------------------------------------------------------------------

@dataclass
class MethodResult:
    """One method's figures on one data set."""

    method: str
    threshold: float | None
    quality: dict[str, Quality | None]


def _best(data: LabelledData, truth: pd.MultiIndex, labelled) -> tuple[float, dict]:
    """The threshold (and its figures) with the best F1 over all pairs among (threshold, labels)."""
    best_threshold, best_quality, best_f1 = None, None, -1.0
    for threshold, labels in labelled:
        quality = measure(truth, links_from_labels(labels), data.owners)
        if quality["all"] is not None and quality["all"].f1 > best_f1 + 1e-12:
            best_threshold, best_quality, best_f1 = float(threshold), quality, quality["all"].f1
    return best_threshold, best_quality


def model_check(data: LabelledData, run: OursRun) -> dict:
    """The score model's estimates at the auto threshold beside the measured figures.

    Measured on what the model describes (``_basis``: candidate pairs, or the
    one-to-one solver's links), before grouping: precision is the share of true
    ones at or above the threshold; recall is given against the true ones the
    model can see (at or above the floor) and against all true pairs.
    """
    result = run.result
    threshold = result.choice.threshold
    scores, is_true = _basis(data, run)
    above = scores >= threshold
    truth = true_links(data)
    if data.one_to_one:
        truth = _part(truth, data.owners, "cross")
    model = result.choice.model
    expected = float(model.match_probability(scores).sum()) if model else None
    return {
        "threshold": threshold, "floor": result.floor, "reason": result.choice.reason,
        "basis": ("one-to-one links at the floor" if "one-to-one solver" in result.choice.reason
                  else "candidate pairs at or above the floor"),
        "estimated_precision": result.choice.estimated_precision,
        "estimated_recall": result.choice.estimated_recall,
        "measured_precision": float(is_true[above].mean()) if above.any() else 1.0,
        "measured_recall_visible": float(is_true[above].sum() / max(is_true.sum(), 1)),
        "measured_recall_all": float(is_true[above].sum() / max(len(truth), 1)),
        "expected_matches_above_floor": expected,
        "true_pairs_above_floor": int(is_true.sum()),
        "model": None if model is None else asdict(model),
    }


def simulate_reviews(data: LabelledData, run: OursRun, reviews: int) -> LinkageResult:
    """Review up to ``reviews`` groups flagged for review, as a coordinator would, and rerun.

    The flagged groups (confidence in ``REVIEW_PROBABILITIES``), most uncertain
    first, are accepted when all their records are one entity (the truth plays
    the coordinator) and rejected otherwise; their weakest-link scores go to
    ``linkage.matching.engine.decide`` as ``known_matches`` / ``known_non_matches``, as
    the server passes earlier reviews.
    """
    result = run.result
    low, high = REVIEW_PROBABILITIES
    codes = pd.factorize(data.entities)[0]
    members = result.grouping.members()
    flagged = np.flatnonzero((result.confidence >= low) & (result.confidence < high))
    flagged = flagged[np.argsort(np.abs(result.confidence[flagged] - 0.5), kind="stable")]
    flagged = flagged[:reviews]
    pure = np.array([np.unique(codes[members[g]]).size == 1 for g in flagged], bool)
    scores = result.grouping.weakest_score[flagged]
    pairs = run.scan_pairs
    return decide(pairs, result.floor, data.owners, threshold=None,
                  known_matches=scores[pure], known_non_matches=scores[~pure], **_limits(data))


def run_dataset(data: LabelledData, schema: LinkageSchema, *, anonlink: bool = True,
                splink: bool = True, reviews: int = 0, log=print) -> dict:
    """Every method on one data set; returns the figures (also what ``--json`` writes).

    With ``reviews``, also ours after that many simulated reviews (``simulate_reviews``).
    """
    truth = true_links(data)
    log(f"# {data.name}: {len(data)} records, {len(data.exports)} owner(s), "
        f"{len(truth)} true pairs; encoding and linking ...")
    ours = run_ours(data, schema)
    auto_labels = ours.result.grouping.labels
    auto = measure(truth, links_from_labels(auto_labels), data.owners)
    _cross_check(data, auto_labels, auto["all"])
    methods = [MethodResult("ours, auto threshold", ours.result.choice.threshold, auto)]
    reviewed = None
    if reviews and not data.one_to_one:
        reviewed = simulate_reviews(data, ours, reviews)
        methods.append(MethodResult(
            f"ours, auto after reviewing up to {reviews} flagged groups",
            reviewed.choice.threshold,
            measure(truth, links_from_labels(reviewed.grouping.labels), data.owners)))
    threshold, quality = _best(data, truth, ((t, group_at(data, ours.scan_pairs, t))
                                             for t in SCAN if t >= ours.result.floor))
    methods.append(MethodResult("ours at its hindsight-best threshold", threshold, quality))
    timings = {"ours_encode_s": ours.seconds_encode, "ours_link_s": ours.seconds_link}
    if anonlink:
        started = time.perf_counter()
        plain = encode_plain(data)
        thresholds, labels, info = run_anonlink(data, plain)
        threshold, quality = _best(data, truth, zip(thresholds, labels))
        methods.append(MethodResult("clkhash+anonlink, hindsight-best threshold", threshold,
                                    quality))
        timings["anonlink_s"] = time.perf_counter() - started
        timings["anonlink_candidates"] = info["candidates"]
        timings["anonlink_scan_from"] = info["scan_from"]
    if splink:
        from .quality_splink import SPLINK_THRESHOLD, run_splink

        started = time.perf_counter()
        links = run_splink(ours.values, schema.feature_names, data.owners,
                           one_to_one=data.one_to_one)
        methods.append(MethodResult("Splink 5 EM (plaintext)", SPLINK_THRESHOLD,
                                    measure(truth, links, data.owners)))
        timings["splink_s"] = time.perf_counter() - started
    started = time.perf_counter()
    ecm = run_ecm(data, ours.values, schema.feature_names)
    methods.append(MethodResult("recordlinkage ECM (plaintext)", None,
                                measure(truth, ecm, data.owners)))
    timings["ecm_s"] = time.perf_counter() - started
    return {
        "dataset": data.name, "records": len(data), "owners": len(data.exports),
        "true_pairs": len(truth),
        "methods": [{"method": m.method, "threshold": m.threshold,
                     "quality": {k: (asdict(v) if v else None) for k, v in m.quality.items()}}
                    for m in methods],
        "model_check": model_check(data, ours),
        "groups": ours.result.grouping.group_count,
        "group_calibration": group_calibration(data, ours.result),
        "reviewed_group_calibration": (group_calibration(data, reviewed)
                                       if reviewed is not None else None),
        "pair_calibration": pair_calibration(data, ours),
        "timings": timings,
    }


# -- printing --------------------------------------------------------------------------------------

def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(figures: dict) -> str:
    """Markdown tables for one data set."""
    parts = [p for p in PARTS if any(m["quality"][p] for m in figures["methods"])]
    lines = [f"### {figures['dataset']}: {figures['records']} records, {figures['owners']} "
             f"owner(s), {figures['true_pairs']} true pairs", ""]
    header = "| method | threshold |" + "".join(f" P {p} | R {p} | F1 {p} |" for p in parts)
    lines += [header, "|---|---|" + "---|---|---|" * len(parts)]
    for method in figures["methods"]:
        cells = [method["method"], _fmt(method["threshold"], 3)]
        for part in parts:
            q = method["quality"][part]
            cells += [_fmt(q and q["precision"]), _fmt(q and q["recall"]), _fmt(q and q["f1"])]
        lines.append("| " + " | ".join(cells) + " |")
    check = figures["model_check"]
    lines += ["", f"Score model at the auto threshold {check['threshold']:.3f} "
              f"(floor {check['floor']:.2f}), on {check['basis']}, before grouping:", "",
              "| | precision | recall (true ones above floor) | recall (all true pairs) "
              "| matches above floor |", "|---|---|---|---|---|",
              f"| estimated by the model | {_fmt(check['estimated_precision'])} "
              f"| {_fmt(check['estimated_recall'])} | - "
              f"| {_fmt(check['expected_matches_above_floor'], 0)} |",
              f"| measured | {_fmt(check['measured_precision'])} "
              f"| {_fmt(check['measured_recall_visible'])} | {_fmt(check['measured_recall_all'])} "
              f"| {check['true_pairs_above_floor']} |"]
    tables = [("Group confidence", figures["group_calibration"], "groups",),
              (f"Match probability of the {check['basis']}", figures["pair_calibration"],
               "pairs")]
    if figures.get("reviewed_group_calibration"):
        tables.insert(1, ("Group confidence after the simulated reviews",
                          figures["reviewed_group_calibration"], "groups"))
    for title, rows, what in tables:
        lines += ["", f"{title} against truth:", "",
                  f"| bin | {what} | mean predicted | observed |", "|---|---|---|---|"]
        lines += [f"| [{low:.3f}, {high:.3f}) | {count} | {mean:.4f} | {observed:.4f} |"
                  for low, high, count, mean, observed in rows]
    return "\n".join(lines)


def render_summary(everything: list[dict]) -> str:
    """One line per data set: F1 over all pairs of every method, and the model's estimates."""
    names = []
    for figures in everything:
        names += [m["method"] for m in figures["methods"] if m["method"] not in names]
    short = {"ours, auto threshold": "ours auto",
             "ours at its hindsight-best threshold": "ours hindsight-best",
             **{m: "ours auto after reviews" for m in names if "after reviewing" in m},
             "clkhash+anonlink, hindsight-best threshold": "clkhash+anonlink hindsight-best",
             "recordlinkage ECM (plaintext)": "recordlinkage ECM",
             "Splink 5 EM (plaintext)": "Splink 5"}
    lines = ["### Summary: F1 over all pairs", "",
             "| data set | " + " | ".join(short.get(n, n) for n in names)
             + " | est. P / measured P | est. R / measured R |",
             "|---|" + "---|" * (len(names) + 2)]
    for figures in everything:
        by_name = {m["method"]: m["quality"]["all"] for m in figures["methods"]}
        check = figures["model_check"]
        cells = [_fmt(by_name[n]["f1"]) if by_name.get(n) else "-" for n in names]
        lines.append(f"| {figures['dataset']} | " + " | ".join(cells)
                     + f" | {_fmt(check['estimated_precision'])} / "
                       f"{_fmt(check['measured_precision'])} | "
                       f"{_fmt(check['estimated_recall'])} / "
                       f"{_fmt(check['measured_recall_visible'])} |")
    return "\n".join(lines)


def _load(name: str, corruption: float, seed: int, records: int) -> LabelledData:
    if name == "febrl4":
        return load_febrl4()
    if name == "febrl3":
        return load_febrl3()
    if name == "companies":
        return load_companies(corruption, seed, records // 2)
    if name == "heldout":
        return load_heldout(corruption, seed, records)
    return load_synthetic(corruption, seed, records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["febrl4", "febrl3", "synthetic", "companies"],
                        choices=["febrl4", "febrl3", "synthetic", "companies", "heldout"],
                        help="heldout: agencies, habits and naming customs nothing was tuned "
                             "on (bench.quality_heldout); use it with a held-out --seed "
                             "(e.g. 101) and --corruption (e.g. 0.25)")
    parser.add_argument("--corruption", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4],
                        help="corruption levels of the synthetic persons and companies "
                             "(default 0.1 0.2 0.3 0.4)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    parser.add_argument("--records", type=int, default=2000,
                        help="synthetic persons per agency (default 2000; companies: half)")
    parser.add_argument("--schema", type=Path, default=PERSON_SCHEMA,
                        help="our person schema (default: the shipped one)")
    parser.add_argument("--company-schema", type=Path, default=COMPANY_SCHEMA,
                        help="our company schema (default: the shipped one)")
    parser.add_argument("--skip-anonlink", action="store_true",
                        help="leave out the clkhash+anonlink peer (no .bench-venv needed)")
    parser.add_argument("--skip-splink", action="store_true",
                        help="leave out the plaintext Splink peer")
    parser.add_argument("--reviews", type=int, default=50,
                        help="also rerun after reviewing up to this many flagged groups, the "
                             "truth playing the coordinator (default 50; 0: off)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)

    schemas = {"person": load_schema(args.schema.read_text("utf-8")),
               "company": load_schema(args.company_schema.read_text("utf-8"))}
    jobs = [(name, c) for name in args.datasets
            for c in (args.corruption if name in ("synthetic", "companies", "heldout")
                      else [None])]
    everything = []
    for name, corruption in jobs:
        data = _load(name, corruption, args.seed, args.records)
        started = time.perf_counter()
        schema = schemas["company" if name == "companies" else "person"]
        figures = run_dataset(data, schema, anonlink=not args.skip_anonlink,
                              splink=not args.skip_splink, reviews=args.reviews,
                              log=lambda text: print(text, file=sys.stderr, flush=True))
        figures["seconds"] = time.perf_counter() - started
        everything.append(figures)
        print(render(figures) + "\n", flush=True)
    if len(everything) > 1:
        print(render_summary(everything))
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
