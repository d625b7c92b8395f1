"""Normalisation: every agency must turn the same person into the same strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage.errors import NormalisationError
from linkage.normalise import (
    infer_kind,
    normalise_address,
    normalise_date,
    normalise_name,
    normalise_phone,
    normalise_text,
    normalise_value,
)


@pytest.mark.parametrize("variant", ["Van den Berg", "VANDENBERG", "Van-den-Berg",
                                     "van den Bèrg", " van  den berg "])
def test_particles_and_compound_surnames_agree(variant):
    assert normalise_name(variant) == "vandenberg"


@pytest.mark.parametrize("raw, expected", [
    ("D'Hondt", "dhondt"), ("d hondt", "dhondt"), ("O'Brien", "obrien"), ("Müller", "muller"),
    ("Ségolène", "segolene"), ("Åsa", "asa"), ("Öberg", "oberg"), ("Søren", "soren"),
    ("Straße", "strasse"), ("Łukasz", "lukasz"),
])
def test_names_lose_accents_case_and_punctuation(raw, expected):
    assert normalise_name(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Kerkstr. 12", "kerkstraat 12"), ("Kerkstraat 12 bte 3", "kerkstraat 12 bus 3"),
    ("Av. Louise 54", "avenue louise 54"), ("Bd Anspach 1", "boulevard anspach 1"),
    ("Storg. 5", "storgatan 5"), ("12 Main St", "12 main street"),
    ("Ängelholmsvägen 3", "angelholmsvagen 3"),
])
def test_addresses_share_one_spelling_of_street_types(raw, expected):
    assert normalise_address(raw) == expected


@pytest.mark.parametrize("raw, date_format, expected", [
    ("04/03/1980", "%d/%m/%Y", "1980-03-04"), ("19800304", "%Y%m%d", "1980-03-04"),
    ("04-03-1980", "%d-%m-%Y", "1980-03-04"), ("1980-03-04", None, "1980-03-04"),
    ("1980-03-04T00:00:00", None, "1980-03-04"), (" 1980-03-04 ", None, "1980-03-04"),
])
def test_dates_become_iso(raw, date_format, expected):
    assert normalise_date(raw, date_format) == expected


@pytest.mark.parametrize("raw, date_format", [
    ("31/02/1980", "%d/%m/%Y"), ("abc", "%d/%m/%Y"), ("04/03/1980", None),
    ("1980-02-30", None), ("1700-01-01", None), ("01/01/2150", "%d/%m/%Y"),
])
def test_bad_dates_are_errors_that_do_not_repeat_the_value(raw, date_format):
    with pytest.raises(NormalisationError) as error:
        normalise_date(raw, date_format)
    assert raw.strip() not in str(error.value)


@pytest.mark.parametrize("raw, region, expected", [
    ("0470 12 34 56", "BE", "+32470123456"), ("+32 470 12 34 56", None, "+32470123456"),
    ("0032470123456", None, "+32470123456"), ("+46 70 123 45 67", "BE", "+46701234567"),
    ("070-123 45 67", "SE", "+46701234567"),
])
def test_phones_become_e164(raw, region, expected):
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize("raw, region", [("12", "BE"), ("0470 12 34 56", None),
                                         ("no number here", "SE"), ("+32 1", None)])
def test_bad_phones_are_errors_that_do_not_repeat_the_value(raw, region):
    with pytest.raises(NormalisationError) as error:
        normalise_phone(raw, region)
    assert raw not in str(error.value)


def test_value_dispatch_and_missing_values():
    assert normalise_value("date", "  ") == ""
    assert normalise_value("phone", None) == ""
    assert normalise_value("none", " As Is ") == "As Is"
    assert normalise_value("name", "De Smet") == "desmet"
    with pytest.raises(ValueError, match="unknown normaliser"):
        normalise_value("telepathy", "x")
    assert [infer_kind(n) for n in ("mobile_phone", "dob", "surname", "street", "city")] == \
        ["phone", "date", "name", "address", "text"]


@given(st.text())
def test_text_normalisers_are_idempotent_and_clean(value):
    for normaliser in (normalise_text, normalise_name, normalise_address):
        once = normaliser(value)
        assert normaliser(once) == once
        assert once == once.strip() and "  " not in once
        assert once == once.lower()


@given(st.text(), st.sampled_from(["%d/%m/%Y", "%Y%m%d", None]))
def test_date_normaliser_only_raises_normalisation_errors(value, date_format):
    try:
        result = normalise_date(value, date_format)
    except NormalisationError:
        return
    assert normalise_date(result) == result


@given(st.text(max_size=30), st.sampled_from(["BE", "SE", None]))
def test_phone_normaliser_only_raises_normalisation_errors(value, region):
    try:
        result = normalise_phone(value, region)
    except NormalisationError:
        return
    assert normalise_phone(result) == result
