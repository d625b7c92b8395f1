"""A starting server imports only what serving needs: the run's kernels (numba), the report's
network (networkx), schema validation (jsonschema, clkhash) and Dask load when first used."""

from __future__ import annotations

import subprocess
import sys

_HEAVY = ("numba", "scipy", "networkx", "jsonschema", "clkhash", "distributed")


def test_a_started_server_answers_health_checks_without_loading_the_run_core(tmp_path):
    code = f"""
import sys
from pathlib import Path
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from linkage_service.server.app import create_server
from linkage_service.server.config import ServerConfig
server, port, store = create_server(ServerConfig(data_dir=Path({str(tmp_path)!r}),
                                                 listen="127.0.0.1:0"))
server.start()
with grpc.insecure_channel(f"127.0.0.1:{{port}}") as channel:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=10)
server.stop(0)
store.close()
print("serving", reply.status == health_pb2.HealthCheckResponse.SERVING)
print("loaded", [m for m in {_HEAVY!r} if m in sys.modules])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert done.stdout.split("\n")[:2] == ["serving True", "loaded []"]
