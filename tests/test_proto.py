"""The checked-in generated code must match what grpcio-tools makes of the .proto today."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage_service.protos.build import generate

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["linkage_pb2.py", "linkage_pb2.pyi", "linkage_pb2_grpc.py", "shares_pb2.py",
             "shares_pb2.pyi", "shares_pb2_grpc.py"]


def test_generated_code_is_up_to_date(tmp_path):
    generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / "protos/linkage/v1" / name).read_text()
        checked_in = (ROOT / "protos/linkage/v1" / name).read_text()
        assert fresh == checked_in, f"{name} is stale: run 'make proto'"


@pytest.mark.parametrize("proto", ["linkage.proto", "shares.proto"])
def test_every_rpc_message_and_field_is_commented(proto):
    lines = (ROOT / "protos/linkage/v1" / proto).read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        declares = (stripped.startswith(("rpc ", "message ", "service "))
                    or (stripped.endswith(";") and "=" in stripped
                        and not stripped.startswith(("syntax", "package", "//"))))
        if declares:
            assert lines[index - 1].strip().startswith("//"), f"line {index + 1} has no comment"
