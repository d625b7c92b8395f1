"""Re-identification attacks on our own CLKs, and what the protocol change against them costs.

    python -m bench.attacks table        # every hardening option x every attack, with F1
    python -m bench.attacks graph ...    # one graph-matching attack
    python -m bench.attacks frequency .. # one pattern-mining attack
    python -m bench.attacks shared ...   # Dice on secret-shared CLKs, measured

Modules: ``population`` (the plaintext register, the agency's CLKs and the
attacker's own encodings of her register), ``align`` (bootstrapped graph
alignment), ``graph`` (the graph-matching attack), ``frequency`` (pattern
mining), ``table`` (the measurement), ``secret_shared`` (the two-server
prototype). Written from the papers' descriptions; see docs/privacy.md.
"""
