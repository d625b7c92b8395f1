"""A retried upload racing its first attempt: the store keeps each record once and no
attempt fails with INTERNAL (it hit the upload_chunks primary key before). Both stores."""

from __future__ import annotations

import json
import threading

import grpc
import pytest

from linkage_service.client.api import LinkageClient
from linkage.batch import content_hash
from linkage_service.client.synthetic import DEFAULT_STAGES
from linkage_service.server.storage import SqliteStore, open_store


@pytest.fixture
def stores(store_spec, tmp_path):
    """Two handles on one store: on PostgreSQL two independent stores (as two replicas
    have), on SQLite the one store (one process per data directory) used twice."""
    first = open_store(store_spec, tmp_path / "data")
    second = first if isinstance(first, SqliteStore) else open_store(store_spec, tmp_path)
    yield first, second
    first.close()
    if second is not first:
        second.close()


def _race(*targets):
    errors: list[BaseException] = []
    results: list = [None] * len(targets)

    def call(index, target):
        try:
            results[index] = target()
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=call, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_two_attempts_appending_and_committing_at_once_store_each_record_once(stores):
    first, second = stores
    project = first.create_project("p", "{}", "fp", 16, [("a", "hash-a")])
    agency = first.agencies(project.id)[0]
    ids = [f"r{i}" for i in range(40)]
    clks = [i.to_bytes(2, "big") for i in range(40)]
    header = json.dumps({"clk_bits": 16, "record_count": len(ids)})

    def attempt(store):
        def send():
            store.begin_upload(project.id, agency.id, "b-1", header)
            held = 0
            for start in range(0, len(ids), 10):
                held = store.append_chunk("b-1", start, ids[start:start + 10],
                                          clks[start:start + 10])
            return held
        return send

    for _ in range(3):  # a few rounds: the interleaving differs each time
        results, errors = _race(attempt(first), attempt(second))
        assert errors == [] and results == [40, 40]
        assert [i for chunk, _, _ in first.upload_chunks("b-1") for i in chunk] == ids
        first.discard_upload("b-1")
    attempt(first)()
    digest = content_hash(ids, clks, None)
    results, errors = _race(lambda: first.commit_upload(project, agency, "b-1", digest, "kc"),
                            lambda: second.commit_upload(project, agency, "b-1", digest, "kc"))
    assert errors == [] and results[0] == results[1] and results[0].record_count == 40
    assert first.load_records(project.id).record_ids == ids


def test_the_same_batch_submitted_twice_at_once_is_stored_once(server, coordinator, batches,
                                                               schema_text):
    name, other = list(batches)[:2]
    tokens = coordinator.create_project("race", schema_text, [name, other],
                                        list(DEFAULT_STAGES))

    def submit():
        with LinkageClient(server.address, tokens[name], timeout=120) as agency:
            return agency.submit("race", batches[name])

    results, errors = _race(submit, submit)
    for error in errors:  # a clear refusal is acceptable; an internal error is not
        assert isinstance(error, grpc.RpcError) and error.code() != grpc.StatusCode.INTERNAL, \
            error
    assert len(errors) < 2
    report = coordinator.run("race", "0.8")
    assert report["records"] == len(batches[name])
