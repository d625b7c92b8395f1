"""The distribution installs only `linkage` and `linkage_service`: no top-level `server`,
`client` or `protos` that would collide with another project's package of the same name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _wheel_files(tmp_path: Path) -> list[str]:
    # Built from a copy, so that a stale build/ folder in the checkout cannot add or hide files.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".bench-venv", ".git", "build", "*.egg-info", "__pycache__", "demo-output"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", str(source), "-w", str(tmp_path)], check=True)
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_only_the_two_namespaces_and_every_source_module(tmp_path):
    names = _wheel_files(tmp_path)
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(
        (".dist-info", ".data"))}
    assert top_level == {"linkage", "linkage_service"}
    # Every module of the edges is in the wheel under the namespace, nothing left behind.
    for folder in ("server", "client", "protos"):
        for source in (ROOT / folder).rglob("*.py"):
            relative = source.relative_to(ROOT).as_posix()
            assert f"linkage_service/{relative}" in names, f"{relative} is not packaged"
    assert "linkage_service/protos/linkage/v1/linkage.proto" in names
    assert any(name.startswith("linkage_service/client/console/templates/") for name in names)


def test_the_commands_point_at_modules_the_wheel_holds(tmp_path):
    names = _wheel_files(tmp_path)
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(next(tmp_path.glob("*.whl"))) as archive:
        text = archive.read(entry_points).decode("utf-8")
    commands = dict(line.split(" = ") for line in text.splitlines() if " = " in line)
    assert set(commands) >= {"linkage", "linkage-server"}
    for target in commands.values():
        module = target.split(":")[0]
        assert f"{module.replace('.', '/')}.py" in names, f"{target} is not in the wheel"
