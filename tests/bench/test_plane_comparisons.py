"""bench.plane_comparisons prints a row per layout, each checked against plaintext."""

from bench import plane_comparisons


def test_the_table_has_every_layout_and_all_are_exact(capsys):
    assert plane_comparisons.main(["--values", "3000", "--repeats", "1"]) == 0
    table = capsys.readouterr().out
    for name, _, _ in plane_comparisons.LAYOUTS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert row.endswith("| yes |")

