"""Calls that never send their request: no token, a token, health checks, over plaintext and
mutual TLS. None of them may hold the worker threads that everyone else needs."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage.encoding.schema import default_schema_text
from linkage_service.protos.linkage.v1 import linkage_pb2 as pb

REPORT = "/linkage.v1.CoordinatorService/GetReport"
RESULTS = "/linkage.v1.AgencyService/GetResults"
SUBMIT = "/linkage.v1.AgencyService/SubmitBatch"
HEALTH = "/grpc.health.v1.Health/Check"
FIRST_MESSAGE_SECONDS = 2.0


class StuckCalls:
    """Calls that send their headers and then nothing, with no deadline, until released."""

    def __init__(self):
        self._release = threading.Event()
        self.futures: list = []
        self._channels: list[grpc.Channel] = []

    def _requests(self):
        self._release.wait()
        return
        yield  # a generator that never yields before release

    def open(self, channel: grpc.Channel, method: str, count: int, token: str | None = None,
             streaming_response: bool = False, timeout: float | None = None):
        self._channels.append(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        for _ in range(count):
            if streaming_response:
                call = channel.stream_stream(method)(self._requests(), metadata=metadata,
                                                     timeout=timeout)
            else:
                call = channel.stream_unary(method).future(self._requests(), metadata=metadata,
                                                           timeout=timeout)
            self.futures.append(call)

    def codes(self) -> list:
        """The status each call ended with (waits for all)."""
        found = []
        for call in self.futures:
            try:
                if hasattr(call, "result"):
                    call.result(timeout=30)
                else:
                    list(call)
                found.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                found.append(error.code())
        return found

    def close(self):
        self._release.set()
        for call in self.futures:
            call.cancel()
        for channel in self._channels:
            channel.close()


@pytest.fixture
def stuck():
    calls = StuckCalls()
    yield calls
    calls.close()


def _plain_server(tmp_path, **kwargs):
    return ServerProcess(tmp_path / "data", extra_args=(
        "--first-message-seconds", str(FIRST_MESSAGE_SECONDS)), **kwargs)


def _answers_fast(client_call, seconds: float = 5.0):
    started = time.monotonic()
    value = client_call()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f}s while hostile calls were open"
    return value


def test_calls_without_token_or_message_do_not_starve_the_server(tmp_path, stuck):
    with _plain_server(tmp_path) as server:
        for _ in range(4):  # several connections, 24 stuck calls each: well over 16 workers
            channel = grpc.insecure_channel(server.address)
            stuck.open(channel, REPORT, 8)
            stuck.open(channel, RESULTS, 8, streaming_response=True)
            stuck.open(channel, SUBMIT, 8)
        time.sleep(1.0)
        with server.client(server.coordinator_token, timeout=5) as coordinator:
            _answers_fast(coordinator.list_projects)
            tokens = _answers_fast(lambda: coordinator.create_project(
                "busy", default_schema_text(), ["a", "b"]))
        operator_token = (server.data_dir / "operator.token").read_text().strip()
        with server.client(operator_token, "operator", "operator", timeout=5) as operator:
            _answers_fast(operator.metrics)
        with LinkageClient(server.address, tokens["a"], timeout=5) as agency:
            with pytest.raises(grpc.RpcError) as no_run_yet:
                _answers_fast(lambda: list(agency.results("busy")))
        assert no_run_yet.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        codes = stuck.codes()
        # refused at once; streams over a connection's cap are refused by HTTP/2 (UNAVAILABLE)
        assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE}
        assert codes.count(grpc.StatusCode.UNAUTHENTICATED) > 16, codes
        with server.client(operator_token, "operator", "operator", timeout=10) as operator:
            refused = [e for e in operator.audit_log() if e.outcome == "UNAUTHENTICATED"]
        assert {e.method for e in refused} == {"GetReport", "GetResults", "SubmitBatch"}


def test_calls_with_a_token_but_no_deadline_are_refused_at_once(tmp_path, stuck):
    with _plain_server(tmp_path) as server:
        with server.client(server.coordinator_token, timeout=10) as coordinator:
            tokens = coordinator.create_project("nodeadline", default_schema_text(), ["a", "b"])
        for _ in range(2):
            channel = grpc.insecure_channel(server.address)
            stuck.open(channel, RESULTS, 12, token=tokens["a"], streaming_response=True)
        started = time.monotonic()
        codes = stuck.codes()
        assert time.monotonic() - started < FIRST_MESSAGE_SECONDS
        assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}, codes


def test_calls_with_a_token_but_no_message_are_reaped_and_audited(tmp_path, stuck):
    with _plain_server(tmp_path) as server:
        with server.client(server.coordinator_token, timeout=10) as coordinator:
            tokens = coordinator.create_project("reap", default_schema_text(), ["a", "b"])
        channels = [grpc.insecure_channel(server.address) for _ in range(3)]
        for channel, agency in zip(channels, ("a", "b", "a")):
            stuck.open(channel, RESULTS, 6, token=tokens[agency], streaming_response=True,
                       timeout=3600)
        time.sleep(0.5)
        with server.client(server.coordinator_token, timeout=5) as coordinator:
            _answers_fast(coordinator.list_projects)
        codes = stuck.codes()
        # each agency holds at most calls_per_caller (4) calls; the watchdog ends those
        assert codes.count(grpc.StatusCode.CANCELLED) == 8, codes
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 10, codes
        operator_token = (server.data_dir / "operator.token").read_text().strip()
        with server.client(operator_token, "operator", "operator", timeout=10) as operator:
            reaped = [e for e in operator.audit_log() if e.outcome == "CANCELLED"]
        assert len(reaped) == 8
        assert all(e.project == "reap" and e.method == "GetResults" for e in reaped)
        assert all(json.loads(e.counts_json)["stalled_seconds"] == 2 for e in reaped)


def test_stuck_health_checks_are_bounded_and_reaped(tmp_path, stuck):
    with _plain_server(tmp_path) as server:
        channel = grpc.insecure_channel(server.address)
        stuck.open(channel, HEALTH, 20, timeout=3600)
        time.sleep(0.5)
        with server.client(server.coordinator_token, timeout=5) as coordinator:
            _answers_fast(coordinator.list_projects)
        codes = stuck.codes()
        assert codes.count(grpc.StatusCode.CANCELLED) == 4, codes
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 16, codes


def test_an_upload_that_stops_between_chunks_is_ended(tmp_path):
    with ServerProcess(tmp_path / "data", extra_args=("--message-gap-seconds", "1")) as server:
        with server.client(server.coordinator_token, timeout=10) as coordinator:
            tokens = coordinator.create_project("gap", default_schema_text(), ["a", "b"])
        release = threading.Event()

        def header_then_nothing():
            yield pb.SubmitBatchRequest(header=pb.BatchHeader(project="gap"))
            release.wait(30)

        with grpc.insecure_channel(server.address) as channel:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                channel.stream_unary(SUBMIT, request_serializer=pb.SubmitBatchRequest.SerializeToString)(
                    header_then_nothing(), metadata=(("authorization", f"Bearer {tokens['a']}"),),
                    timeout=300)
            release.set()
        # the header fails validation or the gap ends the call; either way it does not wait 300 s
        assert time.monotonic() - started < 10
        assert refused.value.code() != grpc.StatusCode.INTERNAL


def test_deadlines_longer_than_a_day_are_refused(server):
    with LinkageClient(server.address, server.coordinator_token, timeout=2 * 24 * 3600) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.list_projects()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "deadline" in refused.value.details()


@pytest.mark.slow
def test_stuck_calls_over_mutual_tls_with_an_agency_certificate(tmp_path, stuck):
    with _plain_server(tmp_path, tls_dir=tmp_path / "pki") as server:
        with server.client(server.coordinator_token) as coordinator:
            coordinator.create_project("tls", default_schema_text(), ["a", "b"])
        tls = server.client_tls("a", "agency")
        credentials = grpc.ssl_channel_credentials(
            tls["ca"].read_bytes(), tls["key"].read_bytes(), tls["cert"].read_bytes())
        for _ in range(3):
            channel = grpc.secure_channel(server.address, credentials)
            stuck.open(channel, REPORT, 8)
            stuck.open(channel, RESULTS, 8, streaming_response=True)
        time.sleep(1.0)
        with server.client(server.coordinator_token, timeout=5) as coordinator:
            _answers_fast(coordinator.list_projects)
        codes = stuck.codes()
        assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE}
        assert codes.count(grpc.StatusCode.UNAUTHENTICATED) > 16, codes
