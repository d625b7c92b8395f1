"""Group keys: a keyed hash of a group's membership that no crafted record id can forge.

A key names a group across runs (reviews and follow-ups refer to it), so it is derived from
the members alone. The members are encoded unambiguously, so two different memberships never
hash the same material, whatever characters the ids hold (``group_key_material``). Keys are cut to 64 bits for readability; the
rare accidental clash inside one run is resolved by ``unique_group_keys``, never by failing.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable, Sequence

__all__ = ["group_key", "group_key_material", "unique_group_keys"]

_VERSION = b"linkage-group-key-v2\x00"


def group_key_material(members: Sequence[tuple[int, str]]) -> bytes:
    """The bytes a group key hashes, for members in the order given (callers sort).

    When no record id holds a tab or a newline (every id accepted since they are refused),
    this is the original text — lines of ``agency<TAB>record id`` — which is then unambiguous,
    so the keys of groups stored before stay the same and their reviews and follow-ups keep
    applying. Otherwise: a version label, the member count, then per member its agency
    number, its record id's UTF-8 length and the id. The label keeps the two forms apart.
    """
    if not any("\t" in record_id or "\n" in record_id for _, record_id in members):
        return "\n".join(f"{agency_id}\t{record_id}" for agency_id, record_id in members
                         ).encode("utf-8", "surrogatepass")
    parts = [_VERSION, struct.pack(">Q", len(members))]
    for agency_id, record_id in members:
        encoded = record_id.encode("utf-8", "surrogatepass")
        parts.append(struct.pack(">qQ", int(agency_id), len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def group_key(secret: bytes, members: Sequence[tuple[int, str]], attempt: int = 0) -> str:
    """``g-`` and 16 hex digits of an HMAC over the membership (``attempt`` > 0 picks an
    alternative key after a clash)."""
    material = group_key_material(members)
    if attempt:
        material += b"\xffclash" + struct.pack(">Q", attempt)
    # hmac.digest: the one-shot form runs in C, several times faster than hmac.new per group
    return "g-" + hmac.digest(secret, material, "sha256")[:8].hex()


def unique_group_keys(secret: bytes, memberships: Iterable[Sequence[tuple[int, str]]]
                      ) -> list[str]:
    """One key per membership, distinct within the call: a clash takes the next attempt, so a
    run never fails on a duplicate key."""
    taken: set[str] = set()
    keys = []
    for members in memberships:
        attempt = 0
        key = group_key(secret, members)
        while key in taken:
            attempt += 1
            key = group_key(secret, members, attempt)
        taken.add(key)
        keys.append(key)
    return keys
