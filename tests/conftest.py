"""Shared fixtures: synthetic agency data, encoded once, real servers on loopback, and a
real PostgreSQL server (started once per session) for the tests that run on both stores.

Which tests run on both stores: the storage contract suite (``store`` fixture) and every
test of the modules in ``BOTH_STORES``, whose servers then keep their state in a fresh
PostgreSQL database per test (via LINKAGE_STORE, which ``linkage-server`` reads). With
LINKAGE_TEST_STORES=all every server test runs on both (about twice the suite's time).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from linkage_service.client import files
from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.encoding.schema import default_schema_text
from linkage_service.client.synthetic import SyntheticConfig, generate

SMALL_RECORDS = 250

#: Server test modules run on SQLite and on PostgreSQL (the rest on SQLite only): the
#: service end to end, incremental runs, crashes, hostile data and the contract suites.
BOTH_STORES = {"test_service", "test_incremental", "test_crash", "test_hostile_data",
               "test_storage", "test_storage_races"}
#: Tests that stay on SQLite: a backup of SQLite's files, and a crash test whose reference
#: server needs a store of its own (on PostgreSQL, test_replicas kills a run's owner and
#: compares with a reference project in the same database).
SQLITE_ONLY = {"test_sigterm_stops_cleanly_and_backup_is_usable",
               "test_killed_during_a_run_marks_it_failed_and_a_rerun_completes"}


def _store_kinds(module: str, test: str) -> list[str]:
    if test in SQLITE_ONLY:
        return ["sqlite"]
    if os.environ.get("LINKAGE_TEST_STORES") == "all" or module in BOTH_STORES:
        return ["sqlite", "postgresql"]
    return ["sqlite"]


def pytest_generate_tests(metafunc):
    if "store_kind" in metafunc.fixturenames:
        kinds = _store_kinds(metafunc.module.__name__.rsplit(".", 1)[-1],
                             metafunc.function.__name__)
        if len(kinds) > 1:
            metafunc.parametrize("store_kind", kinds)


@pytest.fixture
def store_kind() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the whole session (tests/postgres.py). Without one,
    PostgreSQL tests fail under CI and are skipped elsewhere."""
    from tests.postgres import PostgresServer, PostgresUnavailable

    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as error:
        server.stop()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed under CI and did not start: {error}")
        pytest.skip(f"no PostgreSQL here: {error}")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def store_spec(store_kind, request, monkeypatch) -> str:
    """'sqlite', or the URL of a fresh PostgreSQL database that every linkage-server this
    test starts uses (LINKAGE_STORE)."""
    if store_kind == "sqlite":
        monkeypatch.delenv("LINKAGE_STORE", raising=False)
        return "sqlite"
    url = request.getfixturevalue("postgres").create_database()
    monkeypatch.setenv("LINKAGE_STORE", url)
    return url


@pytest.fixture(scope="session")
def dataset():
    """Five agencies, a few hundred records each, deterministic."""
    return generate(SyntheticConfig(seed=11, records_per_agency=SMALL_RECORDS))


@pytest.fixture(scope="session")
def secret(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("secret") / "shared.key"
    files.write_secret(path)
    return files.read_secret(path)


@pytest.fixture(scope="session")
def schema_text() -> str:
    return default_schema_text()


@pytest.fixture(scope="session")
def batches(dataset, secret, schema_text):
    """Each agency's export encoded with the shared secret: {agency: EncodedBatch}."""
    return {
        name: files.encode_export(schema_text, secret, export.to_csv().encode("utf-8"),
                                  export.mapping_toml(),
                                  case_key=name.encode("utf-8").ljust(32, b"#")).batch
        for name, export in dataset.exports.items()
    }


@pytest.fixture
def server(tmp_path):
    """A real linkage-server process on a free loopback port with a fresh data dir."""
    with ServerProcess(tmp_path / "server-data") as process:
        yield process


@pytest.fixture
def coordinator(server):
    with LinkageClient(server.address, server.coordinator_token, timeout=120) as client:
        yield client


def agency_client(server: ServerProcess, token: str) -> LinkageClient:
    return LinkageClient(server.address, token, timeout=120)


def write_token(directory: Path, token: str, name: str = "token") -> Path:
    path = directory / name
    path.write_text(token + "\n", encoding="utf-8")
    return path
