"""Synthetic company records for the quality harness: four agencies, one company schema.

There is no public labelled company data set like FEBRL, so this generator
writes one in the spirit of ``client.synthetic``: Belgian and Swedish
companies (some Dutch and German) drawn with Faker, nobody real, each with a
name and legal form, an enterprise / organisation number, a street address
and a city. A share of companies appears at several agencies, some twice at
one agency, and every appearance is written independently with the errors
company files have, each with a probability proportional to ``corruption``:

* the legal form dropped, abbreviated differently ("NV" / "N.V." / "nv") or
  written out; a word of the name abbreviated ("Logistics" -> "Log."); a typo;
  upper case;
* the registration number written in the agency's style: Belgian enterprise
  numbers as "0123.456.789", "BE0123456789" or "0123456789"; Swedish
  organisation numbers as "556123-4567", "5561234567" or as the VAT number
  "SE556123456701"; sometimes one wrong digit, often missing;
* a moved address, abbreviated street types, typos, missing address or city.

Pure: dataclasses out, one ``random.Random(seed)``, the same arguments give
the same data.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from faker import Faker

from .quality_data import LabelledData, OwnerExport, plain_clkhash_schema

__all__ = ["COMPANY_ERROR_RATES", "load_companies"]

#: Probability of each error per appearance, per unit of corruption (capped at 1).
COMPANY_ERROR_RATES = {
    "drop_form": 0.5, "form_variant": 0.5, "abbreviate_word": 0.3, "name_typo": 0.5,
    "upper_case": 0.5, "number_typo": 0.1, "missing_number": 1.0, "moved": 0.3,
    "street_abbreviation": 0.3, "address_typo": 0.3, "city_typo": 0.15,
    "missing_address": 0.3, "missing_city": 0.2,
}
_FORMS = {"BE": ("NV", "BV", "BVBA", "SA", "SRL", "SPRL", "CV", "VOF"),
          "SE": ("AB", "HB", "KB"), "NL": ("B.V.", "N.V."), "DE": ("GmbH", "AG", "KG")}
_FORM_VARIANTS = {"NV": ("N.V.", "nv", "Naamloze Vennootschap"), "BV": ("B.V.", "bv"),
                  "BVBA": ("B.V.B.A.", "bvba"), "SA": ("S.A.", "sa", "Société Anonyme"),
                  "SRL": ("S.R.L.", "srl"), "SPRL": ("S.P.R.L.", "sprl"), "CV": ("C.V.",),
                  "VOF": ("V.O.F.",), "AB": ("Aktiebolag", "ab", "Aktiebolaget"),
                  "HB": ("Handelsbolag",), "KB": ("Kommanditbolag",), "B.V.": ("BV",),
                  "N.V.": ("NV",), "GmbH": ("GMBH", "Gesellschaft mbH"), "AG": ("A.G.",),
                  "KG": ("K.G.",)}
_TRADES = ("Logistics", "Shipping", "Trading", "Import Export", "Transport", "Freight",
           "Holding", "International", "Services", "Fruit", "Bananas", "Chemicals",
           "Maritime", "Consulting", "Handel", "Bouw", "Invest")
_ABBREVIATIONS = {"Logistics": "Log.", "International": "Intl", "Import Export": "Imp-Exp",
                  "Services": "Serv.", "Transport": "Transp.", "Trading": "Trad.",
                  "Shipping": "Shipp.", "Holding": "Hold.", "Chemicals": "Chem."}
_LOCALES = {"BE": ("nl_BE", "nl_BE", "fr_BE"), "SE": ("sv_SE",), "NL": ("nl_NL",),
            "DE": ("de_DE",)}
_STREET_SHORT = ((re.compile(r"straat\b"), "str."), (re.compile(r"steenweg\b"), "stwg"),
                 (re.compile(r"gatan\b"), "g."), (re.compile(r"vägen\b"), "v."),
                 (re.compile(r"straße\b"), "str."))


@dataclass(frozen=True)
class _Agency:
    name: str
    country: str
    columns: tuple[str, str, str, str]   # name, number, address, city
    id_column: str
    number_style: int                    # which of the country's number styles it writes
    duplicate_rate: float = 0.0


_AGENCIES = (
    _Agency("be-customs", "BE", ("RAISON_SOCIALE", "NUM_ENTREPRISE", "ADRESSE", "COMMUNE"),
            "IDENT", 0, 0.02),
    _Agency("port-antwerp", "BE", ("company", "vat", "street", "city"), "record_id", 1),
    _Agency("be-police", "BE", ("FIRMA", "KBO", "ADRES", "GEMEENTE"), "ID", 2, 0.03),
    _Agency("se-customs", "SE", ("FORETAG", "ORGNR", "GATUADRESS", "POSTORT"), "ARENDE_ID", 0),
)


@dataclass(frozen=True)
class _Company:
    entity: str
    country: str
    name: str
    form: str
    digits: str
    address: str
    city: str


class _Generator:
    def __init__(self, seed: int, corruption: float):
        self.rng = random.Random(seed)
        self.fakers = {}
        for index, locale in enumerate(sorted({loc for locs in _LOCALES.values()
                                               for loc in locs})):
            faker = Faker(locale)
            faker.seed_instance(seed * 100 + index)
            self.fakers[locale] = faker
        self.rates = {k: min(1.0, v * corruption) for k, v in COMPANY_ERROR_RATES.items()}
        self.count = 0

    def happens(self, kind: str) -> bool:
        return self.rng.random() < self.rates[kind]  # always one draw per call

    def company(self, country: str) -> _Company:
        rng = self.rng
        faker = self.fakers[rng.choice(_LOCALES[country])]
        base = re.sub(r"\s+(NV|BV|BVBA|VOF|AB|HB|KB|GmbH.*|AG|e\.V\.|Inc|Group|LLC|SA)$", "",
                      faker.company())
        if rng.random() < 0.5:
            base = f"{base} {rng.choice(_TRADES)}"
        if country == "BE":
            digits = rng.choice("01") + "".join(rng.choice("0123456789") for _ in range(9))
        elif country == "SE":
            digits = "55" + "".join(rng.choice("0123456789") for _ in range(8))
        else:
            digits = "".join(rng.choice("0123456789") for _ in range(9))
        address, city = self.address(country)
        self.count += 1
        return _Company(f"C{self.count:06d}", country, base, rng.choice(_FORMS[country]), digits,
                        address, city)

    def address(self, country: str) -> tuple[str, str]:
        faker = self.fakers[_LOCALES[country][0]]
        number = str(min(400, int(self.rng.expovariate(1 / 40)) + 1))
        if country in ("BE", "NL", "SE", "DE"):
            return f"{faker.street_name()} {number}", faker.city()
        return f"{number} {faker.street_name()}", faker.city()

    def typo(self, text: str) -> str:
        if len(text) < 4:
            return text
        rng = self.rng
        at = rng.randrange(1, len(text) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            return text[:at] + text[at + 1:]
        if kind == 1:
            return text[:at] + rng.choice("aeinorst") + text[at:]
        return text[:at] + text[at + 1] + text[at] + text[at + 2:]

    def number_text(self, company: _Company, style: int) -> str:
        d = company.digits
        if company.country == "BE":
            return (f"{d[:4]}.{d[4:7]}.{d[7:]}", f"BE{d}", d)[style % 3]
        if company.country == "SE":
            return (f"{d[:6]}-{d[6:]}", d, f"SE{d}01")[style % 3]
        return d

    def appearance(self, company: _Company, agency: _Agency) -> dict[str, str]:
        rng = self.rng
        name, form = company.name, company.form
        if self.happens("form_variant"):
            form = rng.choice(_FORM_VARIANTS.get(form, (form,)))
        if self.happens("abbreviate_word"):
            for word, short in _ABBREVIATIONS.items():
                name = name.replace(word, short)
        if self.happens("name_typo"):
            name = self.typo(name)
        full = name if self.happens("drop_form") else f"{name} {form}"
        if self.happens("upper_case"):
            full = full.upper()
        number = self.number_text(company, agency.number_style)
        if self.happens("number_typo"):
            at = rng.randrange(len(number))
            if number[at].isdigit():
                number = number[:at] + rng.choice("0123456789") + number[at + 1:]
        address, city = company.address, company.city
        if self.happens("moved"):
            address, city = self.address(company.country)
        if self.happens("street_abbreviation"):
            for pattern, short in _STREET_SHORT:
                address = pattern.sub(short, address)
        if self.happens("address_typo"):
            address = self.typo(address)
        if self.happens("city_typo"):
            city = self.typo(city)
        values = {"company_name": full, "registration_number": number, "address": address,
                  "city": city}
        for feature, kind in (("registration_number", "missing_number"),
                              ("address", "missing_address"), ("city", "missing_city")):
            if self.happens(kind):
                values[feature] = ""
        return values


_FEATURES = ("company_name", "registration_number", "address", "city")


def _mapping(agency: _Agency) -> str:
    lines = [f'record_id = "{agency.id_column}"', ""]
    for feature, column in zip(_FEATURES, agency.columns):
        lines += [f"[fields.{feature}]", f'column = "{column}"', ""]
    return "\n".join(lines)


def load_companies(corruption: float = 0.2, seed: int = 7,
                   records_per_agency: int = 1000, shared_fraction: float = 0.3) -> LabelledData:
    """Four agencies' company exports (company schema features) and the truth."""
    generator = _Generator(seed, corruption)
    rng = generator.rng
    held: dict[str, list[_Company]] = {a.name: [] for a in _AGENCIES}
    quota = round(records_per_agency * shared_fraction)
    while any(len(held[a.name]) < quota for a in _AGENCIES):
        short = [a for a in _AGENCIES if len(held[a.name]) < quota]
        first = rng.choice(short)
        others = [a for a in _AGENCIES if a is not first]
        chosen = [first, *rng.sample(others, 1 if rng.random() < 0.8 else rng.randint(2, 3))]
        country = first.country if rng.random() < 0.8 else rng.choice(("BE", "SE", "NL", "DE"))
        company = generator.company(country)
        for agency in chosen:
            held[agency.name].append(company)
    for agency in _AGENCIES:
        while len(held[agency.name]) < records_per_agency:
            country = agency.country if rng.random() < 0.85 else rng.choice(("NL", "DE"))
            held[agency.name].append(generator.company(country))
    exports, entities, owners, plain = [], [], [], []
    for index, agency in enumerate(_AGENCIES):
        companies = held[agency.name][:records_per_agency]
        appearances = [(c, generator.appearance(c, agency)) for c in companies]
        for company in rng.sample(companies, int(len(companies) * agency.duplicate_rate)):
            appearances.append((company, generator.appearance(company, agency)))
        rng.shuffle(appearances)
        numbers = rng.sample(range(1, 10 * len(appearances) + 10), len(appearances))
        rows = []
        for number, (company, values) in zip(numbers, appearances):
            prefix = "".join(word[0] for word in agency.name.split("-")).upper()
            row = {agency.id_column: f"{prefix}-{number:07d}"}
            row.update({column: values[f] for f, column in zip(_FEATURES, agency.columns)})
            rows.append(row)
            entities.append(company.entity)
            owners.append(index)
            plain.append(dict(values))
        exports.append(OwnerExport(agency.name, rows, _mapping(agency)))
    schema = plain_clkhash_schema([("company_name", "name"), ("registration_number", "digits"),
                                   ("address", "text"), ("city", "text")])
    return LabelledData(f"companies-{corruption:g}", tuple(exports), np.array(entities),
                        np.array(owners, np.int64), False, pd.DataFrame(plain, dtype=str),
                        schema)
