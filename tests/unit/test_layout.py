"""The package layout: hyperfollow.* maps the top-level folders; `operator` stays the standard library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_operator_from_repo_root_is_the_standard_library(tmp_path: Path) -> None:
    """`python -m X` puts the repo root first on sys.path *before* the standard library imports `operator`
    (runpy -> collections -> operator), so a regular package there would break every `python -m` run from
    the root, pip and pytest included. `operator/` is therefore a namespace portion (no __init__.py)."""
    code = "import operator, sys; print(operator.__file__); print(operator.itemgetter(1)([5, 6]))"
    (tmp_path / "probe_operator.py").write_text(code)
    commands = ([sys.executable, "-c", code], [sys.executable, "-I", "-c", code],
                [sys.executable, "-m", "probe_operator"])
    for cmd in commands:
        env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        path, value = done.stdout.split()
        assert not path.startswith(str(REPO)), path
        assert value == "6"
    assert not (REPO / "operator" / "__init__.py").exists()


def test_our_operator_imports_under_the_namespace() -> None:
    import hyperfollow.operator as ours
    import hyperfollow.operator.cli as cli

    assert REPO / "operator" in [Path(p).resolve() for p in ours.__path__]
    assert Path(cli.__file__).resolve().parent == REPO / "operator"


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    listed = set(config["packages"])
    found = set()
    for name, folder in mapping.items():
        found.add(name)  # the top folder, even without __init__.py (operator/)
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *relative.parts]))
    assert found == listed
