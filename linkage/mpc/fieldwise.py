"""Per-field agreement levels on shares: field-wise scoring without a server seeing a CLK.

Why: two-server mode keeps the similarity graph from the servers, but scores record-level
only; field-wise Fellegi-Sunter needs each candidate pair's *level* per field (Dice >= 0.95
/ 0.85 / 0.7 / 0.5 / below, or missing). This computes exactly those levels on shares and
opens nothing else per pair. One generator per server (``fieldwise_party``), as
``protocol``; per run:

1. **Scan, every cross pair.** ``E``/``F`` opened once per record; per block one Beaver
   product per field segment gives shares of every field's common bits ``c_f`` (their sum
   is the record-level ``<x, y>``: the same multiply-adds as one record-level product); the
   record-level comparison ``Dice >= t_low`` is opened: the **candidate graph**.
2. **Presence.** For each record and field, ``[|x_f| >= 1]`` as XOR shares (one comparison
   per record and field), and per pair (candidates and a public random sample) the AND of
   both sides: "neither segment empty". Nothing opened yet.
3. **Levels.** Per pair and field four comparisons ``2 q_k c_f - p_k (|x_f| + |y_f|) >= 0``
   (each threshold a ``rational_threshold``, so every decision is the plaintext float test).
   The levels are a unary code, so their four bits say no more than the level.
4. **Opened for candidates:** the presence bit of every field, then the four bits of the
   present fields only: exactly ``levels_of`` (-1 = missing), nothing about a missing field.
5. **Opened for the random sample: counts only.** The bits are ANDed with presence,
   turned into additive shares with daBits and summed: per field the number of present
   pairs and of pairs at or above each threshold, which is all that u needs.

Swapped names (``name_swap_products``, in ``fieldwise_links_party`` and the training, not in
``fieldwise_party``): two more products per pair (given against family name and back), their
four level bits each, one comparison (``SWAP_MARGIN``) and the names' bits chosen by it on
shares; the swap bit is never opened. Not on shares (see docs/privacy.md, "Field-wise levels
on shares"): term-frequency adjustments and exact-equality blocking; the servers never see
identical segments.

The links and the training compare on bit planes (``planes``): the levels and the swap mod
2^16 where the segments allow it (``level_plane_bits``), presence, the weight sum and the
training's bands mod 2^32. ``fieldwise_party``'s levels keep the word layout.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InvalidRequestError
from .band_dealer import HitDealer, hit_material
from .dealer import BlockMaterial, Plan
from .field_dealer import BitDealer, BitMaterial, FieldMaterial, bit_material, product_columns
from .protocol import RationalThreshold, _check_shares, _non_negative, rational_threshold
from .ring import RightOperand

__all__ = ["FIELD_THRESHOLDS", "FieldLevels", "FieldLinks", "FieldOperands", "FieldWeights",
           "LINK_PAIRS_PER_BLOCK", "LaterMaterial", "LocalDealer", "SWAP_FIELDS", "SWAP_MARGIN",
           "WEIGHT_SCALE", "comparisons_kind", "field_columns", "field_weights",
           "fieldwise_links_party", "fieldwise_party", "kind_plane_bits", "level_material",
           "level_plane_bits", "level_words", "links_material", "links_plan", "name_swap_products",
           "open_operands", "per_pair", "plain_levels", "rule_margin"]

#: The levels' thresholds, best first, as ``linkage.matching.fellegi_sunter.LEVEL_THRESHOLDS``.
FIELD_THRESHOLDS = (0.95, 0.85, 0.7, 0.5)

FieldProtocol = Generator[np.ndarray, np.ndarray, "FieldLevels"]


def field_columns(word_starts: Sequence[int], word_counts: Sequence[int]
                  ) -> tuple[tuple[int, int], ...]:
    """Bit ranges of a ``FieldLayout``'s segments in ``unpack_bits`` order (64 bits a word)."""
    return tuple((64 * start, 64 * (start + count))
                 for start, count in zip(word_starts, word_counts))


@dataclass(frozen=True)
class LaterMaterial:
    """Material made once the candidate graph is open, for counts only (in call order).

    ``comparisons(count, thresholds, plane_bits=0)``: e.g. ``hit_material`` of a fresh
    ``HitDealer`` (0: the word layout mod 2^32; 16 or 32: on bit planes, ``planes``);
    ``bits(words, dabits)``: e.g. ``bit_material`` of a fresh ``BitDealer``. ``expect``, when
    given, is told the calls about to come, in order (``("comparisons", count, thresholds)``,
    ``("comparisons16", ...)`` and ``("comparisons32", ...)`` on planes, or ``("bits",
    words, dabits)``): a dealer in another process then deals ahead instead of answering one
    call at a time.
    """

    comparisons: Callable[..., BlockMaterial]
    bits: Callable[[int, int], BitMaterial]
    expect: Callable[[list[tuple[str, int, int]]], None] | None = None


@dataclass(frozen=True)
class FieldLevels:
    """What a field-wise run opens.

    ``left``/``right``: candidate pairs (record-level Dice >= the candidate threshold);
    ``levels``: candidates x fields, 0 (best) to 4, -1 = missing; ``random_pairs``: size of
    the random sample; ``random_present[f]`` and ``random_at_least[k, f]``: its pairs with
    field f present, and present with Dice >= ``FIELD_THRESHOLDS[k]``.
    """

    left: np.ndarray
    right: np.ndarray
    levels: np.ndarray
    random_pairs: int
    random_present: np.ndarray
    random_at_least: np.ndarray

    @property
    def random_level_counts(self) -> np.ndarray:
        """Fields x levels: how many sampled pairs are at each level (missing left out)."""
        at_least = self.random_at_least
        counts = np.empty((at_least.shape[1], at_least.shape[0] + 1), np.int64)
        counts[:, 0] = at_least[0]
        counts[:, 1:-1] = (at_least[1:] - at_least[:-1]).T
        counts[:, -1] = self.random_present - at_least[-1]
        return counts

    def __len__(self) -> int:
        return int(self.left.shape[0])


def _pack(bits: np.ndarray) -> np.ndarray:
    """0/1 ``uint8`` bits as little-endian ``uint64`` words (zero-padded)."""
    packed = np.packbits(bits.ravel(), bitorder="little")
    padded = np.zeros(-(-packed.size // 8) * 8, np.uint8)
    padded[:packed.size] = packed
    return padded.view("<u8").astype(np.uint64)


def _unpack(words: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(words.astype("<u8").view(np.uint8), count=count,
                         bitorder="little").astype(np.uint8)


def _and_bits(party: int, x: np.ndarray, y: np.ndarray, triples: BitMaterial, first: int
              ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """XOR shares of ``x & y`` for XOR-shared 0/1 bits, on triples from word ``first`` on."""
    wx, wy = _pack(x), _pack(y)
    stop = first + wx.size
    a, b, c = (triples.and_a[first:stop], triples.and_b[first:stop],
               triples.and_product[first:stop])
    mine = np.stack([wx ^ a, wy ^ b])
    opened = mine ^ (yield mine)
    d, e = opened[0], opened[1]
    out = c ^ (d & b) ^ (e & a)
    if party == 0:
        out = out ^ (d & e)
    return _unpack(out, x.size).reshape(x.shape)


def _open_bits(bits: np.ndarray) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    mine = np.packbits(bits.ravel())
    return np.unpackbits(mine ^ (yield mine), count=bits.size).reshape(bits.shape)


@dataclass(frozen=True)
class FieldOperands:
    """One pair of share matrices after ``E``/``F`` were opened (``open_operands``): what
    every block's per-field products and the presence bits need.

    ``pop_left``/``pop_right``: this server's additive shares of each field's popcount per
    record (fields x records). ``left_columns``/``right_terms``: per Beaver product (each
    field, then each crossed pair, ``field_dealer.product_columns``) its left bit range and
    right operand.
    """

    party: int
    columns: tuple[tuple[int, int], ...]
    open_left: np.ndarray
    mask_left: np.ndarray
    right_terms: tuple[RightOperand, ...]
    pop_left: np.ndarray
    pop_right: np.ndarray
    left_columns: tuple[tuple[int, int], ...]

    def common(self, block: BlockMaterial, lo: int, hi: int) -> np.ndarray:
        """Shares of each product's common bits for left rows ``lo:hi`` against every right
        row, on ``block``'s triples: products x rows x right rows."""
        return block.product + self.opened_terms(lo, hi)

    def opened_terms(self, lo: int, hi: int) -> np.ndarray:
        """The part of ``common`` that needs no block material (products x rows x right
        rows), for any span of left rows: computed for many blocks at once, its products are
        large enough for BLAS to run at speed (a 1,024-pair block's are not)."""
        return np.stack([
            term.times(np.ascontiguousarray(np.hstack(
                [self.open_left[lo:hi, start:stop], self.mask_left[lo:hi, start:stop]])))
            for term, (start, stop) in zip(self.right_terms, self.left_columns)])

    def presence(self, later: LaterMaterial
                 ) -> Generator[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """XOR shares of ``[|x_f| >= 1]`` per field and record: (left, right), fields x
        records (one comparison per record and field)."""
        one = np.uint32(1 if self.party == 0 else 0)
        values = np.concatenate([(self.pop_left - one).ravel(), (self.pop_right - one).ravel()])
        present = (yield from _non_negative(self.party, values[None],
                                            later.comparisons(values.size, 1, 32)))[0]
        return (present[:self.pop_left.size].reshape(self.pop_left.shape),
                present[self.pop_left.size:].reshape(self.pop_right.shape))


def open_operands(party: int, left: np.ndarray, right: np.ndarray, material: FieldMaterial
                  ) -> Generator[np.ndarray, np.ndarray, FieldOperands]:
    """Open ``E = x - a`` and ``F = y - b`` once for the pair (one message), and prepare
    each Beaver product's right operand (each field segment, then each crossed pair)."""
    columns = material.columns
    products = product_columns(columns, material.crossed)
    mask_left, mask_right = material.masks()
    mine = np.concatenate([(left - mask_left).ravel(), (right - mask_right).ravel()])
    opened = mine + (yield mine)
    open_left = opened[:left.size].reshape(left.shape)
    open_right = opened[left.size:].reshape(right.shape)
    right_terms = tuple(RightOperand(np.ascontiguousarray(np.hstack([
        (mask_right + open_right)[:, lo:hi] if party == 0 else mask_right[:, lo:hi],
        open_right[:, lo:hi]]))) for _, (lo, hi) in products)
    pop_left = np.stack([left[:, lo:hi].sum(axis=1, dtype=np.uint32) for lo, hi in columns])
    pop_right = np.stack([right[:, lo:hi].sum(axis=1, dtype=np.uint32) for lo, hi in columns])
    return FieldOperands(party, tuple(columns), open_left, mask_left, right_terms, pop_left,
                         pop_right, tuple(c for c, _ in products))


#: Given and family names are compared crosswise for a pair (a name filed under the other
#: column) when ``4 (c_gf + c_fg - c_gg - c_ff) > SWAP_MARGIN (|x_g| + |x_f| + |y_g| +
#: |y_f|)``: the crosswise common bits beat the straight ones by a fifth of the names' bits
#: on average. Linear in the shares, so one comparison decides it (the single-server rule,
#: ``field_segments.SWAP_MARGIN``, compares sums of Dice, which are not).
SWAP_MARGIN = Fraction(1, 5)

#: The name fields a swap exchanges, as ``field_segments.SHARED_KEY_FIELDS``.
SWAP_FIELDS = ("given_name", "family_name")


def name_swap_products(fields: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """The crossed products (left field, right field) that swapped names need: given against
    family and family against given, where both are ``fields``; else none."""
    if not all(name in fields for name in SWAP_FIELDS):
        return ()
    given, family = (list(fields).index(name) for name in SWAP_FIELDS)
    return ((given, family), (family, given))


def level_plane_bits(widest: int) -> int:
    """The ring of the level and swap comparisons on bit planes (``planes``) for segments of
    up to ``widest`` bits: 16 when every compared value stays below 2^15 in magnitude, else
    32.

    A level's value ``2 q c - p (|x| + |y|)`` lies in ``[-2 p w, 2 (q - p) w]`` (``2 c <=
    |x| + |y| <= 2 w``); the swap's ``4 q g - p S - 1`` with ``|g| <= 2 w``, ``S <= 4 w``
    in ``[-(8 q + 4 p) w - 1, 8 q w]``. For the person schema's 256-bit segments: 9,728 and
    11,265, so mod 2^16.
    """
    thresholds = [rational_threshold(t, widest) for t in FIELD_THRESHOLDS]
    level = max(2 * max(t.numerator, t.denominator - t.numerator) for t in thresholds) * widest
    swap = (8 * SWAP_MARGIN.denominator + 4 * SWAP_MARGIN.numerator) * widest + 1
    return 16 if max(level, swap) < 1 << 15 else 32


def comparisons_kind(plane_bits: int) -> str:
    """The ``LaterMaterial.expect`` kind: "comparisons" in the word layout, "comparisons16"
    and "comparisons32" on bit planes (``kind_plane_bits`` reads it back)."""
    return f"comparisons{plane_bits}" if plane_bits else "comparisons"


def kind_plane_bits(kind: str) -> int:
    """The ``plane_bits`` of a ``comparisons_kind`` (0: the word layout)."""
    return int(kind.removeprefix("comparisons") or 0)


def level_words(fields: int, pairs: int, crossed: int) -> int:
    """AND-triple words ``_pair_levels`` uses for ``pairs`` (before the caller's)."""
    words = -(-(fields + crossed) * pairs // 64)
    if crossed:
        words += -(-(1 + len(FIELD_THRESHOLDS)) * crossed * pairs // 64)
    return words


def level_material(fields: int, pairs: int, crossed: int, plane_bits: int
                   ) -> list[tuple[str, int, int]]:
    """The comparisons ``_pair_levels`` asks for, in order (its AND triples come with the
    caller's ``bits``), on the planes of ``level_plane_bits``."""
    kind = comparisons_kind(plane_bits)
    out = [(kind, (fields + crossed) * pairs, len(FIELD_THRESHOLDS))]
    return out + ([(kind, pairs, 1)] if crossed else [])


def per_pair(left_side: np.ndarray, right_side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-record values (fields x left rows, fields x right rows) as per-pair values (fields x
    left rows * right rows, row-major: every left row against every right row)."""
    shape = (left_side.shape[0], left_side.shape[1], right_side.shape[1])
    return (np.ascontiguousarray(np.broadcast_to(left_side[:, :, None], shape)
                                 ).reshape(shape[0], -1),
            np.ascontiguousarray(np.broadcast_to(right_side[:, None, :], shape)
                                 ).reshape(shape[0], -1))


def _pair_levels(party: int, common: np.ndarray, pop_left: np.ndarray, pop_right: np.ndarray,
                 present_left: np.ndarray, present_right: np.ndarray,
                 crossed: tuple[tuple[int, int], ...], later: LaterMaterial, level_thresholds,
                 plane_bits: int, extra_words: int, dabits: int
                 ) -> Generator[np.ndarray, np.ndarray, tuple]:
    """XOR shares of each pair's presence (F x P) and level bits (K x F x P), the names
    compared crosswise where ``SWAP_MARGIN`` says so (``crossed``: ``name_swap_products``).

    ``common``: (F + X) x P shares of every product's common bits; ``pop_left``,
    ``pop_right``: F x P additive shares of each side's popcount per pair; ``present_left``,
    ``present_right``: F x P XOR shares of each side's presence per pair. Asks
    ``level_material``'s comparisons (on planes mod 2^``plane_bits``), then one ``bits`` of
    ``level_words + extra_words`` words and ``dabits`` daBits. Returns (present, bits,
    triples, the first word left for the caller). The swap bit itself is never opened.
    """
    fields, pairs, k = pop_left.shape[0], pop_left.shape[1], len(FIELD_THRESHOLDS)
    lefts, rights = [l for l, _ in crossed], [r for _, r in crossed]
    sums = np.concatenate([pop_left + pop_right, pop_left[lefts] + pop_right[rights]])
    twice_qs = np.array([2 * t.denominator for t in level_thresholds], np.uint32)[:, None, None]
    ps = np.array([t.numerator for t in level_thresholds], np.uint32)[:, None, None]
    values = twice_qs * common[None] - ps * sums[None]                   # K x (F + X) x P
    bits = (yield from _non_negative(party, values.reshape(k, -1),
                                     later.comparisons(values[0].size, k, plane_bits))
            ).reshape(k, fields + len(crossed), pairs)
    if crossed:
        # 4 q (crosswise - straight common bits) - p (the names' popcounts) - 1 >= 0
        q, p = SWAP_MARGIN.denominator, SWAP_MARGIN.numerator
        gain = common[fields:].sum(axis=0, dtype=np.uint32) \
            - common[lefts].sum(axis=0, dtype=np.uint32)
        value = np.uint32(4 * q) * gain - np.uint32(p) * sums[lefts].sum(axis=0, dtype=np.uint32)
        value = value - np.uint32(1 if party == 0 else 0)
        swap = (yield from _non_negative(party, value[None],
                                         later.comparisons(pairs, 1, plane_bits)))[0]
    triples = later.bits(level_words(fields, pairs, len(crossed)) + extra_words, dabits)
    present = yield from _and_bits(party, np.concatenate([present_left, present_left[lefts]]),
                                   np.concatenate([present_right, present_right[rights]]),
                                   triples, 0)
    first = -(-present.size // 64)
    if crossed:
        straight = np.concatenate([present[None, lefts], bits[:, lefts]])  # (1 + K) x X x P
        across = np.concatenate([present[None, fields:], bits[:, fields:]])
        chosen = straight ^ (yield from _and_bits(
            party, np.broadcast_to(swap, straight.shape).copy(), straight ^ across,
            triples, first))
        first += -(-chosen.size // 64)
        present, bits = present[:fields].copy(), bits[:, :fields].copy()
        present[lefts], bits[:, lefts] = chosen[0], chosen[1:]
    return present, bits, triples, first


def plain_levels(clks: np.ndarray, layout, pairs, crossed: tuple[tuple[int, int], ...] = ()
                 ) -> np.ndarray:
    """The levels (pairs x fields, -1 = missing) that the protocols compute on shares, from
    plaintext CLKs (``layout``: a ``FieldLayout``; ``pairs``: ``CandidatePairs``): each
    field's Dice level, with the names compared crosswise where ``SWAP_MARGIN``'s rule says
    so (for tests and the benches' checks)."""
    from ..encoding.field_segments import field_similarities, swapped_name_similarities
    from ..matching.fellegi_sunter import levels_of

    similarities = field_similarities(clks, layout, pairs)
    if crossed:
        (given, family), _ = crossed
        names = (layout.fields[given], layout.fields[family])

        def segment(name, rows):
            return layout.segment(clks, name)[rows]

        def ones(words):
            return np.bitwise_count(words).sum(axis=1, dtype=np.int64)

        def common(left_name, right_name):
            return ones(segment(left_name, pairs.left) & segment(right_name, pairs.right))

        gain = common(*names) + common(*names[::-1]) - common(names[0], names[0]) \
            - common(names[1], names[1])
        total = sum(ones(segment(name, rows)) for name in names
                    for rows in (pairs.left, pairs.right))
        swap = 4 * SWAP_MARGIN.denominator * gain > SWAP_MARGIN.numerator * total
        across = swapped_name_similarities(clks, layout, pairs, *names)
        similarities[swap, given] = across[swap, 0]
        similarities[swap, family] = across[swap, 1]
    return levels_of(similarities)


def _check_pairs(name: str, left: np.ndarray, right: np.ndarray, rows: int, cols: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    left, right = np.asarray(left), np.asarray(right)
    if left.shape != right.shape or left.ndim != 1 or left.dtype.kind not in "iu" \
            or right.dtype.kind not in "iu":
        raise InvalidRequestError(f"{name}: two integer arrays of one length")
    if left.size and (left.min() < 0 or left.max() >= rows or right.min() < 0
                      or right.max() >= cols):
        raise InvalidRequestError(f"{name} refer to records outside the plan")
    return left.astype(np.int64), right.astype(np.int64)


def fieldwise_party(party: int, left: np.ndarray, right: np.ndarray,
                    candidate_threshold: RationalThreshold, material: FieldMaterial,
                    later: LaterMaterial, random_left: np.ndarray, random_right: np.ndarray
                    ) -> FieldProtocol:
    """One server's side of the field-wise protocol (see the module docstring).

    Args:
        party: 0 or 1, matching ``material``.
        left, right: this server's shares of the two agencies' CLK bits (``uint32``,
            records x layout bits, from ``split_clks``).
        candidate_threshold: the record-level Dice at or above which a pair is a candidate.
        material: the scan material (``FieldMaterial``: the plan and the fields' columns).
        later: the material made for counts once the candidates are known.
        random_left, random_right: a public random sample of cross pairs (for u).
    Returns (as the generator's value):
        ``FieldLevels``; candidates ordered by left row, then right row.
    Raises:
        InvalidRequestError: shares, material or sample do not fit the plan.
    """
    plan, columns = material.plan, material.columns
    if party != material.party:
        raise InvalidRequestError(f"party {party} was given server {material.party}'s material")
    if material.crossed:
        raise InvalidRequestError("the candidates' protocol compares no names crosswise: "
                                  "its material has no crossed products")
    _check_shares("left", left, plan.left_rows, plan.clk_bits)
    _check_shares("right", right, plan.right_rows, plan.clk_bits)
    random_left, random_right = _check_pairs("random pairs", random_left, random_right,
                                             plan.left_rows, plan.right_rows)
    fields = len(columns)
    widest = max(stop - start for start, stop in columns)
    level_thresholds = [rational_threshold(t, widest) for t in FIELD_THRESHOLDS]
    # 1. E and F once, then one product per field segment and block.
    operands = yield from open_operands(party, left, right, material)
    pop_left, pop_right = operands.pop_left, operands.pop_right
    twice_q = np.uint32(2 * candidate_threshold.denominator)
    p = np.uint32(candidate_threshold.numerator)
    random_order = np.lexsort((random_right, random_left))
    kept_left, kept_right, kept_common = [], [], []
    random_common = np.zeros((fields, random_left.size), np.uint32)
    for index, (lo, hi) in enumerate(plan.blocks()):
        block = material.block(index)
        common = operands.common(block, lo, hi)
        total = common.sum(axis=0, dtype=np.uint32)
        sums = pop_left.sum(axis=0, dtype=np.uint32)[lo:hi, None] \
            + pop_right.sum(axis=0, dtype=np.uint32)[None, :]
        at_least = yield from _non_negative(party, twice_q * total - p * sums, block)
        hits = yield from _open_bits(at_least)
        rows, cols = np.nonzero(hits)
        kept_left.append(rows + lo)
        kept_right.append(cols)
        kept_common.append(common[:, rows, cols])
        inside = random_order[(random_left[random_order] >= lo)
                              & (random_left[random_order] < hi)]
        random_common[:, inside] = common[:, random_left[inside] - lo, random_right[inside]]
    cand_left = np.concatenate(kept_left).astype(np.int64)
    cand_right = np.concatenate(kept_right).astype(np.int64)
    pair_left = np.concatenate([cand_left, random_left])
    pair_right = np.concatenate([cand_right, random_right])
    pair_common = np.concatenate(kept_common + [random_common], axis=1)  # F x pairs
    candidates, pairs = cand_left.size, pair_left.size
    # 2. Presence per record and field, then per pair.
    present_left, present_right = yield from operands.presence(later)
    # 3. Four comparisons per pair and field.
    sums = pop_left[:, pair_left] + pop_right[:, pair_right]  # F x pairs
    twice_qs = np.array([2 * t.denominator for t in level_thresholds], np.uint32)[:, None, None]
    ps = np.array([t.numerator for t in level_thresholds], np.uint32)[:, None, None]
    values = twice_qs * pair_common[None] - ps * sums[None]  # K x F x pairs
    k = len(level_thresholds)
    comparisons = later.comparisons(fields * pairs, k)
    bits = (yield from _non_negative(party, values.reshape(k, -1), comparisons)
            ).reshape(k, fields, pairs)
    randoms = pairs - candidates
    presence_words = -(-fields * pairs // 64)
    masked_words = -(-k * fields * randoms // 64)
    triples = later.bits(presence_words + masked_words, (k + 1) * fields * randoms)
    present = yield from _and_bits(party, present_left[:, pair_left],
                                   present_right[:, pair_right], triples, 0)
    # 4. Candidates: presence, then the level bits of present fields only.
    open_present = yield from _open_bits(present[:, :candidates])
    where = np.nonzero(open_present)
    open_bits = yield from _open_bits(bits[:, where[0], where[1]])
    levels = np.full((candidates, fields), -1, np.int64)
    levels[where[1], where[0]] = k - open_bits.sum(axis=0, dtype=np.int64)
    # 5. The sample: counts of present, and of present at or above each threshold.
    masked = yield from _and_bits(party, bits[:, :, candidates:],
                                  np.broadcast_to(present[None, :, candidates:],
                                                  (k, fields, randoms)).copy(),
                                  triples, presence_words)
    counted = np.concatenate([present[:, candidates:][None], masked])  # (K+1) x F x randoms
    e = yield from _open_bits(counted ^ triples.dabit_bits.reshape(counted.shape))
    e = e.astype(np.uint32)
    additive = (np.uint32(1) - np.uint32(2) * e) * triples.dabit.reshape(counted.shape)
    if party == 0:
        additive = additive + e
    sums_mine = additive.sum(axis=2, dtype=np.uint32)
    counts = (sums_mine + (yield sums_mine)).astype(np.int64)
    return FieldLevels(cand_left, cand_right, levels, int(randoms), counts[0], counts[1:])


class LocalDealer:
    """The later-phase dealer for both servers in one process (tests and benchmarks).

    ``for_party(p)`` gives server p's ``LaterMaterial``; each request makes a fresh dealer
    (fresh seeds) the first time either server asks, and hands the other server its part.
    ``bytes_to_server_1`` counts the corrections sent.
    """

    def __init__(self):
        self._made: list[tuple[str, tuple[int, ...], tuple]] = []
        self._asked = [0, 0]
        self.bytes_to_server_1 = 0

    def _next(self, party: int, kind: str, counts: tuple[int, ...]) -> tuple:
        position = self._asked[party]
        self._asked[party] += 1
        if position == len(self._made):
            if kind == "comparisons":
                dealer = HitDealer(*counts[:2], plane_bits=counts[2])
                correction = dealer.correction()
            else:
                dealer = BitDealer(*counts)
                correction = dealer.correction()
            self.bytes_to_server_1 += correction.nbytes
            self._made.append((kind, counts, (dealer.seeds, correction)))
        made_kind, made_counts, made = self._made[position]
        if (made_kind, made_counts) != (kind, counts):
            raise InvalidRequestError(f"the servers asked for different material: {kind} "
                                      f"{counts} against {made_kind} {made_counts}")
        return made

    def for_party(self, party: int) -> LaterMaterial:
        def comparisons(count: int, thresholds: int, plane_bits: int = 0):
            seeds, correction = self._next(party, "comparisons", (count, thresholds, plane_bits))
            return hit_material(party, count, thresholds, seeds[party],
                                correction if party == 1 else None, plane_bits)

        def bits(words: int, dabits: int) -> BitMaterial:
            seeds, correction = self._next(party, "bits", (words, dabits))
            return bit_material(party, words, dabits, seeds[party],
                                correction if party == 1 else None)

        return LaterMaterial(comparisons, bits)


# -- links decided on shares: the levels of non-linked pairs are never opened ----------------

#: Fixed-point scale of the match weights compared on shares (weights in bits times this).
WEIGHT_SCALE = 1 << 10

#: Pairs whose opened Beaver terms ``fieldwise_links_party`` computes at once (several blocks).
OPENED_SPAN_PAIRS = 1 << 16

#: Pairs per block for ``fieldwise_links_party``: its per-block arrays are K x F x pairs, and
#: in one process (bench.attacks.fieldwise_block_cost, 6 fields, 250 x 250) 1,000-pair blocks
#: cost 6-7 µs CPU per pair per server against 37-40 µs for 62,500-pair blocks. Between two
#: servers every block is several round trips as well: through the service (held-out seed
#: 101, 1.37 M pairs, bench.two_server_quality) 1,024-pair blocks took 55.9 s, 4,096 40.5 s,
#: 16,384 36.5 s.
LINK_PAIRS_PER_BLOCK = 1 << 14


def links_material(plan: Plan, columns: Sequence[tuple[int, int]], crossed: int = 0
                   ) -> list[tuple[str, int, int]]:
    """The later material ``fieldwise_links_party`` asks for on ``plan`` and the fields'
    ``columns``, in order (its counts follow from the plan alone): the records' presence,
    then per block its level comparisons (and, with ``crossed`` products, the swap's), its
    AND triples and daBits, and its one comparison with the cut."""
    k, fields = len(FIELD_THRESHOLDS), len(columns)
    plane_bits = level_plane_bits(max(stop - start for start, stop in columns))
    out = [("comparisons32", fields * (plan.left_rows + plan.right_rows), 1)]
    for lo, hi in plan.blocks():
        pairs = (hi - lo) * plan.right_rows
        words = level_words(fields, pairs, crossed) + -(-k * fields * pairs // 64)
        out += [*level_material(fields, pairs, crossed, plane_bits),
                ("bits", words, (k + 1) * fields * pairs), ("comparisons32", pairs, 1)]
    return out


def links_plan(left_rows: int, right_rows: int, clk_bits: int) -> Plan:
    """A ``Plan`` with blocks of about ``LINK_PAIRS_PER_BLOCK`` pairs (the same links)."""
    return Plan(left_rows, right_rows, clk_bits,
                block_rows=max(1, min(left_rows, LINK_PAIRS_PER_BLOCK // right_rows)))


@dataclass(frozen=True)
class FieldWeights:
    """A public Fellegi-Sunter weight table as integers, and the cut-off on their sum.

    ``table[f, l]``: field f's weight at level l (0 best .. 4 below), in bits times
    ``WEIGHT_SCALE``, rounded; a missing field weighs 0. A pair is a link when the sum of
    its fields' weights is at least ``cut``.
    """

    table: np.ndarray
    cut: int

    def link(self, levels: np.ndarray) -> np.ndarray:
        """The plaintext rule on levels (-1 = missing): what the protocol decides on shares."""
        present = levels >= 0
        columns = np.broadcast_to(np.arange(levels.shape[1]), levels.shape)
        weights = np.where(present, self.table[columns, np.where(present, levels, 0)], 0)
        return weights.sum(axis=1) >= self.cut


def field_weights(weights: np.ndarray, cut_bits: float) -> FieldWeights:
    """``FieldWeights`` from float weights in bits (fields x 5) and a cut-off in bits.

    Raises:
        InvalidRequestError: not fields x 5, not finite, or too large for 32-bit shares.
    """
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(FIELD_THRESHOLDS) + 1 \
            or not np.isfinite(weights).all() or not np.isfinite(cut_bits):
        raise InvalidRequestError("field weights must be a finite fields x 5 table")
    table = np.round(weights * WEIGHT_SCALE).astype(np.int64)
    cut = int(np.ceil(cut_bits * WEIGHT_SCALE))
    if np.abs(table).sum() + abs(cut) >= 1 << 30:
        raise InvalidRequestError("field weights too large for 32-bit shares")
    return FieldWeights(table, cut)


@dataclass(frozen=True)
class FieldLinks:
    """Pairs whose weight sum reached the cut (left row, then right row), and their levels."""

    left: np.ndarray
    right: np.ndarray
    levels: np.ndarray

    def __len__(self) -> int:
        return int(self.left.shape[0])


def _to_additive(party: int, bits: np.ndarray, triples: BitMaterial, first: int
                 ) -> Generator[np.ndarray, np.ndarray, np.ndarray]:
    """Additive shares (``uint32``) of XOR-shared bits, with daBits from index ``first``."""
    stop = first + bits.size
    d_bits = triples.dabit_bits[first:stop].reshape(bits.shape)
    e = (yield from _open_bits(bits ^ d_bits)).astype(np.uint32)
    out = (np.uint32(1) - np.uint32(2) * e) * triples.dabit[first:stop].reshape(bits.shape)
    return out + e if party == 0 else out


def rule_margin(party: int, weights: FieldWeights, present: np.ndarray, masked: np.ndarray
                ) -> np.ndarray:
    """This server's additive share of each pair's weight sum minus the cut: ``sum_f
    present W[f,4] + sum_k [present, Dice >= t_k] (W[f,k] - W[f,k+1]) - cut``, from additive
    shares of presence (F x pairs) and of the masked level bits (K x F x pairs)."""
    k = masked.shape[0]
    table = weights.table.astype(np.int64)
    base = table[:, k].astype(np.uint32)                               # W[f, 4]
    steps = (table[:, :k] - table[:, 1:]).T.astype(np.uint32)          # K x F: W[f,k]-W[f,k+1]
    margin = (base[:, None] * present).sum(axis=0, dtype=np.uint32) \
        + (steps[:, :, None] * masked).sum(axis=(0, 1), dtype=np.uint32)
    return margin - np.uint32(weights.cut & 0xFFFFFFFF) if party == 0 else margin


def fieldwise_links_party(party: int, left: np.ndarray, right: np.ndarray,
                          weights: FieldWeights, material: FieldMaterial, later: LaterMaterial
                          ) -> Generator[np.ndarray, np.ndarray, FieldLinks]:
    """Links by a public Fellegi-Sunter rule, decided for every cross pair on shares.

    Per block of pairs: every field's four level bits and its presence (as in
    ``fieldwise_party``), each ANDed with presence and turned into additive shares
    (daBits); the match weight ``sum_f present W[f,4] + sum_k [present, Dice >= t_k]
    (W[f,k] - W[f,k+1])`` is linear in those; one comparison with the cut; only that bit is
    opened, and then the levels of the linked pairs alone. ``material``'s record-level
    comparison is not used (its AND triples are dealt but unused: a ``FieldDealer`` plan).

    Raises:
        InvalidRequestError: shares or material do not fit, or a table of another width.
    """
    plan, columns = material.plan, material.columns
    if party != material.party:
        raise InvalidRequestError(f"party {party} was given server {material.party}'s material")
    _check_shares("left", left, plan.left_rows, plan.clk_bits)
    _check_shares("right", right, plan.right_rows, plan.clk_bits)
    fields, k = len(columns), len(FIELD_THRESHOLDS)
    if weights.table.shape != (fields, k + 1):
        raise InvalidRequestError(f"weight table {weights.table.shape} does not fit "
                                  f"{fields} fields")
    widest = max(stop - start for start, stop in columns)
    level_thresholds = [rational_threshold(t, widest) for t in FIELD_THRESHOLDS]
    plane_bits = level_plane_bits(widest)
    if later.expect is not None:
        later.expect(links_material(plan, columns, len(material.crossed)))
    operands = yield from open_operands(party, left, right, material)
    pop_left, pop_right = operands.pop_left, operands.pop_right
    present_left, present_right = yield from operands.presence(later)
    lefts, rights, kept = [], [], []
    blocks = plan.blocks()
    span, terms = (0, 0), None
    for index, (lo, hi) in enumerate(blocks):
        block = material.block(index)
        rows = hi - lo
        if hi > span[1]:  # the opened terms of the next blocks, about OPENED_SPAN_PAIRS
            last = min(len(blocks), index + max(1, OPENED_SPAN_PAIRS // max(
                rows * plan.right_rows, 1)))
            span = (lo, blocks[last - 1][1])
            terms = operands.opened_terms(*span)
        common = block.product + terms[:, lo - span[0]:hi - span[0]]
        common = common.reshape(common.shape[0], -1)                   # (F + X) x pairs
        pairs = common.shape[1]
        masked_words = -(-k * fields * pairs // 64)
        present, bits, triples, first = yield from _pair_levels(
            party, common, *per_pair(pop_left[:, lo:hi], pop_right),
            *per_pair(present_left[:, lo:hi], present_right), material.crossed, later,
            level_thresholds, plane_bits, masked_words, (k + 1) * fields * pairs)
        masked = yield from _and_bits(party, bits, np.broadcast_to(
            present[None], bits.shape).copy(), triples, first)
        present_add = yield from _to_additive(party, present, triples, 0)
        masked_add = yield from _to_additive(party, masked, triples, present.size)
        weight = rule_margin(party, weights, present_add, masked_add)
        decided = (yield from _non_negative(party, weight[None],
                                            later.comparisons(pairs, 1, 32)))[0]
        linked = np.flatnonzero((yield from _open_bits(decided)))
        lefts.append(linked // plan.right_rows + lo)
        rights.append(linked % plan.right_rows)
        kept.append((present[:, linked], bits[:, :, linked]))
    # The levels of the linked pairs only: presence, then the bits of present fields.
    present = np.concatenate([p for p, _ in kept], axis=1)
    bits = np.concatenate([b for _, b in kept], axis=2)
    open_present = yield from _open_bits(present)
    where = np.nonzero(open_present)
    open_bits = yield from _open_bits(bits[:, where[0], where[1]])
    levels = np.full((present.shape[1], fields), -1, np.int64)
    levels[where[1], where[0]] = k - open_bits.sum(axis=0, dtype=np.int64)
    return FieldLinks(np.concatenate(lefts).astype(np.int64),
                      np.concatenate(rights).astype(np.int64), levels)
