"""Hardening applied to clkhash CLKs at the agency, against attacks that need no secret.

Plain Bloom-filter CLKs leak: frequency attacks and pattern mining read
q-grams off frequent bit patterns, and graph-matching attacks re-identify
records by aligning the similarity graph of the CLKs with one built from a
public register. The schema's ``hardening`` section switches on any of:

- **salting** (by a feature, e.g. the year of birth): every salt value gets its
  own clkhash key, ``HMAC(secret, feature || salt value)``, so records with
  different salt values never match and an attack works within one salt group
  at a time. A record whose salt value is missing gets the fixed "missing"
  salt: such records match each other only.
- **diffusion** (Armknecht, Heng and Schnell, PoPETs 2023): output bit ``j`` is
  the XOR of ``t`` CLK bits chosen by a secret-keyed mapping, so no output bit
  belongs to one q-gram any more.
- **BLIP** (randomised response): every bit is flipped with probability
  ``1 / (1 + e^epsilon)``, fresh OS randomness per encoding.
- **balancing** (Berger et al.; Schnell and Borgs): the complement is appended
  and the result permuted by a secret-keyed permutation, so every CLK has the
  same popcount. The length doubles.

They run in that order: salting picks the clkhash key, then diffusion, BLIP and
balancing act on the bits (BLIP before balancing keeps the popcount constant).
Every secret-keyed choice (the salt keys, the diffusion index sets, the
permutation) comes from the shared linkage secret through HKDF-SHA256 with its
own label, never from the schema alone, and is computed without numpy's random
generators, whose streams may change between numpy versions: every agency
must derive the same mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from linkage.errors import SchemaError

__all__ = [
    "BlipSpec",
    "DiffusionSpec",
    "HardeningSpec",
    "SaltingSpec",
    "apply_hardening",
    "balance",
    "balancing_permutation",
    "blip",
    "diffuse",
    "diffusion_index_sets",
    "flip_probability",
    "parse_hardening",
    "salt_groups",
    "salt_key",
    "salt_value",
]

_HKDF_SALT = b"linkage.v1 hardening"
_LABEL_SALT = b"linkage.v1 salting key"
_LABEL_PERMUTATION = b"linkage.v1 balancing permutation"
_LABEL_DIFFUSION = b"linkage.v1 diffusion index sets"
_KEYS = {"salting", "diffusion", "blip", "balancing"}
MAX_OUTPUT_BITS = 16384
_ROWS_PER_CHUNK = 50_000


@dataclass(frozen=True)
class SaltingSpec:
    """Salt by ``feature``'s normalised value, or by its first ``prefix_length`` characters."""

    feature: str
    prefix_length: int | None = None


@dataclass(frozen=True)
class DiffusionSpec:
    """Each of ``output_bits`` bits is the XOR of ``t`` input bits (``None``: as many as in)."""

    t: int
    output_bits: int | None = None


@dataclass(frozen=True)
class BlipSpec:
    """Randomised response with privacy parameter ``epsilon`` per bit."""

    epsilon: float

    @property
    def flip_probability(self) -> float:
        return flip_probability(self.epsilon)


@dataclass(frozen=True)
class HardeningSpec:
    """Which hardening options are on; the schema's ``hardening`` section, parsed."""

    salting: SaltingSpec | None = None
    diffusion: DiffusionSpec | None = None
    blip: BlipSpec | None = None
    balancing: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.salting or self.diffusion or self.blip or self.balancing)

    @property
    def transforms_bits(self) -> bool:
        """Whether anything acts on the CLK bits after clkhash (all but salting do)."""
        return bool(self.diffusion or self.blip or self.balancing)

    def output_bits(self, clkhash_bits: int) -> int:
        """The length of the hardened CLKs that clkhash makes ``clkhash_bits`` long."""
        bits = clkhash_bits
        if self.diffusion is not None:
            bits = self.diffusion.output_bits or bits
        return 2 * bits if self.balancing else bits


def flip_probability(epsilon: float) -> float:
    """BLIP's flip probability for ``epsilon``: 1 / (1 + e^epsilon)."""
    return 1.0 / (1.0 + math.exp(epsilon))


# -- parsing ------------------------------------------------------------------------------------


def parse_hardening(raw: Any, features: Sequence[tuple[str, bool]],
                    clkhash_bits: int) -> tuple[HardeningSpec, list[str]]:
    """Parse the schema's ``hardening`` object, listing every problem instead of stopping.

    Args:
        raw: the JSON value of ``hardening``.
        features: (identifier, ignored) of each schema feature; the salt must be a
            feature that agencies map (not ignored).
        clkhash_bits: clkhash's CLK length (``clkConfig.l``).
    Returns:
        The spec (meaningful only without problems) and the problems, each
        prefixed with its path (``hardening/blip/epsilon: ...``).
    """
    problems: list[str] = []
    if not isinstance(raw, dict):
        return HardeningSpec(), ["hardening: must be an object with any of "
                                 f"{', '.join(sorted(_KEYS))}"]
    for key in raw:
        if key not in _KEYS:
            problems.append(f"hardening/{key}: unknown option; choose from "
                            f"{', '.join(sorted(_KEYS))}")
    salting = _parse_salting(raw.get("salting"), features, problems)
    diffusion = _parse_diffusion(raw.get("diffusion"), clkhash_bits, problems)
    blip_spec = _parse_blip(raw.get("blip"), problems)
    balancing = raw.get("balancing", False)
    if not isinstance(balancing, bool):
        problems.append(f"hardening/balancing: must be true or false, got {balancing!r}")
        balancing = False
    return HardeningSpec(salting, diffusion, blip_spec, balancing), problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown_keys(raw: dict, allowed: set[str], where: str, problems: list[str]) -> None:
    for key in raw:
        if key not in allowed:
            problems.append(f"{where}/{key}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _parse_salting(raw, features, problems) -> SaltingSpec | None:
    where = "hardening/salting"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object such as "
                        '{"feature": "date_of_birth", "prefixLength": 4}')
        return None
    _unknown_keys(raw, {"feature", "prefixLength"}, where, problems)
    feature = raw.get("feature")
    ignored = dict(features)
    if not isinstance(feature, str) or feature not in ignored:
        problems.append(f"{where}/feature: must name a schema feature "
                        f"({', '.join(ignored)}), got {feature!r}")
    elif ignored[feature]:
        problems.append(f"{where}/feature: {feature!r} is ignored by the schema, so agencies "
                        "do not map it; salt by a feature they encode")
    prefix = raw.get("prefixLength")
    if prefix is not None and (not _is_int(prefix) or prefix < 1):
        problems.append(f"{where}/prefixLength: must be a positive integer (4 keeps the year "
                        f"of an ISO date), got {prefix!r}")
        prefix = None
    return SaltingSpec(feature, prefix) if isinstance(feature, str) else None


def _parse_diffusion(raw, clkhash_bits, problems) -> DiffusionSpec | None:
    where = "hardening/diffusion"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f'{where}: must be an object such as {{"t": 5}}')
        return None
    _unknown_keys(raw, {"t", "outputBits"}, where, problems)
    t = raw.get("t")
    valid = True
    if not _is_int(t) or not 1 <= t <= max(1, clkhash_bits // 2):
        problems.append(f"{where}/t: the number of CLK bits XORed into each output bit must be "
                        f"an integer from 1 to {clkhash_bits // 2} (half the CLK), got {t!r}")
        valid = False
    output = raw.get("outputBits")
    if output is not None and (not _is_int(output) or output <= 0 or output % 64
                               or output > MAX_OUTPUT_BITS):
        problems.append(f"{where}/outputBits: must be a positive multiple of 64 up to "
                        f"{MAX_OUTPUT_BITS}, got {output!r}")
        valid = False
    return DiffusionSpec(t, output) if valid else None


def _parse_blip(raw, problems) -> BlipSpec | None:
    where = "hardening/blip"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f'{where}: must be an object such as {{"epsilon": 6}}')
        return None
    _unknown_keys(raw, {"epsilon"}, where, problems)
    epsilon = raw.get("epsilon")
    if (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float))
            or not math.isfinite(epsilon) or not 0 < epsilon <= 50):
        problems.append(f"{where}/epsilon: must be a number in (0, 50] (flip probability "
                        f"1/(1+e^epsilon)), got {epsilon!r}")
        return None
    return BlipSpec(float(epsilon))


# -- secret-keyed material ----------------------------------------------------------------------


def _subkey(secret: bytes, label: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with a fixed salt, expand one block for ``label``."""
    prk = hmac.new(_HKDF_SALT, secret, hashlib.sha256).digest()
    return hmac.new(prk, label + b"\x01", hashlib.sha256).digest()


def _keyed_words(key: bytes, context: bytes, count: int) -> np.ndarray:
    """``count`` pseudorandom 64-bit words: HMAC-SHA256 in counter mode (NIST SP 800-108)."""
    blocks = []
    for counter in range(math.ceil(count / 4)):
        blocks.append(hmac.new(key, context + counter.to_bytes(8, "big"),
                               hashlib.sha256).digest())
    return np.frombuffer(b"".join(blocks), dtype=">u8")[:count].astype(np.uint64)


def _keyed_permutation(key: bytes, context: bytes, size: int) -> np.ndarray:
    """A permutation of range(size): positions sorted by their keyed 64-bit words."""
    return np.argsort(_keyed_words(key, context, size), kind="stable").astype(np.int64)


def salt_value(normalised: str, prefix_length: int | None) -> str | None:
    """The salt of one record: its normalised value (or prefix), ``None`` when missing."""
    if not normalised:
        return None
    return normalised[:prefix_length] if prefix_length else normalised


def salt_key(secret: bytes, feature: str, value: str | None) -> bytes:
    """The clkhash key of one salt group: HMAC under an HKDF subkey of the shared secret.

    A missing value gets a key of its own ("missing" salt), which no present value
    can produce: the input says which of the two it is before the value.
    """
    key = _subkey(secret, _LABEL_SALT)
    message = feature.encode("utf-8") + b"\x00"
    message += b"\x00" if value is None else b"\x01" + value.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


def salt_groups(salts: Sequence[str | None]) -> dict[str | None, np.ndarray]:
    """Record indices of each salt value (``None`` = missing), in first-seen order."""
    members: dict[str | None, list[int]] = {}
    for index, value in enumerate(salts):
        members.setdefault(value, []).append(index)
    return {value: np.asarray(rows, dtype=np.int64) for value, rows in members.items()}


def balancing_permutation(secret: bytes, bits: int) -> np.ndarray:
    """The secret-keyed permutation of the ``bits`` positions of a balanced CLK."""
    return _keyed_permutation(_subkey(secret, _LABEL_PERMUTATION),
                              bits.to_bytes(4, "big"), bits)


def diffusion_index_sets(secret: bytes, input_bits: int, spec: DiffusionSpec) -> np.ndarray:
    """The ``(output_bits, t)`` input positions XORed into each output bit.

    As in the authors' code, positions are dealt from a stream of secret-keyed
    permutations of the input positions, so every input bit feeds almost the
    same number of output bits and none is left out; the ``t`` positions of
    one output bit are distinct (a repeat would cancel in the XOR).

    Raises:
        SchemaError: ``t`` is not between 1 and ``input_bits``.
    """
    t = spec.t
    output_bits = spec.output_bits or input_bits
    if not 1 <= t <= input_bits:
        raise SchemaError(f"hardening/diffusion/t: {t} input bits per output bit cannot be "
                          f"chosen from {input_bits}-bit CLKs")
    key = _subkey(secret, _LABEL_DIFFUSION)
    rounds = math.ceil(output_bits * t / input_bits) + 1
    context = input_bits.to_bytes(4, "big") + output_bits.to_bytes(4, "big") + t.to_bytes(4, "big")
    stream = np.concatenate([
        _keyed_permutation(key, context + r.to_bytes(4, "big"), input_bits)
        for r in range(rounds)]).tolist()
    sets = np.empty((output_bits, t), dtype=np.int64)
    cursor = 0
    for row in range(output_bits):
        chosen: set[int] = set()
        for column in range(t):
            position = cursor
            while stream[position] in chosen:  # only at a permutation boundary
                position += 1
            stream[cursor], stream[position] = stream[position], stream[cursor]
            chosen.add(stream[cursor])
            sets[row, column] = stream[cursor]
            cursor += 1
    return sets


# -- bit transforms -----------------------------------------------------------------------------


def _unpack(clks: np.ndarray) -> np.ndarray:
    """(records, words) packed CLKs -> (records, bits) uint8, bit i as clkhash numbers it."""
    row_bytes = np.ascontiguousarray(clks, dtype="<u8").view(np.uint8)
    return np.unpackbits(row_bytes, axis=1)


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.packbits(bits, axis=1)).view("<u8")


def _by_position(clks: np.ndarray) -> np.ndarray:
    """(records, words) packed CLKs -> (bits, records/8): one packed row per bit position.

    Gathering whole rows is far faster than gathering columns of the record-major matrix.
    """
    return np.packbits(np.ascontiguousarray(_unpack(clks).T), axis=1)


def _by_record(positions: np.ndarray, records: int) -> np.ndarray:
    bits = np.unpackbits(positions, axis=1, count=records)
    return _pack(np.ascontiguousarray(bits.T))


def diffuse(clks: np.ndarray, index_sets: np.ndarray) -> np.ndarray:
    """Armknecht-Heng-Schnell diffusion: output bit j = XOR of the input bits ``index_sets[j]``."""
    positions = _by_position(clks)
    out = positions[index_sets[:, 0]]
    for column in range(1, index_sets.shape[1]):
        out ^= positions[index_sets[:, column]]
    return _by_record(out, clks.shape[0])


def blip(clks: np.ndarray, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Flip every bit independently with probability 1/(1+e^epsilon).

    Without ``rng`` the coins come from the OS's CSPRNG (``os.urandom``), so two
    encodings of one record differ and nobody can replay the flips; pass a seeded
    ``numpy.random.Generator`` only in tests.
    """
    shape = (clks.shape[0], clks.shape[1] * 64)
    cut = flip_probability(epsilon)
    if rng is None:
        draws = np.frombuffer(os.urandom(4 * shape[0] * shape[1]), dtype=np.uint32)
        flips = draws.reshape(shape) < np.uint32(min(cut * 2**32, 2**32 - 1))
    else:
        flips = rng.random(shape) < cut
    return clks ^ _pack(flips.astype(np.uint8))


def balance(clks: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Append each CLK's complement and permute: every result has popcount = input length."""
    positions = _by_position(clks)
    doubled = np.concatenate([positions, ~positions], axis=0)
    return _by_record(doubled[permutation], clks.shape[0])


def apply_hardening(clks: np.ndarray, spec: HardeningSpec, secret: bytes, *,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Diffusion, then BLIP, then balancing, as ``spec`` says, on packed clkhash CLKs.

    Salting is not applied here: it chooses the clkhash key before encoding
    (``salt_key``). ``rng`` only seeds BLIP (tests); otherwise it uses OS randomness.
    """
    input_bits = clks.shape[1] * 64
    index_sets = (diffusion_index_sets(secret, input_bits, spec.diffusion)
                  if spec.diffusion is not None else None)
    bits = index_sets.shape[0] if index_sets is not None else input_bits
    permutation = balancing_permutation(secret, 2 * bits) if spec.balancing else None
    parts = []
    for start in range(0, max(clks.shape[0], 1), _ROWS_PER_CHUNK):  # bounded unpacked memory
        out = clks[start:start + _ROWS_PER_CHUNK]
        if index_sets is not None:
            out = diffuse(out, index_sets)
        if spec.blip is not None:
            out = blip(out, spec.blip.epsilon, rng)
        if permutation is not None:
            out = balance(out, permutation)
        parts.append(out)
    return np.ascontiguousarray(np.concatenate(parts, axis=0))
