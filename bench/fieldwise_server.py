"""Record-level against field-wise linkage through the real server, on the same data.

    python -m bench.fieldwise_server --records 250 400 --seeds 11 12 13

For each synthetic dataset (five agencies, ``--records`` each, generator seed
``--seeds``) every agency's export is encoded twice with one secret: with
``person.json`` (one record-level CLK) and with ``person_segments.json``
(per-field segments, linked field-wise; issue 12). Each encoding goes to its
own real server on loopback (a server refuses one secret in two projects),
the coordinator runs ``auto``, every agency reads its hit/no-hit results, and
the groups are scored pairwise against the generator's truth. The table has
precision, recall and F1 per schema, the F1 difference, and each run's
server-side seconds (one run each; the figures are deterministic).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import linkage.encoding as encoding_package
from linkage.analysis.evaluation import pairwise_quality
from linkage_service.client import files
from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess
from linkage_service.client.synthetic import DEFAULT_STAGES, SyntheticConfig, generate

SCHEMAS = ("person.json", "person_segments.json")


def _link_on_server(dataset, secret: bytes, schema_text: str, data_dir: Path):
    """Encode, submit, run auto, read results; returns (quality, summary)."""
    batches = {name: files.encode_export(schema_text, secret, export.to_csv().encode("utf-8"),
                                         export.mapping_toml(),
                                         case_key=name.encode("utf-8").ljust(32, b"#")).batch
               for name, export in dataset.exports.items()}
    with ServerProcess(data_dir) as server:
        with LinkageClient(server.address, server.coordinator_token, timeout=600) as coordinator:
            tokens = coordinator.create_project("bench", schema_text, sorted(batches),
                                                list(DEFAULT_STAGES))
            for name, batch in batches.items():
                with LinkageClient(server.address, tokens[name], timeout=600) as agency:
                    agency.submit("bench", batch)
            summary = coordinator.run("bench", "auto")
            predicted = {}
            for name in batches:
                with LinkageClient(server.address, tokens[name], timeout=600) as agency:
                    predicted.update({(name, hit["record"]): hit["group"]
                                      for hit in agency.results("bench")})
    return pairwise_quality(predicted, dataset.truth)["all"], summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[250])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11])
    args = parser.parse_args(argv)
    schemas = Path(encoding_package.__file__).parent / "schemas"
    texts = {name: (schemas / name).read_text("utf-8") for name in SCHEMAS}
    print("| records/agency | seed | schema | P | R | F1 | run s | F1 − record-level |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        secret_path = Path(work) / "shared.key"
        files.write_secret(secret_path)
        secret = files.read_secret(secret_path)
        for records in args.records:
            for seed in args.seeds:
                dataset = generate(SyntheticConfig(seed=seed, records_per_agency=records))
                baseline = None
                for name in SCHEMAS:
                    quality, summary = _link_on_server(
                        dataset, secret, texts[name], Path(work) / f"{records}-{seed}-{name}")
                    baseline = quality.f1 if baseline is None else baseline
                    print(f"| {records} | {seed} | {name} | {quality.precision:.4f} | "
                          f"{quality.recall:.4f} | {quality.f1:.4f} | {summary['seconds']:.1f} | "
                          f"{quality.f1 - baseline:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
