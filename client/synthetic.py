"""Synthetic agency exports for the demo, the tests and the benchmarks.

The model:

* A population of people (Belgian from Faker's ``nl_BE`` and ``fr_BE``,
  Swedish from ``sv_SE``, and some Dutch, German, French and Polish people),
  drawn with Faker, so nobody real. Each has a given name (sometimes two), a
  family name (Flemish ones sometimes with particles: "Van den Berg"), a date
  of birth in 1950-2005, a street address with house number, a city and a
  mobile number of their own country.
* Each agency holds ``records_per_agency`` people. ``shared_fraction`` of them
  also appear at one or more other agencies: most shared people at exactly
  two, the planted "brokers" (``broker_fraction`` of the shared people) at
  three to five. Agencies mostly see people of their own country; shared
  people cross the border.
* Every appearance is written independently, with the errors real files have,
  each with a probability proportional to ``corruption`` (0 writes every
  record exactly; see ``ERROR_RATES``): typos, swapped given and family names,
  nicknames and dropped second given names, particles written together, upper
  case and dropped accents, day and month swapped or a wrong digit in the
  date, a year-only date (1 January), a moved address, abbreviated street
  types, another phone number and missing values. Agencies with a
  ``duplicate_rate`` hold some people twice (more corrupted, another record
  id).
* Each agency writes its own column names, record ids, date format and phone
  style (national for its own country's numbers, international for foreign
  ones), and ships the TOML mapping that tells ``linkage encode`` how to read
  its export. Each record also carries the agency's case number and the
  crime-script stage of that case; brokers are seen in cases of different
  stages.
* The truth (which record is which person) is kept beside the exports to
  measure linkage quality (``true_pairs``).

Everything is drawn from one ``random.Random(seed)``: the same config gives
the same data. Pure: no files, no network; dataclasses and strings out.
"""

from __future__ import annotations

import csv
import io
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import combinations
from types import MappingProxyType

try:
    from faker import Faker
except ImportError as error:  # an install without the demo extra
    raise ImportError("The synthetic agencies need Faker: pip install 'linkage-service[demo]'"
                      ) from error

__all__ = [
    "AgencyExport",
    "AgencyProfile",
    "DEFAULT_AGENCIES",
    "DEFAULT_STAGES",
    "ERROR_RATES",
    "FEATURES",
    "PHONE_STYLES",
    "Person",
    "SyntheticConfig",
    "SyntheticDataset",
    "generate",
    "true_pairs",
]

#: The features of the shared person schema, in schema order.
FEATURES = ("given_name", "family_name", "date_of_birth", "address", "city", "phone")

#: Phone styles an agency may write: national numbers as "0470 12 34 56" /
#: "070-123 45 67" ("spaced"), "0470/12.34.56" ("slashed", foreign numbers
#: with a 00 prefix) or digits only ("compact").
PHONE_STYLES = ("compact", "slashed", "spaced")


@dataclass(frozen=True)
class _Country:
    calling_code: str
    locales: tuple[str, ...]            # Faker locales people of this country are drawn from
    mobile_prefixes: tuple[str, ...]    # first digits of the national significant number
    mobile_digits: int                  # length of the national significant number
    trunk: str                          # national prefix ("0"; none in Poland)


_COUNTRIES: dict[str, _Country] = {
    "BE": _Country("32", ("nl_BE", "fr_BE"), ("460", "465", "466", "467", "468", "47", "48",
                                              "49"), 9, "0"),
    "SE": _Country("46", ("sv_SE",), ("70", "72", "73", "76", "79"), 9, "0"),
    "NL": _Country("31", ("nl_NL",), ("61", "62", "63", "64", "65", "68"), 9, "0"),
    "DE": _Country("49", ("de_DE",), ("160", "162", "170", "171", "172", "173", "174", "175",
                                      "176", "177", "178", "179"), 10, "0"),
    "FR": _Country("33", ("fr_FR",), ("60", "61", "62", "64", "65", "66", "67", "68", "73",
                                      "74", "75", "76", "77", "78"), 9, "0"),
    "PL": _Country("48", ("pl_PL",), ("50", "51", "53", "60", "66", "69", "72", "78", "79",
                                      "88"), 9, ""),
}
#: Home countries of people an agency sees who are from neither BE nor SE.
_OTHER_COUNTRIES = ("NL", "DE", "FR", "PL")


@dataclass(frozen=True)
class AgencyProfile:
    """How one agency writes its export.

    ``columns`` maps each schema feature (``FEATURES``) to the agency's column
    name; ``locales`` are the Faker locales of the agency's local population;
    ``id_pattern`` formats a number into a record id; ``duplicate_rate`` is the
    share of its people it holds twice.
    """

    name: str
    country: str
    locales: tuple[str, ...]
    id_column: str
    columns: dict[str, str] = field(hash=False)
    date_format: str
    phone_region: str
    id_pattern: str
    duplicate_rate: float = 0.0
    phone_style: str = "spaced"
    case_column: str = "CASE"
    stage_column: str = "STAGE"
    case_pattern: str = "{:05d}"

    def __post_init__(self) -> None:
        problems = []
        if self.country not in _COUNTRIES:
            problems.append(f"country {self.country!r} is not one of {', '.join(_COUNTRIES)}")
        if not self.locales:
            problems.append("locales: at least one Faker locale is needed")
        missing = [f for f in FEATURES if f not in self.columns]
        unknown = [f for f in self.columns if f not in FEATURES]
        if missing or unknown:
            problems.append(f"columns must map exactly the features {', '.join(FEATURES)}")
        names = [self.id_column, *self.columns.values(), self.case_column, self.stage_column]
        if len(set(names)) != len(names) or not all(names):
            problems.append("column names must be non-empty and distinct")
        if not 0.0 <= self.duplicate_rate < 1.0:
            problems.append("duplicate_rate must be in [0, 1)")
        if self.phone_style not in PHONE_STYLES:
            problems.append(f"phone_style must be one of {', '.join(PHONE_STYLES)}")
        if problems:
            raise ValueError(f"agency profile {self.name!r}: " + "; ".join(problems))

    @property
    def export_columns(self) -> list[str]:
        """The export's header: id, the features in schema order, case, stage."""
        return ([self.id_column] + [self.columns[f] for f in FEATURES]
                + [self.case_column, self.stage_column])


def _profile(name, country, locales, id_column, names, date_format, id_pattern, *,
             duplicate_rate=0.0, phone_style="spaced", case=("CASE", "STAGE", "{:05d}")):
    return AgencyProfile(name=name, country=country, locales=locales, id_column=id_column,
                         columns=dict(zip(FEATURES, names)), date_format=date_format,
                         phone_region=country, id_pattern=id_pattern,
                         duplicate_rate=duplicate_rate, phone_style=phone_style,
                         case_column=case[0], stage_column=case[1], case_pattern=case[2])


DEFAULT_AGENCIES: tuple[AgencyProfile, ...] = (
    _profile("be-police", "BE", ("nl_BE", "fr_BE"), "ID",
             ("VOORNAAM", "NAAM", "GEBDAT", "ADRES", "GEMEENTE", "TEL"),
             "%d/%m/%Y", "PV-2024-{:06d}", duplicate_rate=0.03,
             case=("DOSSIER", "FASE", "AN.{:04d}.L1")),
    _profile("be-customs", "BE", ("fr_BE", "nl_BE"), "IDENT",
             ("PRENOM", "NOM", "DATE_NAISSANCE", "ADRESSE", "COMMUNE", "TELEPHONE"),
             "%d-%m-%Y", "DOU-{:05d}", phone_style="slashed",
             case=("DOSSIER", "PHASE", "D/2024/{:04d}")),
    _profile("port-antwerp", "BE", ("nl_BE",), "record_id",
             ("first_name", "last_name", "birth_date", "street", "city", "phone"),
             "%Y-%m-%d", "POA{:07d}", phone_style="compact",
             case=("incident", "stage", "INC-{:05d}")),
    _profile("se-police", "SE", ("sv_SE",), "PERSONID",
             ("FORNAMN", "EFTERNAMN", "FODELSEDATUM", "ADRESS", "ORT", "TELEFON"),
             "%Y%m%d", "SE-POL-{:06d}", duplicate_rate=0.02,
             case=("ARENDE", "FAS", "5000-K{:05d}-24")),
    _profile("se-customs", "SE", ("sv_SE",), "ARENDE_ID",
             ("FORNAMN", "EFTERNAMN", "FODD", "GATUADRESS", "POSTORT", "MOBIL"),
             "%Y-%m-%d", "TULL-{:06d}", phone_style="compact",
             case=("ARENDENR", "FAS", "TV{:06d}")),
)

#: The crime-script stages of cocaine trafficking through a port, in order.
DEFAULT_STAGES = ("recruitment", "logistics", "port_extraction", "transport", "distribution",
                  "money_flows")

#: Probability of each error per appearance, per unit of ``corruption``
#: (capped at 1). With the default corruption 0.2, 10% of records are in upper
#: case and 8% lack a phone number.
ERROR_RATES: Mapping[str, float] = MappingProxyType({
    "swap_names": 0.1,          # given and family name exchanged
    "given_variant": 0.25,      # nickname, or second given name dropped
    "given_typo": 0.5,          # insert / delete / substitute / transpose one character
    "family_typo": 0.5,
    "particle": 0.5,            # "Van den Berg" -> "Vandenberg" / "van den Berg"
    "strip_accents": 0.5,
    "upper_case": 0.5,
    "day_month_swap": 0.1,
    "year_only": 0.03,          # date of birth recorded as 1 January of the year
    "date_digit": 0.05,         # one wrong digit (may make an impossible date)
    "moved": 0.3,               # a new address and city altogether
    "street_abbreviation": 0.3,  # "Kerkstraat" -> "Kerkstr.", "Avenue" -> "Av."
    "address_typo": 0.3,
    "city_typo": 0.15,
    "other_phone": 0.15,        # another number of the same country
    "missing_given_name": 0.05,
    "missing_family_name": 0.02,
    "missing_date_of_birth": 0.1,
    "missing_address": 0.3,
    "missing_city": 0.2,
    "missing_phone": 0.4,
})


@dataclass(frozen=True)
class Person:
    """The true identity behind records (the values as the person would write them)."""

    entity: str
    country: str
    given_name: str
    family_name: str
    date_of_birth: date
    address: str
    city: str
    phone_national: str
    phone_international: str
    locale: str = ""
    #: The national significant number of the mobile ("470123456").
    phone_digits: str = ""


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    ``shared_fraction``: the share of each agency's records whose person also
    appears at one or more other agencies. ``broker_fraction``: the share of
    those shared people who appear at three to five agencies (the rest at two).
    ``corruption`` scales the probability of every error kind (``ERROR_RATES``);
    0 gives clean records.
    """

    seed: int = 7
    records_per_agency: int = 2000
    agencies: tuple[AgencyProfile, ...] = DEFAULT_AGENCIES
    shared_fraction: float = 0.3
    broker_fraction: float = 0.1
    corruption: float = 0.2
    stages: tuple[str, ...] = DEFAULT_STAGES
    records_per_case: int = 6

    def __post_init__(self) -> None:
        object.__setattr__(self, "agencies", tuple(self.agencies))
        object.__setattr__(self, "stages", tuple(self.stages))
        problems = []
        if self.records_per_agency < 0:
            problems.append("records_per_agency must be >= 0")
        if not self.agencies:
            problems.append("agencies: at least one agency is needed")
        names = [a.name for a in self.agencies]
        if len(set(names)) != len(names):
            problems.append("agencies: names must be distinct")
        for label in ("shared_fraction", "broker_fraction", "corruption"):
            if not 0.0 <= getattr(self, label) <= 1.0:
                problems.append(f"{label} must be in [0, 1]")
        if not self.stages:
            problems.append("stages: at least one stage is needed")
        if self.records_per_case < 1:
            problems.append("records_per_case must be >= 1")
        if problems:
            raise ValueError("invalid synthetic config: " + "; ".join(problems))


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True)
class AgencyExport:
    """One agency's CSV export (as rows, every value a string) and its mapping."""

    name: str
    profile: AgencyProfile
    columns: list[str]
    rows: list[dict[str, str]]

    def to_csv(self) -> str:
        """The export as CSV text (header line first, ``\\n`` line ends)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def mapping_toml(self, *, attributes: bool = True) -> str:
        """The TOML mapping of this export's columns onto the schema features.

        ``record_id`` first, then one ``[fields.<feature>]`` table per feature
        in schema order (``date_format`` on the date, ``phone_region`` on the
        phone), then, unless ``attributes`` is false, the ``[attributes]``
        table naming the case and stage columns.
        """
        profile = self.profile
        lines = [f"record_id = {_toml_string(profile.id_column)}", ""]
        for feature in FEATURES:
            lines.append(f"[fields.{feature}]")
            lines.append(f"column = {_toml_string(profile.columns[feature])}")
            if feature == "date_of_birth":
                lines.append(f"date_format = {_toml_string(profile.date_format)}")
            if feature == "phone":
                lines.append(f"phone_region = {_toml_string(profile.phone_region)}")
            lines.append("")
        if attributes:
            lines += ["[attributes]", 'entity_type = "person"',
                      f"case_column = {_toml_string(profile.case_column)}",
                      f"stage_column = {_toml_string(profile.stage_column)}", ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class SyntheticDataset:
    """Exports by agency, and the truth: (agency, record id) -> entity id.

    ``people`` holds every person by entity id; ``brokers`` the entities
    planted at three or more agencies.
    """

    exports: dict[str, AgencyExport]
    truth: dict[tuple[str, str], str]
    people: dict[str, Person] = field(repr=False)
    brokers: frozenset[str] = frozenset()


# -- what people and addresses look like --------------------------------------------------

_PARTICLE_NAMES = ("Van den Berg", "De Smet", "Van Damme", "Vanden Bossche", "De Backer",
                   "Van de Velde", "D'Hondt", "Van Acker", "De Wilde", "Van der Linden",
                   "Van Dyck", "De Clercq", "Van Hoof", "De Vos", "Van Looy", "De Meyer",
                   "Vande Casteele", "Van Hecke", "De Coninck", "Van Rompuy")
_PARTICLE = re.compile(r"^(?:(?:van der|van den|van de|vanden|vande|van|de|le|la) |d')",
                       re.IGNORECASE)
_NICKNAMES = {
    "johannes": "Jan", "jan": "Johannes", "pieter": "Piet", "petrus": "Piet",
    "willem": "Wim", "wilhelmus": "Wim", "hendrik": "Rik", "jozef": "Jef", "joseph": "Jef",
    "franciscus": "Frans", "christophe": "Chris", "christian": "Chris", "kristof": "Kris",
    "frederik": "Fred", "frédéric": "Fred", "alexander": "Alex", "alexandre": "Alex",
    "nicolas": "Nico", "thomas": "Tom", "robert": "Rob", "benjamin": "Ben",
    "elisabeth": "Lisa", "katarina": "Kajsa", "margareta": "Greta", "kristina": "Kicki",
    "lars": "Lasse", "magnus": "Mange", "mohamed": "Mohammed", "mohammed": "Mohamed",
    "william": "Bill", "stefan": "Steff", "isabelle": "Isa", "dominique": "Dom",
}
_FLEMISH_STREETS = (
    "Kerkstraat", "Stationsstraat", "Molenstraat", "Dorpstraat", "Nieuwstraat", "Schoolstraat",
    "Kapelstraat", "Beekstraat", "Veldstraat", "Hoogstraat", "Bergstraat", "Kasteelstraat",
    "Lindenlaan", "Smisstraat", "Meersstraat", "Brugstraat", "Langestraat", "Ringlaan",
    "Antwerpsesteenweg", "Gentsesteenweg", "Kortrijksesteenweg", "Leuvensesteenweg",
    "Boomsesteenweg", "Grote Markt", "Vrijheidstraat", "Koningin Astridlaan",
    "Nijverheidsstraat", "Zandstraat", "Heidestraat", "Kapelsestraat", "Bredabaan",
    "Turnhoutsebaan", "Kiel", "Sint-Bernardsesteenweg", "Noorderlaan", "Gemeenteplein",
)
_FRENCH_STREETS = (
    "Rue de la Station", "Rue de l'Église", "Rue du Moulin", "Rue de la Gare", "Rue Haute",
    "Rue du Centre", "Rue des Écoles", "Rue Saint-Martin", "Rue Royale", "Rue de Namur",
    "Rue de Bruxelles", "Chaussée de Bruxelles", "Chaussée de Louvain", "Chaussée de Mons",
    "Avenue des Tilleuls", "Avenue de la Libération", "Avenue Louise", "Boulevard du Souverain",
    "Place Communale", "Rue du Château", "Rue de la Chapelle", "Rue des Champs",
    "Rue de Liège", "Rue Albert Ier", "Rue Émile Vandervelde", "Avenue du Parc",
    "Boulevard Tirou", "Rue de Fragnée", "Chaussée de Waterloo", "Rue du Marché",
)
_FLEMISH_CITIES = (
    "Antwerpen", "Gent", "Brugge", "Leuven", "Mechelen", "Aalst", "Kortrijk", "Hasselt",
    "Sint-Niklaas", "Oostende", "Genk", "Roeselare", "Turnhout", "Lier", "Beveren",
    "Dendermonde", "Vilvoorde", "Zaventem", "Schoten", "Brasschaat", "Hoboken", "Deurne",
    "Merksem", "Boom", "Kapellen", "Zwijndrecht", "Wilrijk", "Lokeren", "Ninove", "Geel",
    "Berchem", "Borgerhout", "Ekeren", "Mortsel", "Kontich", "Zeebrugge",
)
_FRENCH_CITIES = (
    "Liège", "Namur", "Charleroi", "Mons", "Tournai", "Wavre", "Verviers", "Seraing",
    "La Louvière", "Mouscron", "Arlon", "Nivelles", "Huy", "Braine-l'Alleud", "Ixelles",
    "Schaerbeek", "Anderlecht", "Uccle", "Waterloo", "Ottignies-Louvain-la-Neuve", "Herstal",
    "Châtelet", "Binche", "Dinant", "Bastogne", "Marche-en-Famenne", "Gembloux", "Saint-Gilles",
    "Molenbeek-Saint-Jean", "Forest", "Etterbeek", "Evere",
)
_ABBREVIATIONS = (
    (re.compile(r"straat\b"), "str."), (re.compile(r"steenweg\b"), "stwg"),
    (re.compile(r"gatan\b"), "g."), (re.compile(r"vägen\b"), "v."),
    (re.compile(r"^Avenue\b"), "Av."), (re.compile(r"^Boulevard\b"), "Bd"),
    (re.compile(r"^Chaussée\b"), "Chée"), (re.compile(r"\bbus\b"), "bte"),
)
# Keys next to each other on a keyboard, for realistic substitutions.
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _row_index, _row in enumerate(_KEYBOARD_ROWS):
    for _i, _key in enumerate(_row):
        _near = _row[max(0, _i - 1):_i] + _row[_i + 1:_i + 2]
        for _other in (_row_index - 1, _row_index + 1):
            if 0 <= _other < len(_KEYBOARD_ROWS):
                _near += _KEYBOARD_ROWS[_other][max(0, _i - 1):_i + 1]
        _NEIGHBOURS[_key] = _near
del _row_index, _row, _i, _key, _near, _other


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(ch))


def _match_case(letter: str, like: str) -> str:
    return letter.upper() if like.isupper() else letter


class _Generator:
    """Draws people and their corrupted appearances, all from one ``random.Random``."""

    def __init__(self, config: SyntheticConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        locales = sorted({loc for c in _COUNTRIES.values() for loc in c.locales}
                         | {loc for a in config.agencies for loc in a.locales})
        self.fakers: dict[str, Faker] = {}
        for locale in locales:
            faker = Faker(locale)
            faker.seed_instance(self.rng.randrange(2 ** 32))
            self.fakers[locale] = faker
        self.people: dict[str, Person] = {}
        self._rates: dict[float, dict[str, float]] = {}

    # -- people ----------------------------------------------------------------------------

    def person(self, country: str, locales: Sequence[str] = ()) -> Person:
        """A new person of ``country``, named from one of ``locales`` (default: the country's)."""
        rng = self.rng
        candidates = [loc for loc in locales if loc[-2:] == country] or _COUNTRIES[country].locales
        locale = rng.choice(candidates)
        faker = self.fakers[locale]
        female = rng.random() < 0.5
        first = faker.first_name_female if female else faker.first_name_male
        given = first()
        if rng.random() < (0.25 if country == "SE" else 0.1):
            second = first()
            if second != given:
                joiner = "-" if locale == "fr_BE" or rng.random() < 0.3 else " "
                given = f"{given}{joiner}{second}"
        family = faker.last_name()
        if locale == "nl_BE" and rng.random() < 0.15:
            family = rng.choice(_PARTICLE_NAMES)
        born = date(1950, 1, 1) + timedelta(days=rng.randrange((date(2005, 12, 31)
                                                                 - date(1950, 1, 1)).days + 1))
        address, city = self.address(country, locale)
        digits = self.phone_digits(country)
        entity = f"E{len(self.people):06d}"
        person = Person(entity, country, given, family, born, address, city,
                        _phone_text(country, digits, international=False, style="spaced"),
                        _phone_text(country, digits, international=True, style="spaced"),
                        locale, digits)
        self.people[entity] = person
        return person

    def address(self, country: str, locale: str) -> tuple[str, str]:
        """A street address with house number, and a city, as written in that country."""
        rng = self.rng
        faker = self.fakers[locale]
        number = str(min(400, int(rng.expovariate(1 / 35)) + 1))
        if country == "BE":
            french = locale.startswith("fr")
            if french:
                street = rng.choice(_FRENCH_STREETS)
                city = rng.choice(_FRENCH_CITIES) if rng.random() < 0.6 else self._be_city()
            else:
                street = (rng.choice(_FLEMISH_STREETS) if rng.random() < 0.75
                          else self.fakers["nl_BE"].street_name())
                city = rng.choice(_FLEMISH_CITIES) if rng.random() < 0.5 else self._be_city()
            if rng.random() < 0.05:
                number += rng.choice("ABC")
            text = f"{street} {number}"
            if rng.random() < 0.12:
                text += f" {'bte' if french else 'bus'} {rng.randint(1, 30)}"
            return text, city
        if country == "FR":
            return f"{number}, {faker.street_name()}", faker.city()
        if country == "PL":
            flat = f"/{rng.randint(1, 60)}" if rng.random() < 0.5 else ""
            return f"ul. {faker.street_name()} {number}{flat}", faker.city()
        return f"{faker.street_name()} {number}", faker.city()

    def _be_city(self) -> str:
        return self.fakers["nl_BE"].city()

    def phone_digits(self, country: str) -> str:
        rng, spec = self.rng, _COUNTRIES[country]
        prefix = rng.choice(spec.mobile_prefixes)
        return prefix + "".join(rng.choice("0123456789")
                                for _ in range(spec.mobile_digits - len(prefix)))

    # -- corruption ------------------------------------------------------------------------

    def typo(self, text: str) -> str:
        """One keyboard slip: delete, insert, substitute (a neighbouring key) or transpose."""
        if len(text) < 3:
            return text
        rng = self.rng
        position = rng.randrange(1, len(text))
        current = text[position]
        near = _NEIGHBOURS.get(current.lower()) or "aeinorst"
        letter = _match_case(rng.choice(near), text[position - 1] if current == " "
                             else current)
        kind = rng.randrange(4)
        if kind == 0:
            return text[:position] + text[position + 1:]
        if kind == 1:
            return text[:position] + letter + text[position:]
        if kind == 2 or position == len(text) - 1:
            return text[:position] + letter + text[position + 1:]
        return text[:position] + text[position + 1] + current + text[position + 2:]

    def appearance(self, person: Person, profile: AgencyProfile, corruption: float
                   ) -> dict[str, str]:
        """The feature values one agency writes for ``person``."""
        rng = self.rng
        rates = self._rates.get(corruption)
        if rates is None:
            rates = {kind: min(1.0, corruption * rate) for kind, rate in ERROR_RATES.items()}
            self._rates[corruption] = rates

        def happens(kind: str) -> bool:
            # Always draw, so that the stream of draws does not depend on the outcome.
            return rng.random() < rates[kind]

        given, family = person.given_name, person.family_name
        if happens("swap_names"):
            given, family = family, given
        if happens("given_variant"):
            parts = re.split(r"[ -]", given)
            if len(parts) > 1:
                given = parts[0]
            else:
                given = _NICKNAMES.get(given.lower(), given)
        if happens("given_typo"):
            given = self.typo(given)
        if happens("family_typo"):
            family = self.typo(family)
        if happens("particle"):
            match = _PARTICLE.match(family)
            if match and match.end() < len(family):
                rest = family[match.end():]
                if rng.random() < 0.5:
                    joined = family.replace(" ", "")
                    family = joined[0] + joined[1:].lower()
                else:
                    family = match.group(0).lower() + rest
        if happens("strip_accents"):
            given, family = _strip_accents(given), _strip_accents(family)
        if happens("upper_case"):
            given, family = given.upper(), family.upper()

        born = person.date_of_birth
        if happens("day_month_swap") and born.day <= 12 and born.day != born.month:
            born = born.replace(day=born.month, month=born.day)
        if happens("year_only"):
            born = born.replace(day=1, month=1)
        born_text = born.strftime(profile.date_format)
        if happens("date_digit"):
            spots = [i for i, ch in enumerate(born_text) if ch.isdigit()]
            spot = rng.choice(spots)
            # A typo may make an impossible date; the encoder then reports it as missing.
            born_text = born_text[:spot] + rng.choice("0123456789") + born_text[spot + 1:]

        address, city = person.address, person.city
        if happens("moved"):
            country = person.country if rng.random() < 0.7 else profile.country
            locale = person.locale if country == person.country else rng.choice(
                [loc for loc in profile.locales if loc[-2:] == country]
                or _COUNTRIES[country].locales)
            address, city = self.address(country, locale)
        if happens("street_abbreviation"):
            for pattern, short in _ABBREVIATIONS:
                address = pattern.sub(short, address, count=1)
        if happens("address_typo"):
            address = self.typo(address)
        if happens("city_typo"):
            city = self.typo(city)

        digits = person.phone_digits
        if happens("other_phone"):
            digits = self.phone_digits(person.country)
        phone = _phone_text(person.country, digits,
                            international=person.country != profile.country,
                            style=profile.phone_style)

        values = {"given_name": given, "family_name": family, "date_of_birth": born_text,
                  "address": address, "city": city, "phone": phone}
        for feature in FEATURES:
            if happens(f"missing_{feature}"):
                values[feature] = ""
        return values


def _phone_text(country: str, digits: str, *, international: bool, style: str) -> str:
    """A mobile number as written: national or international, in an agency's style."""
    spec = _COUNTRIES[country]
    if style == "compact":
        return f"+{spec.calling_code}{digits}" if international else spec.trunk + digits
    if international:
        prefix = f"00{spec.calling_code}" if style == "slashed" else f"+{spec.calling_code}"
        return f"{prefix} {_group_international(country, digits)}"
    if country == "BE" and style == "slashed":
        head = 3 if digits.startswith("4") else 2
        rest = digits[head:]
        return f"0{digits[:head]}/" + ".".join(rest[i:i + 2] for i in range(0, len(rest), 2))
    return _group_national(country, digits)


def _group_international(country: str, d: str) -> str:
    if country == "BE":
        return f"{d[:3]} {d[3:5]} {d[5:7]} {d[7:]}"
    if country == "SE":
        return f"{d[:2]} {d[2:5]} {d[5:7]} {d[7:]}"
    if country == "NL":
        return f"{d[:1]} {d[1:]}"
    if country == "DE":
        return f"{d[:3]} {d[3:]}"
    if country == "FR":
        return f"{d[:1]} {d[1:3]} {d[3:5]} {d[5:7]} {d[7:]}"
    return f"{d[:3]} {d[3:6]} {d[6:]}"


def _group_national(country: str, d: str) -> str:
    if country == "SE":
        return f"0{d[:2]}-{d[2:5]} {d[5:7]} {d[7:]}"
    if country == "NL":
        return f"0{d[:1]}-{d[1:]}"
    return _COUNTRIES[country].trunk + _group_international(country, d)


# -- who appears where ----------------------------------------------------------------------

def _plan(generator: _Generator) -> dict[str, list[Person]]:
    """The people each agency holds: exactly ``records_per_agency`` each, shared ones first."""
    config, rng = generator.config, generator.rng
    profiles = list(config.agencies)
    per_agency = config.records_per_agency
    quota = round(per_agency * config.shared_fraction)
    held: dict[str, list[Person]] = {p.name: [] for p in profiles}
    countries = sorted({p.country for p in profiles})

    def deficit(profile: AgencyProfile) -> int:
        return quota - len(held[profile.name])

    while True:
        open_agencies = [p for p in profiles if deficit(p) > 0]
        if not open_agencies:
            break
        # The agency furthest from its quota first, so that all reach it together.
        most = max(deficit(p) for p in open_agencies)
        first = rng.choice([p for p in open_agencies if deficit(p) == most])
        broker = len(profiles) >= 3 and rng.random() < config.broker_fraction
        size = rng.randint(3, min(5, len(profiles))) if broker else 2
        chosen = [first]
        while len(chosen) < size:
            # Partners that still need shared people; a pair may take any with room left.
            pool = [p for p in open_agencies if p not in chosen]
            if not pool and len(chosen) == 1:
                pool = [p for p in profiles
                        if p not in chosen and len(held[p.name]) < per_agency]
            if not pool:
                break
            if not broker and rng.random() < 0.6:
                same = [p for p in pool if p.country == first.country]
                pool = same or pool
            chosen.append(rng.choice(pool))
        if len(chosen) < 2:
            break  # no other agency can take anyone: the rest are held alone
        roll = rng.random()
        if roll < 0.75:
            home, locales = first.country, first.locales
        elif roll < 0.87:
            home, locales = rng.choice(countries), ()
        else:
            home, locales = rng.choice(_OTHER_COUNTRIES), ()
        person = generator.person(home, locales)
        for profile in chosen:
            held[profile.name].append(person)
    for profile in profiles:
        people = held[profile.name]
        foreign = [c for c in countries if c != profile.country]
        while len(people) < per_agency:
            roll = rng.random()
            if roll < 0.85:
                people.append(generator.person(profile.country, profile.locales))
            elif roll < 0.9 and foreign:
                people.append(generator.person(rng.choice(foreign)))
            else:
                people.append(generator.person(rng.choice(_OTHER_COUNTRIES)))
    return held


def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticDataset:
    """Generate every agency's export and the truth; the same config gives the same data.

    Each agency's export has ``records_per_agency`` people plus
    ``int(records_per_agency * duplicate_rate)`` within-agency duplicates
    (people it holds twice), in random order. Record ids are unique within an
    agency.
    """
    generator = _Generator(config)
    rng = generator.rng
    held = _plan(generator)
    agencies_of: dict[str, int] = {}
    for people in held.values():
        for person in people:
            agencies_of[person.entity] = agencies_of.get(person.entity, 0) + 1
    brokers = {entity for entity, count in agencies_of.items() if count >= 3}
    broker_stages: dict[str, set[str]] = {}
    exports: dict[str, AgencyExport] = {}
    truth: dict[tuple[str, str], str] = {}
    for profile in config.agencies:
        people = held[profile.name]
        appearances = [(person, generator.appearance(person, profile, config.corruption))
                       for person in people]
        extra = min(1.0, 1.5 * config.corruption)
        for person in rng.sample(people, int(len(people) * profile.duplicate_rate)):
            appearances.append((person, generator.appearance(person, profile, extra)))
        rng.shuffle(appearances)
        numbers = rng.sample(range(1, max(10 ** 5, 10 * len(appearances))), len(appearances))
        cases = _cases(rng, profile, len(appearances), config)
        columns = profile.export_columns
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
    numbers = rng.sample(range(1, max(10 ** 4, 10 * count)), count)
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
    """Every pair of records (agency, record id) that belong to one person.

    Both pairs across agencies and within-agency duplicates are included.
    """
    by_entity: dict[str, list[tuple[str, str]]] = {}
    for record, entity in dataset.truth.items():
        by_entity.setdefault(entity, []).append(record)
    return {frozenset(pair) for records in by_entity.values() for pair in combinations(records, 2)}
