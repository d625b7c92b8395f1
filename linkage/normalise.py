"""Normalisation applied at every agency before encoding, so spellings agree.

Each normaliser turns a raw value into the canonical form that gets encoded;
an empty result means "missing". Errors name the kind of problem only, never
the value, because values are personal data and must not reach logs.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

import phonenumbers

from .errors import NormalisationError

__all__ = [
    "NORMALISER_KINDS",
    "infer_kind",
    "normalise_address",
    "normalise_date",
    "normalise_name",
    "normalise_phone",
    "normalise_text",
    "normalise_value",
]

NORMALISER_KINDS: tuple[str, ...] = ("address", "date", "name", "none", "phone", "text")

_UNDECOMPOSED = str.maketrans({"ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "ß": "ss", "đ": "d",
                               "Đ": "d", "ł": "l", "Ł": "l", "þ": "th", "Þ": "th", "œ": "oe",
                               "Œ": "oe", "ı": "i"})
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_NAME_JOINERS = re.compile(r"[\s'’`\-]+")
_STREET_WORDS = {
    "str": "straat", "strt": "straat", "straat": "straat",
    "stwg": "steenweg", "stw": "steenweg", "steenweg": "steenweg",
    "ln": "laan", "laan": "laan",
    "av": "avenue", "ave": "avenue", "avenue": "avenue", "lei": "lei",
    "bd": "boulevard", "bld": "boulevard", "blvd": "boulevard", "boulevard": "boulevard",
    "chee": "chaussee", "chaussee": "chaussee",
    "pl": "plein", "plein": "plein",
    "st": "street", "street": "street", "rd": "road", "road": "road",
    "bte": "bus", "boite": "bus", "box": "bus", "bus": "bus",
    "g": "gatan", "gatan": "gatan", "v": "vagen", "vag": "vagen", "vagen": "vagen",
}
_SUFFIXES = (("str", "straat"), ("stwg", "steenweg"), ("g", "gatan"), ("v", "vagen"))
_ISO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_YEARS = (1850, 2100)


def normalise_text(value: str) -> str:
    """NFKC, accents stripped, case folded, punctuation to spaces, spaces collapsed."""
    text = unicodedata.normalize("NFKC", value).translate(_UNDECOMPOSED)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.translate(_UNDECOMPOSED)
    return _NOT_WORD.sub(" ", text).strip()


def normalise_name(value: str) -> str:
    """normalise_text with particles and compound parts joined: "Van den Berg" -> "vandenberg".

    Names are compared by character n-grams, so joining the pieces is the one
    form every spelling ("Van-den-Berg", "VANDENBERG", "van den Bèrg") shares.
    """
    return normalise_text(_NAME_JOINERS.sub("", value)).replace(" ", "")


def normalise_address(value: str) -> str:
    """normalise_text plus one spelling for street types and unit markers.

    Abbreviations are expanded as whole words ("str" -> "straat", "av"/"ave" ->
    "avenue", "bd" -> "boulevard", "st" -> "street", "rd" -> "road", "g" ->
    "gatan"), a word ending in an abbreviated suffix is completed ("kerkstr" ->
    "kerkstraat", "storg" -> "storgatan") and box markers ("bte", "boite", "box")
    become "bus". House numbers stay.
    """
    words = []
    for word in normalise_text(value).split():
        if word in _STREET_WORDS:
            words.append(_STREET_WORDS[word])
            continue
        for short, full in _SUFFIXES:
            if len(word) > len(short) + 2 and word.endswith(short) and not word.endswith(full):
                if short in ("g", "v") and not word.endswith(("rg", "tg", "ag", "sv", "gv")):
                    continue
                word = word[: -len(short)] + full
                break
        words.append(word)
    return " ".join(words)


def normalise_date(value: str, date_format: str | None = None) -> str:
    """Parse a date into ISO ``YYYY-MM-DD``; without a format only ISO is accepted.

    Raises:
        NormalisationError: not a date in that format, or a year outside 1850-2100.
    """
    text = value.strip()
    if date_format:
        try:
            parsed = datetime.strptime(text, date_format)
        except ValueError:
            raise NormalisationError(f"not a date in format {date_format}") from None
    else:
        match = _ISO_DATE.match(text)
        if not match:
            raise NormalisationError("not an ISO date (YYYY-MM-DD); set date_format in the "
                                     "mapping")
        try:
            parsed = datetime.strptime(match.group(1), "%Y-%m-%d")
        except ValueError:
            raise NormalisationError("not a valid calendar date") from None
    if not _YEARS[0] <= parsed.year <= _YEARS[1]:
        raise NormalisationError(f"year outside {_YEARS[0]}-{_YEARS[1]}")
    return parsed.date().isoformat()


def normalise_phone(value: str, region: str | None = None) -> str:
    """Parse a phone number into E.164 (``+32470123456``).

    Raises:
        NormalisationError: not a valid number, or a national number without a region.
    """
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and not region:
        raise NormalisationError("a national phone number needs phone_region in the mapping")
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        raise NormalisationError(f"not a phone number{f' for region {region}' if region else ''}"
                                 ) from None
    if not phonenumbers.is_valid_number(number):
        raise NormalisationError(f"not a valid phone number"
                                 f"{f' for region {region}' if region else ''}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_value(kind: str, value: str | None, *, date_format: str | None = None,
                    phone_region: str | None = None) -> str:
    """Normalise one value with the normaliser ``kind``; missing values give ``""``.

    Raises:
        NormalisationError: the value cannot be parsed. ValueError: unknown kind.
    """
    if kind not in NORMALISER_KINDS:
        raise ValueError(f"unknown normaliser {kind!r}; choose one of {', '.join(NORMALISER_KINDS)}")
    if value is None or not value.strip():
        return ""
    if kind == "none":
        return value.strip()
    if kind == "date":
        return normalise_date(value, date_format)
    if kind == "phone":
        return normalise_phone(value, phone_region)
    return {"name": normalise_name, "address": normalise_address, "text": normalise_text}[kind](
        value)


def infer_kind(feature_identifier: str) -> str:
    """The normaliser for a feature the schema does not assign one, guessed from its name."""
    name = feature_identifier.lower()
    if any(word in name for word in ("phone", "tel", "mobile")):
        return "phone"
    if any(word in name for word in ("date", "dob", "birth")):
        return "date"
    if "name" in name:
        return "name"
    if any(word in name for word in ("address", "street", "addr")):
        return "address"
    return "text"
