"""The attack's world: a plaintext population, the agency's CLKs and the attacker's own CLKs.

The attacker of every attack here is the curious server operator of our
threat model with a population register: she holds the plaintext of the
people in an agency's file (all of them, or half at "partial overlap"), knows
the linkage schema including its hardening section (Kerckhoffs), and encodes
her plaintext with our own encoder (``linkage.encoding.encoder.encode_values``) under
a secret of her own. She never has the agency's secret.

Records are synthetic people from ``client.synthetic`` with the three
features the published attacks use (given name, family name, date of birth);
the schema's other features are left missing, as in the issue's measurement.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

import numpy as np

from linkage.encoding.encoder import encode_values
from linkage.encoding.normalise import normalise_value
from linkage.encoding.schema import LinkageSchema, default_schema_text, load_schema
from linkage_service.client.synthetic import SyntheticConfig, generate

__all__ = ["ATTACK_FEATURES", "World", "make_world", "people", "schema_with", "tokens_of"]

ATTACK_FEATURES = ("given_name", "family_name", "date_of_birth")


def schema_with(hardening: dict, *, clkhash_bits: int | None = None,
                bits_per_token_scale: float = 1.0) -> LinkageSchema:
    """The shipped person schema with ``hardening`` in place of its own section.

    ``clkhash_bits`` and ``bits_per_token_scale`` make the "larger filters, more
    bits per token" options: the filter length and every feature's
    ``bitsPerToken`` (rounded) are changed together.
    """
    document = json.loads(default_schema_text())
    document.pop("hardening", None)
    if hardening:
        document["hardening"] = hardening
    if clkhash_bits is not None:
        document["clkConfig"]["l"] = clkhash_bits
    if bits_per_token_scale != 1.0:
        for feature in document["features"]:
            strategy = feature["hashing"]["strategy"]
            strategy["bitsPerToken"] = max(1, round(strategy["bitsPerToken"]
                                                    * bits_per_token_scale))
    return load_schema(json.dumps(document))


def people(count: int, seed: int) -> list[list[str]]:
    """``count`` distinct synthetic people, normalised as agencies do, in schema order.

    Values of the schema's features that the attacks do not use are empty
    (missing). Every person appears once: a population register.
    """
    schema = load_schema(default_schema_text())
    kinds = {feature.identifier: feature.kind for feature in schema.features}
    dataset = generate(SyntheticConfig(seed=seed, records_per_agency=max(1, count // 4),
                                       corruption=0.0))
    persons = sorted(dataset.people.values(), key=lambda person: person.entity)
    random.Random(seed).shuffle(persons)
    out, seen = [], set()
    for person in persons:
        raw = {"given_name": person.given_name, "family_name": person.family_name,
               "date_of_birth": person.date_of_birth.isoformat()}
        record = [normalise_value(kinds[f], raw[f], date_format="%Y-%m-%d")
                  if f in raw else "" for f in schema.feature_names]
        if tuple(record) in seen:
            continue
        seen.add(tuple(record))
        out.append(record)
        if len(out) == count:
            return out
    raise ValueError(f"the generator gave only {len(out)} distinct people; ask for fewer")


def tokens_of(values: list[list[str]], schema: LinkageSchema) -> list[list[str]]:
    """Every record's clkhash tokens, tagged with their feature (what the attacker can compute)."""
    comparators = [field.hashing_properties.comparator for field in schema.clkhash.fields]
    out = []
    for record in values:
        tokens = []
        for name, comparator, value in zip(schema.feature_names, comparators, record):
            if value:
                tokens.extend(f"{name}:{token}" for token in comparator.tokenize(value))
        out.append(tokens)
    return out


def _secret(label: str, run: int) -> bytes:
    return hashlib.sha256(f"bench.attacks {label} {run}".encode()).digest()


@dataclass(frozen=True)
class World:
    """One run: the agency's encoded file and the attacker's plaintext and her own encoding.

    ``truth[i]`` is the row of ``plaintext`` that agency record ``i`` is, or -1
    when the attacker's register does not hold that person (partial overlap).
    """

    schema: LinkageSchema
    agency_clks: np.ndarray
    plaintext: list[list[str]]
    attacker_clks: tuple[np.ndarray, ...]
    truth: np.ndarray

    @property
    def records(self) -> int:
        return self.agency_clks.shape[0]


def make_world(schema: LinkageSchema, records: int, run: int, *, overlap: float = 1.0,
               attacker_secrets: int = 1) -> World:
    """The agency encodes ``records`` people under its secret; the attacker, her register.

    The attacker encodes her register under ``attacker_secrets`` secrets of her
    own: averaging their similarity graphs estimates the similarity our
    encoder gives a pair under *any* secret, which removes her side's noise.

    With ``overlap`` < 1 the attacker's register holds ``records`` people of
    whom only that share are in the agency's file. BLIP coins are seeded per
    run (repeatable); the two sides get different coins.
    """
    shared = round(records * overlap)
    population = people(2 * records - shared, seed=1000 + run)
    agency_rows = population[:records]
    attacker_rows = population[records - shared:]
    rng = random.Random(run)
    order = list(range(len(attacker_rows)))
    rng.shuffle(order)
    plaintext = [attacker_rows[i] for i in order]
    where = {index: position for position, index in enumerate(order)}
    truth = np.array([where.get(i - (records - shared), -1) if i >= records - shared else -1
                      for i in range(records)], dtype=np.int64)
    agency_clks = encode_values(agency_rows, schema, _secret("agency", run),
                                rng=np.random.default_rng([run, 0]), workers=1)
    attacker_clks = tuple(
        encode_values(plaintext, schema, _secret(f"attacker {copy}", run),
                      rng=np.random.default_rng([run, copy, 1]), workers=1)
        for copy in range(attacker_secrets))
    return World(schema, agency_clks, plaintext, attacker_clks, truth)
