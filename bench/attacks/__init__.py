"""Re-identification attacks on our encodings (see population, align, graph, frequency)."""
