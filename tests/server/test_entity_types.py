"""Several entity types in one project: each with its own schema, linked in one run, never mixed."""

from __future__ import annotations

import random
from importlib import resources

import grpc
import pytest
from faker import Faker

from linkage_service.client import files
from linkage_service.client.api import LinkageClient
from linkage_service.client.synthetic import DEFAULT_STAGES

COMPANY_SCHEMA = resources.files("linkage.encoding").joinpath("schemas/company.json").read_text("utf-8")
COMPANY_MAPPING = """record_id = "ID"
[fields.company_name]
column = "NAME"
[fields.registration_number]
column = "VAT"
[fields.address]
column = "STREET"
[fields.city]
column = "CITY"
[attributes]
entity_type = "company"
case_column = "CASE"
stage_column = "STAGE"
"""


def _company_exports(shared: int = 25, own: int = 40) -> dict[str, str]:
    faker = Faker("nl_BE")
    faker.seed_instance(3)
    rng = random.Random(3)
    common = [(faker.company(), f"BE0{rng.randrange(10**8, 10**9)}", faker.street_address(),
               faker.city()) for _ in range(shared)]
    exports = {}
    for agency in ("be-customs", "port-antwerp"):
        rows = list(common) + [(faker.company(), f"BE0{rng.randrange(10**8, 10**9)}",
                                faker.street_address(), faker.city()) for _ in range(own)]
        lines = ["ID,NAME,VAT,STREET,CITY,CASE,STAGE"]
        for index, (name, vat, street, city) in enumerate(rows):
            if agency == "port-antwerp" and index < shared and index % 3 == 0:
                name = name.upper().replace(" ", "  ")
            stage = DEFAULT_STAGES[index % len(DEFAULT_STAGES)]
            lines.append(f'{agency}-co-{index},"{name}",{vat},"{street}","{city}",'
                         f"K{index % 7},{stage}")
        exports[agency] = "\n".join(lines) + "\n"
    return exports


def test_persons_and_companies_link_in_one_run_without_mixing(server, coordinator, batches,
                                                             schema_text, secret):
    names = ["be-customs", "port-antwerp"]
    tokens = coordinator.create_project("mixed", schema_text, names, list(DEFAULT_STAGES),
                                        {"company": COMPANY_SCHEMA})
    for name, text in _company_exports().items():
        outcome = files.encode_export(COMPANY_SCHEMA, secret, text.encode("utf-8"),
                                      COMPANY_MAPPING, case_key=b"k" * 32)
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit("mixed", batches[name])
            agency.submit("mixed", outcome.batch)
    summary = coordinator.run("mixed", "0.8")
    assert summary["records"] == sum(len(batches[n]) for n in names) + 2 * 65
    report = coordinator.report("mixed")
    types = {node["entity_type"] for node in report["network"]["nodes"]
             if node["kind"] == "entity"}
    assert {"person", "company"} <= types
    assert not any("/" in t for t in types), "an entity mixes persons and companies"
    companies = [n for n in report["network"]["nodes"]
                 if n["kind"] == "entity" and n["entity_type"] == "company"]
    assert len(companies) >= 20  # most of the 25 shared companies are found


def test_a_batch_for_an_unknown_entity_type_is_refused(server, coordinator, secret, schema_text):
    tokens = coordinator.create_project("persons-only", schema_text, ["be-customs", "x"],
                                        list(DEFAULT_STAGES))
    text = _company_exports()["be-customs"]
    outcome = files.encode_export(COMPANY_SCHEMA, secret, text.encode("utf-8"), COMPANY_MAPPING,
                                  case_key=b"k" * 32)
    with LinkageClient(server.address, tokens["be-customs"]) as agency:
        with pytest.raises(grpc.RpcError) as error:
            agency.submit("persons-only", outcome.batch)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no schema for entity type 'company'" in error.value.details()


def test_reviews_train_only_the_model_of_their_own_entity_type(server, coordinator, batches,
                                                              schema_text, secret, store_spec):
    """A coordinator's decision on a company group must not move the persons' score model."""
    from linkage_service.server.storage import open_store

    names = ["be-customs", "port-antwerp"]
    tokens = coordinator.create_project("typed-reviews", schema_text, names,
                                        list(DEFAULT_STAGES), {"company": COMPANY_SCHEMA})
    for name, text in _company_exports().items():
        outcome = files.encode_export(COMPANY_SCHEMA, secret, text.encode("utf-8"),
                                      COMPANY_MAPPING, case_key=b"k" * 32)
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit("typed-reviews", batches[name])
            agency.submit("typed-reviews", outcome.batch)
    coordinator.run("typed-reviews", "0.8")
    report = coordinator.report("typed-reviews")
    type_of = {n["id"]: n["entity_type"] for n in report["network"]["nodes"]
               if n["kind"] == "entity"}
    company = next(g["id"] for g in report["groups"] if type_of.get(g["id"]) == "company")
    person = next(g["id"] for g in report["groups"] if type_of.get(g["id"]) == "person")
    coordinator.review("typed-reviews", company, "rejected", "not the same firm")
    coordinator.review("typed-reviews", person, "accepted", "same person")
    summary = coordinator.run("typed-reviews", "0.8")
    assert summary["reviews_used"] == {"accepted": 1, "rejected": 1}
    server.stop()  # one process owns a data directory; read the server's file after it
    store = open_store(store_spec, server.data_dir)
    try:
        project_id = next(p.id for p in store.projects() if p.name == "typed-reviews")
        persons = store.reviewed_scores(project_id, "person")
        companies = store.reviewed_scores(project_id, "company")
    finally:
        store.close()
    assert (persons[0].size, persons[1].size) == (1, 0)
    assert (companies[0].size, companies[1].size) == (0, 1)
