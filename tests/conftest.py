"""Shared fixtures: synthetic agency data, encoded once, real servers on loopback, and a
real PostgreSQL server (started once per session) for the tests that run on both stores.

Which tests run on both stores: every test that starts a real server (the ``server``
fixture, ServerProcess, linkage-server's command line) in tests/server and tests/client,
and the storage contract suites. On PostgreSQL their servers keep their state in a fresh
database per test (a clone of one migrated once; via LINKAGE_STORE, which
``linkage-server`` reads); servers shared by a module get a database per module. The few tests in ``SQLITE_ONLY`` say why they cannot.
LINKAGE_TEST_STORES=sqlite (or =postgresql) runs one store only, for a quick local run.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import pytest

from linkage_service.client import files
from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.encoding.schema import default_schema_text
from linkage_service.client.synthetic import SyntheticConfig, generate

SMALL_RECORDS = 250

#: Storage suites that use the store directly (no server) and run on both stores.
STORAGE_SUITES = {"test_storage", "test_storage_races"}
#: Tests that stay on SQLite, and why: each looks at what only the embedded store has.
SQLITE_ONLY = {
    "test_sigterm_stops_cleanly_and_backup_is_usable":
        "checks `backup`, which copies SQLite's files (PostgreSQL: pg_dump)",
    "test_a_restored_backup_says_where_the_credentials_must_go":
        "restores a `backup` of SQLite's files (PostgreSQL: pg_dump)",
    "test_files_are_private_to_the_servers_user":
        "checks the modes of SQLite's database, WAL and backup files",
    "test_killed_during_a_run_marks_it_failed_and_a_rerun_completes":
        "its reference server needs a store of its own; on PostgreSQL test_replicas kills "
        "a run's owner and compares with a reference project in the same database",
    "test_summaries_stored_by_an_earlier_version_still_serve":
        "writes an old version's summary into the SQLite file",
    "test_audit_verify_detects_edits_removals_and_reordering":
        "edits SQLite's audit database behind the server's back",
    "test_purge_deletes_clks_and_keeps_reports_results_and_audit":
        "reads SQLite's file bytes for erased CLKs (PostgreSQL: docs/postgresql.md)",
    "test_the_demo_is_reproducible_with_the_same_seed":
        "the demo runs on the embedded store, twice in one test",
    "test_a_server_run_on_dask_equals_the_in_process_run_even_when_a_worker_dies":
        "compares two servers, each with a store of its own; the executor is what is tested",
}
_STARTS_A_SERVER = re.compile(r"ServerProcess|server_main|linkage_service\.server\.main|"
                              r"create_server")


@lru_cache(maxsize=None)
def _module_starts_servers(path: str) -> bool:
    return bool(_STARTS_A_SERVER.search(Path(path).read_text(encoding="utf-8")))


def _store_kinds(metafunc) -> list[str]:
    path = Path(metafunc.module.__file__)
    module = path.stem
    if metafunc.function.__name__ in SQLITE_ONLY or path.parent.parent.name != "tests" \
            or path.parent.name not in ("server", "client"):
        return ["sqlite"]
    if not (module in STORAGE_SUITES or "server" in metafunc.fixturenames
            or _module_starts_servers(str(path))):
        return ["sqlite"]
    chosen = os.environ.get("LINKAGE_TEST_STORES", "both")
    if chosen == "sqlite":
        return ["sqlite"]
    if chosen == "postgresql":
        return ["postgresql"]
    return ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc):
    if "store_kind" in metafunc.fixturenames:
        kinds = _store_kinds(metafunc)
        if kinds != ["sqlite"]:
            # module scope: a module's shared servers start once per store
            metafunc.parametrize("store_kind", kinds, scope="module")


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module", autouse=True)
def module_store_spec(store_kind, request):
    """Like ``store_spec``, for the servers a module shares: a scope="module" fixture that
    starts one names this fixture, so that it starts once per store (one PostgreSQL
    database per module and store)."""
    with pytest.MonkeyPatch.context() as patch:
        if store_kind == "sqlite":
            patch.delenv("LINKAGE_STORE", raising=False)
            yield "sqlite"
            return
        url = request.getfixturevalue("postgres").create_migrated_database()
        patch.setenv("LINKAGE_STORE", url)
        yield url


@pytest.fixture(autouse=True)
def store_spec(store_kind, request, monkeypatch) -> str:
    """'sqlite', or the URL of a fresh PostgreSQL database that every linkage-server this
    test starts uses (LINKAGE_STORE)."""
    if store_kind == "sqlite":
        monkeypatch.delenv("LINKAGE_STORE", raising=False)
        return "sqlite"
    url = request.getfixturevalue("postgres").create_migrated_database()
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
