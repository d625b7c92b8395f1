"""Two share-holding matching servers and a dealer as real processes on loopback, and a bench.

    python -m bench.attacks.two_server bench --records 1000 --threshold 0.8
    python -m bench.attacks.two_server bench --dataset febrl4 --threshold 0.77
    python -m bench.attacks.two_server bench --dataset febrl4 --runs 0 --sweep 0.75 0.77 0.8

Roles (each ``python -m bench.attacks.two_server ROLE``, one process each):

* ``dealer``: makes the correlated randomness for one plan (``linkage.mpc.Dealer``) and
  hands server 0 its seed, server 1 its seed and then its corrections block by block (the
  socket's buffer bounds how far the dealer runs ahead);
* ``serve --party 0|1``: a matching server that holds one share of every CLK bit; it takes
  a job and the agency-side shares from the coordinator, its material from the dealer, runs
  ``linkage.mpc.threshold_party`` against its peer, and returns the hit pairs with its costs;
* ``bench``: the agencies and the coordinator: encodes two synthetic agencies (or FEBRL4)
  with the shipped schema, splits every CLK (``split_clks``), starts the three processes,
  checks that the pairs both servers return equal the plaintext kernel's at the threshold,
  and prints the cost table (medians over ``--runs``) with F1 through this path.

The wire format is a length-prefixed frame: JSON for control messages, raw little-endian
array bytes for data (both sides know every array's dtype and shape from the plan). This
is a benchmark transport: no TLS, no authentication; a deployment needs both (mutual TLS
between the servers and to the dealer) and a contract (see docs/privacy.md).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from linkage.mpc import (Correction, Dealer, PartyMaterial, Plan, rational_threshold,
                         split_clks, threshold_party)
from linkage.mpc.dealer import AND_ROUNDS

_HEADER = struct.Struct("<Q")
_MAX_FRAME = 1 << 34
# Up to this many pairs server 1 takes all of the dealer's corrections (48 B per pair) before
# the online phase starts, so online times exclude the dealer; beyond, they stream.
_PREFETCH_PAIRS = 1 << 23


# -- framing -------------------------------------------------------------------------------------

def _send(sock: socket.socket, payload: bytes | memoryview) -> None:
    sock.sendall(_HEADER.pack(len(payload)))
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    out = bytearray(size)
    view, got = memoryview(out), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionError("peer closed the connection mid-frame")
        got += n
    return out


def _recv(sock: socket.socket) -> bytearray:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > _MAX_FRAME:
        raise ConnectionError(f"frame of {size} bytes refused")
    return _recv_exact(sock, size)


def send_json(sock, obj) -> None:
    _send(sock, json.dumps(obj).encode())


def recv_json(sock):
    return json.loads(_recv(sock))


def send_array(sock, array: np.ndarray) -> None:
    _send(sock, memoryview(np.ascontiguousarray(array)).cast("B"))


def recv_array(sock, dtype, shape) -> np.ndarray:
    data = _recv(sock)
    array = np.frombuffer(data, dtype=np.dtype(dtype))
    if array.size != int(np.prod(shape)):
        raise ConnectionError(f"array of {array.size} elements, expected shape {shape}")
    return array.reshape(shape)


def _listen() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    print(f"listening on 127.0.0.1:{server.getsockname()[1]}", file=sys.stderr, flush=True)
    return server


def _connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- dealer --------------------------------------------------------------------------------------

def dealer_main(args) -> int:
    """Serve one plan's material to the two servers, then report what it cost."""
    listener = _listen()
    job = None
    connections = {}
    while len(connections) < 2:
        sock, _ = listener.accept()
        hello = recv_json(sock)
        job = job or hello["plan"]
        if hello["plan"] != job:
            send_json(sock, {"error": "plan differs from the other server's"})
            return 1
        connections[hello["party"]] = sock
    plan = Plan(**job)
    started = time.perf_counter()
    dealer = Dealer(plan)
    sent = {0: 0, 1: 0}
    for party, sock in connections.items():
        _send(sock, dealer.seeds[party])
        sent[party] += len(dealer.seeds[party])
    busy = 0.0
    for correction in dealer_corrections_timed(dealer):
        seconds, correction = correction
        busy += seconds
        for part in (correction.product, correction.mask_bits, correction.and_product):
            send_array(connections[1], part)
        sent[1] += correction.nbytes
    setup = time.perf_counter() - started
    for sock in connections.values():
        sock.close()
    print(json.dumps({"dealer_compute_s": busy, "dealer_wall_s": setup,
                      "bytes_to_server0": sent[0], "bytes_to_server1": sent[1]}), flush=True)
    return 0


def dealer_corrections_timed(dealer: Dealer):
    iterator = dealer.corrections()
    while True:
        started = time.perf_counter()
        try:
            correction = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - started, correction


def _corrections_from(sock: socket.socket, plan: Plan, received: list[int]):
    for lo, hi in plan.blocks():
        shape = (hi - lo, plan.right_rows)
        product = recv_array(sock, np.uint32, shape)
        mask_bits = recv_array(sock, np.uint32, shape)
        anded = recv_array(sock, np.uint64, (AND_ROUNDS, *shape))
        received[0] += product.nbytes + mask_bits.nbytes + anded.nbytes
        yield Correction(product, mask_bits, anded)


# -- a share-holding server ----------------------------------------------------------------------

def _exchange(peer: socket.socket, message: np.ndarray) -> np.ndarray:
    """Send ours and receive theirs at once (both may be larger than the socket buffers)."""
    sender = threading.Thread(target=send_array, args=(peer, message))
    sender.start()
    theirs = recv_array(peer, message.dtype, message.shape)
    sender.join()
    return theirs


def serve_main(args) -> int:
    """Take one job from the coordinator, run it against the peer, return the hit pairs."""
    listener = _listen()
    coordinator, _ = listener.accept()
    job = recv_json(coordinator)
    plan = Plan(**job["plan"])
    left = recv_array(coordinator, np.uint32, (plan.left_rows, plan.clk_bits))
    right = recv_array(coordinator, np.uint32, (plan.right_rows, plan.clk_bits))
    started = time.perf_counter()
    if args.party == 1:
        peer, _ = listener.accept()
    else:
        peer = _connect(job["peer"])
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    dealer = _connect(job["dealer"])
    send_json(dealer, {"party": args.party, "plan": job["plan"]})
    seed = bytes(_recv(dealer))
    received = [len(seed)]
    corrections = _corrections_from(dealer, plan, received) if args.party == 1 else None
    if corrections is not None and job["prefetch"]:
        corrections = iter(list(corrections))  # the offline phase ends before the online one
    _exchange(peer, np.zeros(1, np.uint8))  # both have their material: the online phase starts
    offline = time.perf_counter() - started
    material = PartyMaterial(args.party, plan, seed, corrections)
    rational = rational_threshold(job["threshold"], plan.clk_bits)
    protocol = threshold_party(args.party, left, right, rational, material)
    sent, waiting, rounds = 0, 0.0, 0
    message = next(protocol)
    while True:
        sent += message.nbytes
        rounds += 1
        wait_started = time.perf_counter()
        theirs = _exchange(peer, message)
        waiting += time.perf_counter() - wait_started
        try:
            message = protocol.send(theirs)
        except StopIteration as stop:
            hits = stop.value
            break
    wall = time.perf_counter() - started - offline
    send_json(coordinator, {"party": args.party, "online_wall_s": wall, "offline_wall_s": offline,
                            "waiting_s": waiting, "bytes_sent_to_peer": sent,
                            "rounds": rounds, "dealer_bytes_received": received[0],
                            "hits": len(hits)})
    send_array(coordinator, hits.left)
    send_array(coordinator, hits.right)
    for sock in (peer, dealer, coordinator, listener):
        sock.close()
    return 0


# -- the coordinator and the agencies: the bench -------------------------------------------------

class _Role:
    """One child process of this module, started on a free loopback port."""

    def __init__(self, *role_args: str):
        # One BLAS thread per process: each server is one core, and three processes with a
        # thread per core each would only fight over the cores.
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.attacks.two_server", *role_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
            cwd=Path(__file__).resolve().parents[2])
        line = self.process.stderr.readline()
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError(f"{role_args[0]} did not start: {line}{self.process.stderr.read()}")
        self.address = line.split()[-1]

    def finish(self, timeout: float = 60.0) -> str:
        out, err = self.process.communicate(timeout=timeout)
        if self.process.returncode != 0:
            raise RuntimeError(f"child failed ({self.process.returncode}): {err}")
        return out

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def link_on_two_servers(left_clks: np.ndarray, right_clks: np.ndarray, clk_bits: int,
                        threshold: float) -> dict:
    """Split, start dealer + two servers, run, collect: the hits and every cost figure."""
    plan = Plan(left_clks.shape[0], right_clks.shape[0], clk_bits)
    split_started = time.perf_counter()
    left_shares = split_clks(left_clks, clk_bits)
    right_shares = split_clks(right_clks, clk_bits)
    split_s = time.perf_counter() - split_started
    roles = [_Role("dealer"), _Role("serve", "--party", "1"), _Role("serve", "--party", "0")]
    dealer, second, first = roles
    try:
        started = time.perf_counter()
        sockets = []
        for party, server in ((0, first), (1, second)):
            sock = _connect(server.address)
            job = {"plan": {"left_rows": plan.left_rows, "right_rows": plan.right_rows,
                            "clk_bits": clk_bits, "block_rows": plan.block_rows},
                   "threshold": threshold, "dealer": dealer.address, "peer": second.address,
                   "prefetch": plan.pairs <= _PREFETCH_PAIRS}
            send_json(sock, job)
            send_array(sock, left_shares[party])
            send_array(sock, right_shares[party])
            sockets.append(sock)
        reports, pairs = [], []
        for sock in sockets:
            report = recv_json(sock)
            lefts = recv_array(sock, np.int64, (report["hits"],))
            rights = recv_array(sock, np.int64, (report["hits"],))
            reports.append(report)
            pairs.append((lefts, rights))
            sock.close()
        wall = time.perf_counter() - started
        dealer_report = json.loads(dealer.finish().strip().splitlines()[-1])
        for role in (first, second):
            role.finish()
    finally:
        for role in roles:
            role.kill()
    if not (np.array_equal(pairs[0][0], pairs[1][0]) and np.array_equal(pairs[0][1], pairs[1][1])):
        raise AssertionError("the two servers returned different hit pairs")
    return {"left": pairs[0][0], "right": pairs[0][1], "servers": reports,
            "dealer": dealer_report, "wall_s": wall, "split_s": split_s,
            "share_bytes_per_server": left_shares[0].nbytes + right_shares[0].nbytes,
            "prefetch": plan.pairs <= _PREFETCH_PAIRS,
            "pairs": plan.pairs}


def _two_owners(dataset: str, records: int, hardening: str | None):
    """Encoded CLKs of two owners (agencies) and the data, with the shipped schema."""
    from bench.quality import encode_ours
    from bench.quality_data import load_febrl4, load_synthetic
    from linkage.encoding.schema import default_schema_text, load_schema

    schema = load_schema(default_schema_text())
    if hardening is not None:
        from bench.attacks.population import schema_with
        schema = schema_with(json.loads(hardening))
    data = load_febrl4() if dataset == "febrl4" else load_synthetic(
        records_per_agency=records)
    _, clks = encode_ours(data, schema)
    keep = data.owners <= 1
    return schema, data, clks, keep


def _f1(data, keep, lefts_global, rights_global) -> float:
    from bench.quality import _links, measure, true_links

    truth = true_links(data)
    owners = data.owners
    cross_truth = truth[(owners[truth.get_level_values(0)] != owners[truth.get_level_values(1)])
                        & keep[truth.get_level_values(0)] & keep[truth.get_level_values(1)]]
    found = _links(lefts_global, rights_global)
    return measure(cross_truth, found, owners)["cross"]


def bench_main(args) -> int:
    from linkage.matching.kernel import dice_candidates_native

    schema, data, clks, keep = _two_owners(args.dataset, args.records, args.hardening)
    a_rows = np.flatnonzero(data.owners == 0)
    b_rows = np.flatnonzero(data.owners == 1)
    left, right = clks[a_rows], clks[b_rows]
    bits = schema.clk_bits
    dice_candidates_native(left[:64], right[:64], 0.5)  # compiled before timing
    if args.sweep:
        print("| threshold | pairs | precision | recall | F1 (plaintext kernel pairs: "
              "the pairs two-server mode links) |\n|---|---|---|---|---|")
        for threshold in args.sweep:
            plain = dice_candidates_native(left, right, threshold)
            quality = _f1(data, keep, a_rows[plain.left], b_rows[plain.right])
            print(f"| {threshold} | {len(plain)} | {quality.precision:.4f} "
                  f"| {quality.recall:.4f} | {quality.f1:.4f} |", flush=True)
    rows = []
    for run in range(args.runs):
        kernel_started = time.perf_counter()
        plain = dice_candidates_native(left, right, args.threshold)
        kernel_s = time.perf_counter() - kernel_started
        result = link_on_two_servers(left, right, bits, args.threshold)
        order = np.lexsort((plain.right, plain.left))
        same = (np.array_equal(result["left"], plain.left[order])
                and np.array_equal(result["right"], plain.right[order]))
        if not same:
            raise AssertionError("two-server pairs differ from the plaintext kernel's")
        quality = _f1(data, keep, a_rows[result["left"]], b_rows[result["right"]])
        pairs = result["pairs"]
        servers = result["servers"]
        row = {"run": run, "pairs": pairs, "hits": len(result["left"]),
               "equal_to_kernel": same, "kernel_s": kernel_s,
               "wall_s": result["wall_s"],
               "prefetched": result["prefetch"],
               "offline_s_server1": servers[1]["offline_wall_s"],
               "online_s_per_server": max(s["online_wall_s"] for s in servers),
               "us_per_pair_per_server": 1e6 * max(s["online_wall_s"] for s in servers) / pairs,
               "bytes_per_pair_per_server": servers[0]["bytes_sent_to_peer"] / pairs,
               "rounds": servers[0]["rounds"],
               "dealer_bytes_per_pair": (result["dealer"]["bytes_to_server0"]
                                         + result["dealer"]["bytes_to_server1"]) / pairs,
               "dealer_compute_s": result["dealer"]["dealer_compute_s"],
               "share_MB_per_server": result["share_bytes_per_server"] / 1e6,
               "split_s": result["split_s"],
               "precision": quality.precision, "recall": quality.recall, "f1": quality.f1}
        row["slowdown_vs_kernel"] = row["online_s_per_server"] / kernel_s
        print(json.dumps(row), flush=True)
        rows.append(row)
    if not rows:
        return 0
    print(f"\n{args.dataset}: {len(left)} x {len(right)} records, {bits}-bit CLKs, "
          f"threshold {args.threshold}, median of {len(rows)} runs")
    print("| figure | median | runs |")
    print("|---|---|---|")
    for key in rows[0]:
        if key == "run":
            continue
        values = [r[key] for r in rows]
        median = statistics.median(values) if not isinstance(values[0], bool) else all(values)
        print(f"| {key} | {median:.4g} | {', '.join(f'{v:.4g}' for v in values)} |"
              if not isinstance(median, bool) else f"| {key} | {median} | |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks.two_server",
                                     description="Two share-holding servers and a dealer.")
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("dealer", help="serve one plan's correlated randomness")
    serve = roles.add_parser("serve", help="a share-holding matching server (one job)")
    serve.add_argument("--party", type=int, choices=(0, 1), required=True)
    bench = roles.add_parser("bench", help="encode, split, run on two servers, compare")
    bench.add_argument("--dataset", choices=("synthetic", "febrl4"), default="synthetic")
    bench.add_argument("--records", type=int, default=1000,
                       help="records per synthetic agency (two agencies are linked)")
    bench.add_argument("--threshold", type=float, default=0.8)
    bench.add_argument("--runs", type=int, default=3)
    bench.add_argument("--hardening", help="replace the shipped schema's hardening (JSON)")
    bench.add_argument("--json", help="also write every figure to this file")
    bench.add_argument("--sweep", type=float, nargs="+", metavar="T",
                       help="first print the F1 of the kernel's pairs at these thresholds")
    args = parser.parse_args(argv)
    return {"dealer": dealer_main, "serve": serve_main, "bench": bench_main}[args.role](args)


if __name__ == "__main__":
    raise SystemExit(main())
