"""Two-server mode through the service against a normal run, on the same synthetic agencies.

    python -m bench.two_server_service --records 1000 --agencies 2 --threshold 0.8

Starts two ``linkage-server`` processes in two-server mode (mutual TLS between them) and one
normal server, submits the same encoded agencies to both (split into shares for the pair),
runs at the same numeric threshold and prints wall times, their ratio and how many groups
agree. Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.two_server_service")
    parser.add_argument("--records", type=int, default=1000, help="records per agency")
    parser.add_argument("--agencies", type=int, default=2)
    parser.add_argument("--threshold", default="0.8")
    args = parser.parse_args(argv)

    from linkage.encoding.schema import default_schema_text
    from linkage_service.client import files, pki
    from linkage_service.client.api import LinkageClient
    from linkage_service.client.demo import ServerProcess
    from linkage_service.client.shares import create_share_project, run_shares, submit_shares
    from linkage_service.client.synthetic import DEFAULT_STAGES, SyntheticConfig, generate

    base = Path(tempfile.mkdtemp(prefix="two-server-bench-"))
    secret_path = base / "secret.key"
    files.write_secret(secret_path)
    secret = files.read_secret(secret_path)
    schema = default_schema_text()
    dataset = generate(SyntheticConfig(seed=5, records_per_agency=args.records))
    names = sorted(dataset.exports)[:args.agencies]
    batches = {name: files.encode_export(schema, secret,
                                         dataset.exports[name].to_csv().encode("utf-8"),
                                         dataset.exports[name].mapping_toml(),
                                         case_key=name.encode("utf-8").ljust(32, b"#")).batch
               for name in names}
    pki_dir = base / "pki"
    pki.init_ca(pki_dir)
    pki.issue(pki_dir, "server-0", "server", pki_dir / "peers")
    second = ServerProcess(base / "s1" / "data", tls_dir=pki_dir, store="sqlite",
                           extra_args=("--two-server-role", "1"))
    normal = ServerProcess(base / "n" / "data", store="sqlite")
    started = []
    try:
        second.start()
        started.append(second)
        first = ServerProcess(base / "s0" / "data", tls_dir=pki_dir, store="sqlite", extra_args=(
            "--two-server-role", "0", "--peer", second.address, "--peer-cert",
            str(pki_dir / "peers" / "server-0.pem"), "--peer-key",
            str(pki_dir / "peers" / "server-0.key")))
        first.start()
        started.append(first)
        normal.start()
        started.append(normal)
        with first.client(first.coordinator_token, timeout=3600) as c0, \
                second.client(second.coordinator_token, timeout=3600) as c1, \
                LinkageClient(normal.address, normal.coordinator_token, timeout=3600) as cn:
            tokens = create_share_project(c0, c1, "bench", schema, names, list(DEFAULT_STAGES))
            plain_tokens = cn.create_project("bench", schema, names, list(DEFAULT_STAGES))
            for name in names:
                with first.client(tokens[name], name, "agency", timeout=3600) as a0, \
                        second.client(tokens[name], name, "agency", timeout=3600) as a1:
                    submit_shares(a0, a1, "bench", batches[name], deduplicated=True)
                with LinkageClient(normal.address, plain_tokens[name], timeout=3600) as agency:
                    agency.submit("bench", batches[name], deduplicated=True)
            clock = time.perf_counter()
            shared = run_shares(c0, c1, "bench", args.threshold)
            shared_s = time.perf_counter() - clock
            clock = time.perf_counter()
            plain = cn.run("bench", args.threshold)
            plain_s = time.perf_counter() - clock
        pairs = sum(len(batches[a]) * len(batches[b]) for i, a in enumerate(names)
                    for b in names[i + 1:])
        print(json.dumps({"records_per_agency": args.records, "agencies": len(names),
                          "cross_pairs": pairs, "threshold": args.threshold,
                          "two_server_run_s": round(shared_s, 3),
                          "normal_run_s": round(plain_s, 3),
                          "ratio": round(shared_s / plain_s, 1),
                          "us_per_cross_pair": round(1e6 * shared_s / pairs, 2),
                          "groups_two_server": shared["groups"],
                          "groups_normal": plain["groups"]}))
    finally:
        for process in started:
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
