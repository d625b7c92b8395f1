"""Generate the Python code for the contract: `make proto` and the freshness test call this.

grpcio-tools writes an absolute import (``from protos.linkage.v1 import linkage_pb2``) into the
service stub; the installed package lives under ``linkage_service.protos``, so the import is made
relative, which works from the source tree and from site-packages alike.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["protos/linkage/v1/linkage.proto", "protos/linkage/v1/shares.proto"]


def generate(out_dir: Path = ROOT) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", f"--pyi_out={out_dir}", *PROTOS],
                   cwd=ROOT, check=True)
    for proto in PROTOS:
        for suffix in ("_pb2_grpc.py", "_pb2.py", "_pb2.pyi"):  # shares imports linkage
            module = Path(out_dir) / proto.replace(".proto", suffix)
            text = module.read_text()
            module.write_text(re.sub(r"^from protos(?:\.\w+)* import ", "from . import ",
                                     text, flags=re.M))


if __name__ == "__main__":
    generate()
