"""CLKs cut into per-field segments, and per-field similarity of candidate pairs.

Why: one record-level CLK mixes every field into one Dice score, so a moved
address or a missing phone costs as much as a wrong name, and the score cannot
say which field disagrees. A CLK made of one Bloom filter per field
(concatenated, each segment a whole number of 64-bit words) keeps the
record-level kernel fast — the concatenation is still one bit vector, and its
Dice still finds candidate pairs — while the per-field Dice of each candidate
pair is read off the segments. An empty segment is a missing value: no
evidence either way.

What this costs in privacy: a per-field segment is a Bloom filter of one field,
which frequency attacks read more easily than one record-level filter. The
layout is public (it is in the schema); the attacks of ``bench.attacks``
measure what it leaks.

Pure: arrays in, arrays out; clkhash is used as the encoder of each segment.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import numpy as np

from linkage.matching.candidates import CandidatePairs

__all__ = [
    "FieldLayout",
    "blocking_pairs",
    "encode_field_segments",
    "exact_segment_pairs",
    "field_similarities",
    "layout_for",
    "pair_similarities",
    "segment_frequencies",
    "swapped_name_similarities",
    "union_pairs",
]

#: Bits per segment by normaliser kind when a schema gives none.
DEFAULT_SEGMENT_BITS = {"name": 256, "date": 128, "address": 256, "text": 128, "phone": 128}


@dataclass(frozen=True)
class FieldLayout:
    """Where each field's segment lies in the concatenated CLK, in 64-bit words.

    ``fields[i]`` occupies words ``[word_starts[i], word_starts[i] + word_counts[i])``.
    """

    fields: tuple[str, ...]
    word_starts: tuple[int, ...]
    word_counts: tuple[int, ...]

    @property
    def words(self) -> int:
        return sum(self.word_counts)

    @property
    def bits(self) -> int:
        return 64 * self.words

    def segment(self, clks: np.ndarray, field: str) -> np.ndarray:
        index = self.fields.index(field)
        start = self.word_starts[index]
        return clks[:, start:start + self.word_counts[index]]


def layout_for(fields: list[str], bits: list[int]) -> FieldLayout:
    """The layout of segments of ``bits`` each (rounded up to whole words), in field order."""
    counts = [max(1, -(-b // 64)) for b in bits]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    return FieldLayout(tuple(fields), tuple(starts), tuple(counts))


#: Fields hashed under one key, so that a value filed under the other name still matches.
SHARED_KEY_FIELDS = ("given_name", "family_name")


def _one_field_schema(document: dict, feature_index: int, bits: int):
    """A clkhash schema that hashes only one feature, into a filter of ``bits``.

    Each field's key is derived under its own HKDF ``info`` (the two name
    fields share one, so a swapped name is recognised), so no two other
    segments are hashed under one key.
    """
    import base64

    from clkhash import schema as clkhash_schema

    feature = copy.deepcopy(document["features"][feature_index])
    identifier = feature["identifier"]
    group = "names" if identifier in SHARED_KEY_FIELDS else identifier
    config = copy.deepcopy(document["clkConfig"])
    config["l"] = bits
    config["kdf"]["info"] = base64.b64encode(f"linkage segment {group}".encode()).decode()
    single = {"version": document["version"], "clkConfig": config, "features": [feature]}
    return clkhash_schema.from_json_dict(single)


def encode_field_segments(values: list[list[str]], schema_text: str, secret: bytes,
                          layout: FieldLayout, *, blip_epsilon: float | None = None,
                          rng: np.random.Generator | None = None) -> np.ndarray:
    """Encode each field into its own segment with clkhash; the concatenation, packed.

    ``values`` are normalised values in the schema's feature order; each
    feature's hashing settings come from the schema (``schema_text``), its
    segment length from ``layout``. ``blip_epsilon`` flips bits after encoding
    (``linkage.encoding.hardening.blip``), segment by segment.
    """
    from clkhash.clk import generate_clks

    from linkage.clks import clks_from_bytes
    from linkage.encoding.hardening import blip

    document = json.loads(schema_text)
    identifiers = [f["identifier"] for f in document["features"]]
    parts = []
    for field, count in zip(layout.fields, layout.word_counts):
        index = identifiers.index(field)
        single = _one_field_schema(document, index, 64 * count)
        filters = generate_clks([[record[index]] for record in values], single, secret,
                                validate=True, max_workers=1)
        segment = clks_from_bytes([f.tobytes() for f in filters], 64 * count)
        if blip_epsilon is not None:
            segment = blip(segment, blip_epsilon, rng)
        parts.append(segment)
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def field_similarities(clks: np.ndarray, layout: FieldLayout, pairs: CandidatePairs
                       ) -> np.ndarray:
    """Per-field Dice of each candidate pair: (pairs × fields), NaN where a segment is empty."""
    out = np.full((len(pairs.left), len(layout.fields)), np.nan)
    for column, (start, count) in enumerate(zip(layout.word_starts, layout.word_counts)):
        left = clks[pairs.left, start:start + count]
        right = clks[pairs.right, start:start + count]
        ones_left = np.bitwise_count(left).sum(axis=1, dtype=np.int64)
        ones_right = np.bitwise_count(right).sum(axis=1, dtype=np.int64)
        common = np.bitwise_count(left & right).sum(axis=1, dtype=np.int64)
        present = (ones_left > 0) & (ones_right > 0)
        out[present, column] = 2.0 * common[present] / (ones_left + ones_right)[present]
    return out


def swapped_name_similarities(clks: np.ndarray, layout: FieldLayout, pairs: CandidatePairs,
                              given: str, family: str) -> np.ndarray:
    """Dice of given against family name and family against given: (pairs × 2), NaN if empty.

    Both name segments must be of one length and hashed with the same settings
    for this to mean anything; ``encode_field_segments`` hashes them under one
    key (``SHARED_KEY_FIELDS``).
    """
    left_given = layout.segment(clks, given)[pairs.left]
    left_family = layout.segment(clks, family)[pairs.left]
    right_given = layout.segment(clks, given)[pairs.right]
    right_family = layout.segment(clks, family)[pairs.right]
    out = np.full((len(pairs.left), 2), np.nan)
    for column, (a, b) in enumerate(((left_given, right_family), (left_family, right_given))):
        ones_a = np.bitwise_count(a).sum(axis=1, dtype=np.int64)
        ones_b = np.bitwise_count(b).sum(axis=1, dtype=np.int64)
        common = np.bitwise_count(a & b).sum(axis=1, dtype=np.int64)
        present = (ones_a > 0) & (ones_b > 0)
        out[present, column] = 2.0 * common[present] / (ones_a + ones_b)[present]
    return out


def exact_segment_pairs(clks: np.ndarray, layout: FieldLayout, fields: tuple[str, ...], *,
                        max_block: int = 100) -> CandidatePairs:
    """Pairs of records whose segments of all ``fields`` are identical and non-empty (blocking).

    Why: the record-level Dice of two records of one person drops below the
    floor when several fields disagree (a moved address, a new phone, a
    missing date), although one field agrees exactly; a plaintext linker
    blocks on such fields. Identical segments are what the server can already
    see (their Dice is 1), so this blocking reveals nothing more. Blocks larger
    than ``max_block`` (a very common name) are skipped: their pairs are left
    to the record-level scan. ``score`` is the record-level Dice.
    """
    segments = [layout.segment(clks, f) for f in fields]
    present = np.all([s.any(axis=1) for s in segments], axis=0)
    rows = np.flatnonzero(present)
    if rows.size < 2:
        empty = np.zeros(0, np.int64)
        return CandidatePairs(empty, empty, np.zeros(0))
    keys = np.ascontiguousarray(np.concatenate([s[rows] for s in segments], axis=1))
    _, inverse, counts = np.unique(keys.view(np.dtype((np.void, keys.shape[1] * 8))).ravel(),
                                   return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    firsts, seconds = [], []
    for block in np.flatnonzero((counts >= 2) & (counts <= max_block)).tolist():
        members = rows[order[bounds[block]:bounds[block + 1]]]
        a, b = np.triu_indices(members.size, 1)
        firsts.append(members[a])
        seconds.append(members[b])
    if not firsts:
        empty = np.zeros(0, np.int64)
        return CandidatePairs(empty, empty, np.zeros(0))
    left, right = np.concatenate(firsts), np.concatenate(seconds)
    low, high = np.minimum(left, right), np.maximum(left, right)
    ones = np.bitwise_count(clks).sum(axis=1, dtype=np.int64)
    common = np.bitwise_count(clks[low] & clks[high]).sum(axis=1, dtype=np.int64)
    score = 2.0 * common / np.maximum(ones[low] + ones[high], 1)
    return CandidatePairs(low, high, score)


def segment_frequencies(clks: np.ndarray, layout: FieldLayout, field: str) -> np.ndarray:
    """Per record, the share of records whose segment of ``field`` is identical to its own.

    The server's view of a value's frequency: an unhardened segment is a
    deterministic function of the value, so identical segments are identical
    values (BLIP's random flips make nearly every segment unique, and this
    then says 1/N for all: no term-frequency evidence). Empty segments get NaN.
    """
    segment = np.ascontiguousarray(layout.segment(clks, field))
    keys = segment.view(np.dtype((np.void, segment.shape[1] * 8))).ravel()
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    share = counts[inverse] / max(segment.shape[0], 1)
    share = share.astype(float)
    share[~segment.any(axis=1)] = np.nan
    return share


#: How much better (sum of both names' Dice) the crosswise comparison must be to count as a swap.
SWAP_MARGIN = 0.2


def pair_similarities(clks: np.ndarray, layout: FieldLayout, pairs: CandidatePairs,
                      names: tuple[str, str] | None = SHARED_KEY_FIELDS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-field Dice (pairs × fields, NaN = missing) and which pairs had their names swapped.

    Where both ``names`` are in the layout, a pair whose given and family names
    agree clearly better crosswise (by ``SWAP_MARGIN``) is compared crosswise:
    a name filed under the other column is still the same name, as in Splink's
    forename-surname comparison.
    """
    similarities = field_similarities(clks, layout, pairs)
    swapped = np.zeros(len(pairs), bool)
    if names is None or not all(n in layout.fields for n in names):
        return similarities, swapped
    given, family = (layout.fields.index(n) for n in names)
    crossed = swapped_name_similarities(clks, layout, pairs, *names)
    straight = np.nan_to_num(similarities[:, [given, family]], nan=0.0).sum(axis=1)
    across = np.nan_to_num(crossed, nan=0.0).sum(axis=1)
    swapped = across > straight + SWAP_MARGIN
    similarities[swapped, given] = crossed[swapped, 0]
    similarities[swapped, family] = crossed[swapped, 1]
    return similarities, swapped


def union_pairs(parts: list[CandidatePairs]) -> CandidatePairs:
    """The pairs of all ``parts`` (each with ``left < right``), each once, ordered."""
    joined = CandidatePairs.concat(parts)
    if not len(joined):
        return joined
    _, first = np.unique(joined.left * (1 << 32) + joined.right, return_index=True)
    return CandidatePairs(joined.left[first], joined.right[first], joined.score[first])


def blocking_pairs(clks: np.ndarray, layout: FieldLayout, keys: tuple[tuple[str, ...], ...], *,
                   max_block: int = 100) -> CandidatePairs:
    """Pairs identical on every field of at least one key (see ``exact_segment_pairs``)."""
    return union_pairs([exact_segment_pairs(clks, layout, key, max_block=max_block)
                        for key in keys if all(f in layout.fields for f in key)])
