"""Shared fixtures: synthetic agency data, encoded once, and real servers on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from client import files
from client.api import LinkageClient
from client.demo import ServerProcess
from linkage.schema import default_schema_text
from linkage.synthetic import SyntheticConfig, generate

SMALL_RECORDS = 250


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
