"""Normalisation applied at every agency before encoding, so spellings agree.

Bloom-filter CLKs only match when every agency feeds clkhash the same string
for the same person, so each normaliser turns a raw value into one canonical
form; an empty result means "missing". Errors name the kind of problem only,
never the value, because values are personal data and must not reach logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

import phonenumbers

from linkage.errors import NormalisationError

__all__ = [
    "NORMALISER_KINDS",
    "date_format_problem",
    "infer_kind",
    "normalise_address",
    "normalise_date",
    "normalise_name",
    "normalise_phone",
    "normalise_text",
    "normalise_value",
]

NORMALISER_KINDS: tuple[str, ...] = ("address", "date", "name", "none", "phone", "text")

# Latin letters NFKD leaves whole (applied after casefolding, so lowercase keys suffice).
_UNDECOMPOSED = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ð": "d",
                               "ł": "l", "þ": "th", "ı": "i", "ħ": "h", "ŧ": "t"})
_NOT_WORD = re.compile(r"[^0-9a-z]+")

# Whole words, after normalise_text. One canonical form per street type or unit marker.
_ADDRESS_WORDS = {
    "str": "straat", "strt": "straat", "strasse": "straat",
    "stw": "steenweg", "stwg": "steenweg", "ln": "laan",
    "av": "avenue", "ave": "avenue", "bd": "boulevard", "bld": "boulevard", "blvd": "boulevard",
    "chee": "chaussee", "rd": "road", "bte": "bus", "boite": "bus", "box": "bus",
}
# Abbreviated endings of compound street names: "Kerkstr" -> "kerkstraat".
_ADDRESS_SUFFIXES = (("strasse", "straat"), ("stwg", "steenweg"), ("str", "straat"))
# Swedish "-g." / "-v." only with the full stop and a house number after it ("Storg. 5"),
# so "Göteborg" stays a city; only "Hamburg. 7" style oddities are misread.
_SWEDISH_ABBREVIATION = re.compile(r"(?<=[^\W\d_]{2})([gv])\.(?=\s*\d)", re.IGNORECASE)

_ISO_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
                       r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
                       r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?")
_ADJACENT_NUMBERS = re.compile(r"%[dmyYHIMSjf]%[dmyYHIMSjf]")
_YEARS = (1850, 2100)

# First match wins; "tel" must start a word so that "hotel" stays text.
_KIND_HINTS = (
    ("phone", ("phone", "mobile", "gsm")),
    ("text", ("email", "place", "city", "country", "town")),
    ("date", ("date", "dob")),
    ("address", ("address", "addr", "street")),
    ("name", ("name",)),
    ("date", ("birth",)),
)


def normalise_text(value: str) -> str:
    """Lowercase ASCII words separated by single spaces, the base of every text normaliser.

    NFKC, casefold, accents stripped (NFKD, combining marks dropped; ø, æ, ß, ł,
    đ, þ... mapped by hand), anything but ASCII letters and digits turned into a
    space, spaces collapsed. Letters of non-Latin scripts are dropped too.

    Args:
        value: raw text.
    Returns:
        The normalised text; ``""`` for empty or punctuation-only input.
    """
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", value).casefold())
    text = "".join(c for c in text if not unicodedata.category(c).startswith("M"))
    return " ".join(_NOT_WORD.sub(" ", text.translate(_UNDECOMPOSED)).split())


def normalise_name(value: str) -> str:
    """normalise_text with every space, hyphen and apostrophe removed.

    Names are compared by character n-grams, so joining the pieces is the one
    form that "Van den Berg", "Van-den-Berg", "VANDENBERG" and "van den Bèrg"
    all share ("vandenberg"); likewise "D'Hondt" -> "dhondt".

    Args:
        value: a raw name.
    Returns:
        The joined lowercase name, ``""`` if nothing is left.
    """
    return normalise_text(value).replace(" ", "")


def normalise_address(value: str) -> str:
    """normalise_text plus one spelling for street types and unit markers.

    Rules, applied to whole words: "str"/"strt"/"strasse" -> "straat",
    "stw"/"stwg" -> "steenweg", "ln" -> "laan", "av"/"ave" -> "avenue",
    "bd"/"bld"/"blvd" -> "boulevard", "chee" -> "chaussee", "rd" -> "road",
    "bte"/"boite"/"box" -> "bus" (the unit number stays), and "st" -> "street"
    only when no word follows it (in "St Jean" it means Saint and stays).
    Compound street names ending in "str", "stwg" or "strasse" are completed
    ("Kerkstr." -> "kerkstraat"). Swedish "-g." / "-v." become "-gatan" /
    "-vagen" only with the full stop and a house number after it ("Storg. 5").
    House numbers are kept as they are.

    Args:
        value: a raw street address.
    Returns:
        The normalised address, ``""`` if nothing is left.
    """
    text = _SWEDISH_ABBREVIATION.sub(lambda m: "gatan " if m.group(1) in "gG" else "vagen ",
                                     unicodedata.normalize("NFKC", value))
    words = normalise_text(text).split()
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "st":
            words[index] = "st" if following[:1].isalpha() else "street"
        elif word in _ADDRESS_WORDS:
            words[index] = _ADDRESS_WORDS[word]
        else:
            for short, full in _ADDRESS_SUFFIXES:
                if word.endswith(short) and len(word) > len(short) + 2:
                    words[index] = word[: -len(short)] + full
                    break
    return " ".join(words)


_REFERENCE_DATE = datetime(1987, 11, 23)
_YEAR_DIRECTIVES, _MONTH_DIRECTIVES, _DAY_DIRECTIVES = ("%Y", "%y"), ("%m", "%b", "%B"), ("%d",)


def date_format_problem(date_format: str) -> str | None:
    """Why ``date_format`` cannot read dates of birth, or ``None`` when it can.

    A usable format is a ``strptime`` format with a year, a month and a day (or a day of
    the year, ``%j``) that reads back what it writes: "dd-mm-yyyy" is not one, "%d-%m-%Y"
    is.

    Args:
        date_format: the mapping's ``date_format`` text.
    Returns:
        The reason, phrased to follow "date_format '...'", or ``None``.
    """
    if "%" not in date_format:
        return ("is not a strptime format: write directives such as %d-%m-%Y for "
                "23-11-1987 (%d day, %m month, %Y four-digit year)")
    try:
        written = _REFERENCE_DATE.strftime(date_format)
        read = datetime.strptime(written, date_format)
    except ValueError as error:
        return f"is not a valid strptime format ({error}); e.g. %d/%m/%Y"
    has = lambda directives: any(d in date_format for d in directives)  # noqa: E731
    if not has(_YEAR_DIRECTIVES) or not (has(_DAY_DIRECTIVES) and has(_MONTH_DIRECTIVES)
                                         or "%j" in date_format):
        return "needs a year, a month and a day (e.g. %d/%m/%Y)"
    if read.date() != _REFERENCE_DATE.date():
        return "does not read back the dates it writes; e.g. %d/%m/%Y"
    return None


def normalise_date(value: str, date_format: str | Sequence[str] | None = None) -> str:
    """Parse a date into ISO ``YYYY-MM-DD``, the one form every agency encodes.

    Args:
        value: the raw date; surrounding whitespace is ignored.
        date_format: a ``strptime`` format such as ``"%d/%m/%Y"``, or several tried in
            order (the first that reads the value wins: exports mixing "23/11/1987" and
            "1987-11-23" in one column). Without one only ISO dates are accepted,
            optionally followed by a time ("1980-03-04T00:00:00").
    Returns:
        The date as ``YYYY-MM-DD``.
    Raises:
        NormalisationError: not a date in that format (in any of them), an impossible
            date, or a year outside 1850-2100.
    """
    if date_format and not isinstance(date_format, str):
        reasons = []
        for one_format in date_format:
            try:
                return normalise_date(value, one_format)
            except NormalisationError as error:
                reasons.append(str(error))
        if any("year outside" in reason for reason in reasons):
            raise NormalisationError(next(r for r in reasons if "year outside" in r))
        raise NormalisationError(f"not a date in any of the formats {', '.join(date_format)}")
    text = value.strip()
    if date_format:
        try:
            parsed = datetime.strptime(text, date_format)
        except (ValueError, OverflowError):
            raise NormalisationError(f"not a date in format {date_format}") from None
        # "%Y%m%d" would otherwise read "198034" as 1980-03-04: digits must be padded.
        if _ADJACENT_NUMBERS.search(date_format) and parsed.strftime(date_format) != text:
            raise NormalisationError(f"not a date in format {date_format} "
                                     "(numbers must be zero-padded)")
    else:
        match = _ISO_DATE.fullmatch(text)
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
    """Parse a phone number into E.164 (``+32470123456``) so every spelling agrees.

    Args:
        value: the raw number. With a leading ``+`` or ``00`` no region is needed.
        region: the ISO 3166 region ("BE", "SE") national numbers belong to.
    Returns:
        The number in E.164 form.
    Raises:
        NormalisationError: an unknown region, a national number without a region,
            or not a valid phone number.
    """
    where = f" for region {region}" if region else ""
    if region and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise NormalisationError(f"unknown phone region {region}; use a two-letter code such "
                                 "as BE or SE")
    text = value.strip()
    if not region and text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException as exc:
        national = not text.startswith(("+", "\uff0b"))
        if not region and national and exc.error_type == exc.INVALID_COUNTRY_CODE:
            raise NormalisationError("not an international phone number (+ or 00); set "
                                     "phone_region in the mapping for national numbers") from None
        raise NormalisationError(f"not a phone number{where}") from None
    if not phonenumbers.is_valid_number(number):
        raise NormalisationError(f"not a valid phone number{where}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_value(kind: str, value: str | None, *,
                    date_format: str | Sequence[str] | None = None,
                    phone_region: str | None = None) -> str:
    """Normalise one value with the normaliser ``kind``; a missing value is never an error.

    Args:
        kind: one of ``NORMALISER_KINDS``; "none" only strips whitespace.
        value: the raw value; ``None`` or whitespace-only means missing.
        date_format: passed to ``normalise_date``.
        phone_region: passed to ``normalise_phone``.
    Returns:
        The normalised value, ``""`` when missing.
    Raises:
        NormalisationError: the value cannot be normalised.
        ValueError: ``kind`` is not one of ``NORMALISER_KINDS``.
    """
    if kind not in NORMALISER_KINDS:
        raise ValueError(f"unknown normaliser {kind!r}; "
                         f"choose one of {', '.join(NORMALISER_KINDS)}")
    if value is None or not value.strip():
        return ""
    if kind == "date":
        return normalise_date(value, date_format)
    if kind == "phone":
        return normalise_phone(value, phone_region)
    if kind == "none":
        return value.strip()
    return {"address": normalise_address, "name": normalise_name, "text": normalise_text}[kind](
        value)


def infer_kind(feature_identifier: str) -> str:
    """The normaliser for a feature the schema does not assign one, guessed from its name.

    "phone"/"tel"/"mobile"/"gsm" -> phone; "date"/"dob" -> date; "address"/"addr"/
    "street" -> address; "name" -> name; "birth" -> date; anything else, and
    emails or places ("place_of_birth", "city"), -> text.

    Args:
        feature_identifier: the schema feature's identifier ("date_of_birth", "homeTel").
    Returns:
        One of ``NORMALISER_KINDS``.
    """
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", feature_identifier).lower()
    if any(word.startswith("tel") for word in re.split(r"[^a-z0-9]+", words)):
        return "phone"
    for kind, hints in _KIND_HINTS:
        if any(hint in words for hint in hints):
            return kind
    return "text"
