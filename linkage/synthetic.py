"""Synthetic agency exports for the demo, the tests and the benchmarks.

Each record also carries the agency's case number and the crime-script stage
of that case; the people who appear at three or more agencies are the planted
brokers, seen in cases of different stages.

The model: a population of people (Belgian, Swedish and a few others, drawn
with Faker, so nobody real) of whom some appear at several agencies. Most
shared people appear at two agencies; "brokers" appear at three to five,
often across the border. Every appearance is recorded independently, with the
errors real files have: typos, swapped or shortened names, upper case and
dropped accents, day and month swapped, moved addresses, missing values and
other phone numbers. Some agencies also hold the same person twice. Each
agency writes its own column names, date format and phone style, and ships the
TOML mapping that tells ``linkage encode`` how to read it. The truth (which
record is which person) is kept beside the exports to measure linkage quality.
"""

from __future__ import annotations

import csv
import io
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import combinations

from faker import Faker

__all__ = [
    "DEFAULT_AGENCIES",
    "DEFAULT_STAGES",
    "FEATURES",
    "AgencyExport",
    "AgencyProfile",
    "Person",
    "SyntheticConfig",
    "SyntheticDataset",
    "generate",
    "true_pairs",
]

FEATURES = ("given_name", "family_name", "date_of_birth", "address", "city", "phone")


@dataclass(frozen=True)
class AgencyProfile:
    """How one agency writes its export."""

    name: str
    country: str
    id_column: str
    columns: dict[str, str]
    date_format: str
    id_pattern: str
    duplicate_rate: float = 0.0
    case_column: str = "CASE"
    stage_column: str = "STAGE"
    case_pattern: str = "{:05d}"

    @property
    def phone_region(self) -> str:
        return self.country


def _profile(name, country, id_column, names, date_format, id_pattern, duplicate_rate=0.0,
             case=("CASE", "STAGE", "{:05d}")):
    return AgencyProfile(name, country, id_column, dict(zip(FEATURES, names)), date_format,
                         id_pattern, duplicate_rate, *case)


DEFAULT_AGENCIES: tuple[AgencyProfile, ...] = (
    _profile("be-police", "BE", "ID", ("VOORNAAM", "NAAM", "GEBDAT", "ADRES", "GEMEENTE", "TEL"),
             "%d/%m/%Y", "PV-2024-{:06d}", duplicate_rate=0.03,
             case=("DOSSIER", "FASE", "AN.{:04d}.L1")),
    _profile("be-customs", "BE", "IDENT",
             ("PRENOM", "NOM", "DATE_NAISSANCE", "ADRESSE", "COMMUNE", "TELEPHONE"),
             "%d-%m-%Y", "DOU-{:05d}", case=("DOSSIER", "PHASE", "D/2024/{:04d}")),
    _profile("port-antwerp", "BE", "record_id",
             ("first_name", "last_name", "birth_date", "street", "city", "phone"),
             "%Y-%m-%d", "POA{:07d}", case=("incident", "stage", "INC-{:05d}")),
    _profile("se-police", "SE", "PERSONID",
             ("FORNAMN", "EFTERNAMN", "FODELSEDATUM", "ADRESS", "ORT", "TELEFON"),
             "%Y%m%d", "SE-POL-{:06d}", duplicate_rate=0.02,
             case=("ARENDE", "FAS", "5000-K{:05d}-24")),
    _profile("se-customs", "SE", "ARENDE_ID",
             ("FORNAMN", "EFTERNAMN", "FODD", "GATUADRESS", "POSTORT", "MOBIL"),
             "%Y-%m-%d", "TULL-{:06d}", case=("ARENDENR", "FAS", "TV{:06d}")),
)

#: The crime-script stages of cocaine trafficking through a port, in order.
DEFAULT_STAGES = ("recruitment", "logistics", "port_extraction", "transport", "distribution",
                  "money_flows")


@dataclass(frozen=True)
class Person:
    """The true identity behind records."""

    entity: str
    country: str
    given_name: str
    family_name: str
    date_of_birth: date
    address: str
    city: str
    phone_national: str
    phone_international: str


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. ``corruption`` scales the probability of every error kind."""

    seed: int = 7
    records_per_agency: int = 2000
    agencies: tuple[AgencyProfile, ...] = DEFAULT_AGENCIES
    shared_fraction: float = 0.3
    broker_fraction: float = 0.1
    corruption: float = 0.2
    stages: tuple[str, ...] = DEFAULT_STAGES
    records_per_case: int = 6


@dataclass(frozen=True)
class AgencyExport:
    """One agency's CSV export (as rows) and its mapping onto the schema."""

    name: str
    profile: AgencyProfile
    columns: list[str]
    rows: list[dict[str, str]]

    def to_csv(self) -> str:
        """The export as CSV text with a header line."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def mapping_toml(self) -> str:
        """The TOML mapping of this export's columns onto the schema features and attributes."""
        lines = [f'record_id = "{self.profile.id_column}"', ""]
        for feature in FEATURES:
            lines.append(f"[fields.{feature}]")
            lines.append(f'column = "{self.profile.columns[feature]}"')
            if feature == "date_of_birth":
                lines.append(f'date_format = "{self.profile.date_format}"')
            if feature == "phone":
                lines.append(f'phone_region = "{self.profile.phone_region}"')
            lines.append("")
        lines += ["[attributes]", 'entity_type = "person"',
                  f'case_column = "{self.profile.case_column}"',
                  f'stage_column = "{self.profile.stage_column}"', ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class SyntheticDataset:
    """Exports by agency, and the truth: (agency, record id) -> entity id."""

    exports: dict[str, AgencyExport]
    truth: dict[tuple[str, str], str]
    people: dict[str, Person] = field(repr=False)
    brokers: frozenset[str] = frozenset()


# Names come from every locale of a country; addresses from the first (Faker's
# fr_BE has Belgian names but falls back to US-style addresses).
_LOCALES = {"BE": ("nl_BE", "fr_BE"), "SE": ("sv_SE",), "NL": ("nl_NL",), "DE": ("de_DE",)}
_PARTICLE_NAMES = ("Van den Berg", "De Smet", "Van Damme", "Vanden Bossche", "De Backer",
                   "Van de Velde", "D'Hondt", "Van Acker", "De Wilde", "Van der Linden",
                   "Verhaegen", "Van Dyck")
_NICKNAMES = {"johannes": "Jan", "jan": "Johannes", "william": "Bill", "elisabeth": "Lisa",
              "katarina": "Kajsa", "alexander": "Alex", "mohamed": "Mohammed",
              "frederik": "Frederic", "nicolas": "Nico"}
_PHONE_PREFIX = {"BE": ("47", "48", "49"), "SE": ("70", "72", "73", "76")}
_COUNTRY_CODE = {"BE": "32", "SE": "46", "NL": "31", "DE": "49"}


class _Generator:
    def __init__(self, config: SyntheticConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        self.fakers = {}
        for country, locales in _LOCALES.items():
            for locale in locales:
                faker = Faker(locale)
                faker.seed_instance(self.rng.randrange(2**32))
                self.fakers[locale] = faker
        self.people: dict[str, Person] = {}

    def person(self, country: str) -> Person:
        rng = self.rng
        faker = self.fakers[rng.choice(_LOCALES[country])]
        given = faker.first_name()
        family = faker.last_name()
        faker = self.fakers[_LOCALES[country][0]]
        if country == "BE" and rng.random() < 0.2:
            family = rng.choice(_PARTICLE_NAMES)
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
        street = faker.street_address().replace("\n", " ")
        city = faker.city()
        national, international = self._phone(country)
        entity = f"E{len(self.people):06d}"
        person = Person(entity, country, given, family, born, street, city, national,
                        international)
        self.people[entity] = person
        return person

    def _phone(self, country: str) -> tuple[str, str]:
        rng = self.rng
        if country == "BE":
            digits = rng.choice(_PHONE_PREFIX["BE"]) + "".join(rng.choice("0123456789")
                                                                for _ in range(7))
            national = f"0{digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
            return national, f"+32 {digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
        if country == "SE":
            digits = rng.choice(_PHONE_PREFIX["SE"]) + "".join(rng.choice("0123456789")
                                                                for _ in range(7))
            national = f"0{digits[:2]}-{digits[2:5]} {digits[5:7]} {digits[7:]}"
            return national, f"+46 {digits[:2]} {digits[2:5]} {digits[5:7]} {digits[7:]}"
        code = _COUNTRY_CODE[country]
        digits = "6" + "".join(rng.choice("0123456789") for _ in range(8))
        return f"0{digits}", f"+{code} {digits}"

    # -- corruption --------------------------------------------------------------------------

    def typo(self, text: str) -> str:
        if len(text) < 3:
            return text
        rng = self.rng
        position = rng.randrange(1, len(text) - 1)
        kind = rng.randrange(4)
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
        if kind == 0:
            return text[:position] + text[position + 1:]
        if kind == 1:
            return text[:position] + letter + text[position:]
        if kind == 2:
            return text[:position] + letter + text[position + 1:]
        return text[:position - 1] + text[position] + text[position - 1] + text[position + 1:]

    def appearance(self, person: Person, profile: AgencyProfile, extra: float = 0.0
                   ) -> dict[str, str]:
        rng, c = self.rng, min(1.0, self.config.corruption + extra)
        given, family = person.given_name, person.family_name
        if rng.random() < c * 0.1:
            given, family = family, given
        if rng.random() < c * 0.15:
            given = _NICKNAMES.get(given.lower(), given.split(" ")[0].split("-")[0])
        if rng.random() < c * 0.5:
            given = self.typo(given)
        if rng.random() < c * 0.5:
            family = self.typo(family)
        if rng.random() < c * 0.5:
            given, family = given.upper(), family.upper()
        if rng.random() < c * 0.3:
            family = _strip_accents(family)
        born = person.date_of_birth
        if rng.random() < c * 0.1 and born.day <= 12 and born.day != born.month:
            born = born.replace(day=born.month, month=born.day)
        born_text = born.strftime(profile.date_format)
        if rng.random() < c * 0.1:
            digits = [i for i, ch in enumerate(born_text) if ch.isdigit()]
            spot = rng.choice(digits[-2:])
            # A typo may make an impossible date; the encoder then reports it as missing.
            born_text = born_text[:spot] + rng.choice("0123456789") + born_text[spot + 1:]
        address, city = person.address, person.city
        if rng.random() < c * 0.3:
            faker = self.fakers[_LOCALES[profile.country][0]]
            address, city = faker.street_address().replace("\n", " "), faker.city()
        elif rng.random() < c * 0.3:
            address = self.typo(address)
        if person.country == profile.country:
            phone = person.phone_national
        else:
            phone = person.phone_international
        if rng.random() < c * 0.1:
            phone = self._phone(person.country)[0 if person.country == profile.country else 1]
        values = {"given_name": given, "family_name": family, "date_of_birth": born_text,
                  "address": address, "city": city, "phone": phone}
        for feature in FEATURES:
            missing = c * (0.3 if feature in ("phone", "address") else 0.08)
            if rng.random() < missing:
                values[feature] = ""
        return values


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(ch))


def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticDataset:
    """Generate every agency's export and the truth; the same config gives the same data.

    Each agency gets ``records_per_agency`` people, plus within-agency duplicates
    at its ``duplicate_rate``.
    """
    generator = _Generator(config)
    rng = generator.rng
    profiles = list(config.agencies)
    per_agency = config.records_per_agency
    slots: dict[str, list[Person]] = {p.name: [] for p in profiles}
    target_shared = int(per_agency * config.shared_fraction)
    countries = sorted({p.country for p in profiles})
    # Shared people first: brokers at 3-5 agencies, the rest at two.
    while any(len(slots[p.name]) < target_shared for p in profiles):
        open_agencies = [p for p in profiles if len(slots[p.name]) < target_shared]
        first = rng.choice(open_agencies)
        broker = rng.random() < config.broker_fraction and len(profiles) >= 3
        size = rng.randint(3, min(5, len(profiles))) if broker else 2
        same_country = [p for p in profiles if p.country == first.country and p is not first]
        others = [p for p in profiles if p is not first]
        chosen = [first]
        while len(chosen) < size:
            pool = same_country if (rng.random() < 0.6 and not broker) else others
            pool = [p for p in pool if p not in chosen] or [p for p in others if p not in chosen]
            chosen.append(rng.choice(pool))
        home = first.country if rng.random() < 0.8 else rng.choice(countries + ["NL", "DE"])
        person = generator.person(home)
        for profile in chosen:
            slots[profile.name].append(person)
    agencies_of: dict[str, int] = {}
    for people in slots.values():
        for person in people:
            agencies_of[person.entity] = agencies_of.get(person.entity, 0) + 1
    brokers = {entity for entity, count in agencies_of.items() if count >= 3}
    broker_stages: dict[str, set[str]] = {}
    exports: dict[str, AgencyExport] = {}
    truth: dict[tuple[str, str], str] = {}
    for profile in profiles:
        people = slots[profile.name]
        while len(people) < per_agency:
            home = profile.country if rng.random() < 0.85 else rng.choice(["BE", "SE", "NL", "DE"])
            people.append(generator.person(home))
        appearances = [(person, generator.appearance(person, profile)) for person in people]
        for person in rng.sample(people, int(len(people) * profile.duplicate_rate)):
            appearances.append((person, generator.appearance(person, profile, extra=0.2)))
        rng.shuffle(appearances)
        numbers = rng.sample(range(1, 10 ** 5), len(appearances))
        cases = _cases(rng, profile, len(appearances), config)
        columns = ([profile.id_column] + [profile.columns[f] for f in FEATURES]
                   + [profile.case_column, profile.stage_column])
        rows = []
        for number, (person, values) in zip(numbers, appearances):
            record_id = profile.id_pattern.format(number)
            case, stage = _case_for(rng, cases, person.entity in brokers,
                                    broker_stages.setdefault(person.entity, set()))
            row = {profile.id_column: record_id}
            row.update({profile.columns[f]: values[f] for f in FEATURES})
            row.update({profile.case_column: case, profile.stage_column: stage})
            rows.append(row)
            truth[(profile.name, record_id)] = person.entity
        exports[profile.name] = AgencyExport(profile.name, profile, columns, rows)
    return SyntheticDataset(exports, truth, generator.people, frozenset(brokers))


def _cases(rng: random.Random, profile: AgencyProfile, records: int,
           config: SyntheticConfig) -> list[tuple[str, str]]:
    """The agency's cases: (case number, stage), about ``records_per_case`` records each."""
    count = max(1, records // config.records_per_case)
    numbers = rng.sample(range(1, 10 ** 4), count)
    return [(profile.case_pattern.format(n), rng.choice(config.stages)) for n in numbers]


def _case_for(rng: random.Random, cases, is_broker: bool, seen_stages: set[str]):
    """A case for one appearance; a broker's cases prefer stages it has not been seen in."""
    case, stage = rng.choice(cases)
    if is_broker:
        for _ in range(20):
            if stage not in seen_stages:
                break
            case, stage = rng.choice(cases)
        seen_stages.add(stage)
    return case, stage


def true_pairs(dataset: SyntheticDataset) -> set[frozenset[tuple[str, str]]]:
    """Every pair of records (agency, record id) that belong to one person."""
    by_entity: dict[str, list[tuple[str, str]]] = {}
    for record, entity in dataset.truth.items():
        by_entity.setdefault(entity, []).append(record)
    return {frozenset(pair) for records in by_entity.values() for pair in combinations(records, 2)}
