"""Re-identification attacks on our own CLKs, and what the protocol change against them costs.

    python -m bench.attacks table        # every hardening option x every attack, with F1
    python -m bench.attacks graph ...    # one graph-matching attack
    python -m bench.attacks frequency .. # one pattern-mining attack
    python -m bench.attacks shared ...   # two-server mode's cost as files grow
    python -m bench.attacks learned ...  # the attacks on what a two-server server learns
    python -m bench.attacks.two_server bench  # dealer + two servers as real processes

Modules: ``population`` (the plaintext register, the agency's CLKs and the
attacker's own encodings of her register), ``align`` (bootstrapped graph
alignment), ``graph`` (the graph-matching attack), ``frequency`` (pattern
mining), ``table`` (the measurement); for two-server mode (``linkage.mpc``):
``secret_shared`` (its cost), ``learned`` (the attacks on what a server learns),
``two_server`` (the dealer and the two servers as processes). Written from the papers'
descriptions; see docs/privacy.md.
"""
