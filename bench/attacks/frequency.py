"""The frequency / pattern-mining attack on Bloom filters (after Christen et al., PAKDD 2017/2018).

No record similarities are used, only the bit columns of the encoded file.
Every q-gram (clkhash token) sets the same ``bitsPerToken`` positions in every
record that has it, so the records holding a frequent token share a frequent
*pattern* of co-set bit positions. The attack:

1. **Mine patterns.** From each not yet explained position, in order of
   column frequency, grow a pattern greedily: add the position that keeps the
   most of the pattern's records (those with every position set), while no
   more than ``_LOSS`` of them are lost at a step. A pattern of at least
   ``_MIN_PATTERN`` positions with a large enough support is one token's bits.
2. **Name the patterns.** The attacker's register gives every token's
   frequency and which tokens occur together (``anna`` has ``an``, ``nn`` and
   ``na``; positional date digits at one position exclude each other). The
   patterns' co-occurrence graph is aligned with the tokens' co-occurrence
   graph (``bench.attacks.align``, frequencies as extra node features), so
   each pattern gets a token.
3. **Re-identify.** Each encoded record is read as the set of named tokens
   whose pattern it carries and matched 1-to-1 to the register's people by
   IDF-weighted agreement of their token sets.

Success is correctly re-identified records / encoded records; the share of
patterns named with the right token is reported as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .population import World, tokens_of

__all__ = ["FrequencyResult", "frequency_attack", "mine_patterns"]

_MIN_PHI = 0.3       # mean correlation a position needs with a pattern to join it
_MIN_PATTERN = 4      # positions a mined pattern needs to count as a token
_MIN_SUPPORT = 0.02   # share of records a pattern or token must cover
_SET_SHARE = 0.75     # a record carries a pattern when this share of its positions is set


@dataclass(frozen=True)
class FrequencyResult:
    """What one run of the pattern-mining attack found."""

    patterns: int
    named_right: int
    correct: int
    records: int

    @property
    def success(self) -> float:
        """Correctly re-identified records / encoded records."""
        return self.correct / self.records


def _bits(clks: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(clks, dtype="<u8").view(np.uint8),
                         axis=1).astype(bool)


def mine_patterns(bits: np.ndarray, min_support: float = _MIN_SUPPORT) -> list[np.ndarray]:
    """Groups of positions that are set together far more often than chance (one token each).

    The positions of one token are correlated (all set in every record with
    the token); positions of unrelated tokens are not. From each unexplained
    position in order of column frequency, a group grows by the position with
    the highest mean correlation (phi) to the group while that mean stays at
    least ``_MIN_PHI``. Positions set in (nearly) every record carry no
    information and are skipped; so is the complement half of a balanced CLK
    (the attacker knows the schema balances, and a bit and its complement
    correlate at exactly -1).
    """
    n = bits.shape[0]
    support = bits.mean(axis=0)
    informative = (support >= min_support) & (support <= 1 - min_support)
    as_float = bits.astype(np.float32)
    centred = (as_float - support) / (np.sqrt(support * (1 - support)) + 1e-6)
    phi = centred.T @ centred / n
    # Balancing appends each bit's complement: the two columns correlate at -1.
    # Keep the sparser of each such pair (the original bit, as CLKs are < half set).
    twin = phi.argmin(axis=1)
    complement = (phi[np.arange(len(twin)), twin] <= -0.95) & (support > support[twin])
    informative &= ~complement
    phi[~informative] = -1
    phi[:, ~informative] = -1
    np.fill_diagonal(phi, -1)
    explained = ~informative
    patterns = []
    for start in np.argsort(-support):
        if explained[start]:
            continue
        pattern = [int(start)]
        total = phi[start].copy()
        while True:
            mean = total / len(pattern)
            mean[pattern] = -1
            mean[explained] = -1
            best = int(np.argmax(mean))
            if mean[best] < _MIN_PHI:
                break
            pattern.append(best)
            total += phi[best]
        explained[pattern] = True
        if len(pattern) >= _MIN_PATTERN:
            patterns.append(np.array(pattern))
    return patterns


def _jaccard(incidence: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the columns of a boolean (records, items) matrix."""
    as_float = incidence.astype(np.float32)
    both = as_float.T @ as_float
    size = as_float.sum(axis=0)
    out = both / np.maximum(size[:, None] + size[None, :] - both, 1.0)
    np.fill_diagonal(out, 0.0)
    return out


def name_patterns(carried: np.ndarray, has: np.ndarray, rounds: int = 15) -> np.ndarray:
    """Give each mined pattern a register token: by frequency, then by co-occurrence.

    Starts from the 1-to-1 matching of patterns to tokens on frequency alone,
    then repeatedly re-matches on frequency plus how each pattern co-occurs
    with the other patterns compared with how each token co-occurs with the
    tokens those patterns are currently named (Jaccard of record sets).
    """
    pattern_sim, token_sim = _jaccard(carried), _jaccard(has)
    log_p = np.log(carried.mean(axis=0) + 1e-3)[:, None]
    log_t = np.log(has.mean(axis=0) + 1e-3)[None, :]
    frequency_cost = np.square(log_p - log_t)
    rows, cols = linear_sum_assignment(frequency_cost)
    named = np.full(carried.shape[1], -1, dtype=np.int64)
    named[rows] = cols
    for _ in range(rounds):
        profile_t = token_sim[:, named]                     # tokens x patterns
        difference = (np.square(pattern_sim).sum(axis=1)[:, None]
                      + np.square(profile_t).sum(axis=1)[None, :]
                      - 2.0 * pattern_sim @ profile_t.T)
        cost = difference / carried.shape[1] * 50.0 + frequency_cost
        rows, cols = linear_sum_assignment(cost)
        updated = np.full_like(named, -1)
        updated[rows] = cols
        if np.array_equal(updated, named):
            break
        named = updated
    return named


def frequency_attack(world: World) -> FrequencyResult:
    """Mine the agency's CLKs, name the patterns from the register, re-identify records."""
    bits = _bits(world.agency_clks)
    n = bits.shape[0]
    patterns = mine_patterns(bits)
    carried = np.stack([bits[:, p].mean(axis=1) >= _SET_SHARE for p in patterns], axis=1) \
        if patterns else np.zeros((n, 0), dtype=bool)
    # The register's frequent tokens.
    register_tokens = tokens_of(world.plaintext, world.schema)
    vocabulary: dict[str, int] = {}
    for tokens in register_tokens:
        for token in set(tokens):
            vocabulary[token] = vocabulary.get(token, 0) + 1
    frequent = sorted((t for t, c in vocabulary.items() if c >= _MIN_SUPPORT * len(register_tokens)),
                      key=lambda t: -vocabulary[t])
    index = {token: i for i, token in enumerate(frequent)}
    has = np.zeros((len(register_tokens), len(frequent)), dtype=bool)
    for row, tokens in enumerate(register_tokens):
        for token in tokens:
            if token in index:
                has[row, index[token]] = True
    if carried.shape[1] < 3 or len(frequent) < 3:
        return FrequencyResult(len(patterns), 0, 0, n)
    # Name patterns: align the two co-occurrence graphs, frequencies as node features.
    named = name_patterns(carried, has)
    ok = named >= 0
    # Which pattern truly belongs to which token: the agency's own tokens, for scoring only.
    agency_tokens = tokens_of([world.plaintext[t] if t >= 0 else [] for t in world.truth],
                              world.schema) if (world.truth >= 0).all() else None
    named_right = 0
    if agency_tokens is not None:
        truly = np.zeros((n, len(frequent)), dtype=bool)
        for row, tokens in enumerate(agency_tokens):
            for token in tokens:
                if token in index:
                    truly[row, index[token]] = True
        for j in np.flatnonzero(ok):
            # the token whose records the pattern's records are most like
            overlap = (carried[:, j:j + 1] & truly).sum(axis=0) / np.maximum(
                (carried[:, j:j + 1] | truly).sum(axis=0), 1)
            named_right += int(np.argmax(overlap) == named[j])
    # Re-identify: IDF-weighted agreement of token sets, 1-to-1.
    columns = np.flatnonzero(ok)
    read = carried[:, columns].astype(np.float32)
    truth_side = has[:, named[columns]].astype(np.float32)
    weight = -np.log(np.clip(truth_side.mean(axis=0), 1e-3, 1.0)) + 1e-3
    score = (read * weight) @ truth_side.T - (read * weight) @ (1 - truth_side).T \
        - ((1 - read) * weight) @ truth_side.T
    rows, cols = linear_sum_assignment(-score)
    mapping = np.full(n, -1, dtype=np.int64)
    mapping[rows] = cols
    correct = int(((mapping == world.truth) & (world.truth >= 0)).sum())
    return FrequencyResult(len(patterns), named_right, correct, n)
