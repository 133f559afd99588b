"""The image and the dev loop, as far as they can be checked without a container engine: the Dockerfile is a
multi-stage, non-root build whose entrypoint is `hyperfollow`; what it copies (after .dockerignore) is exactly
what a regular install needs; skaffold builds that image and deploys the chart it configures."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from k8s.conftest import CHART, REPO

from hyperfollow.operator.desired import RUN_AS_USER

pytestmark = pytest.mark.k8s

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS = sorted(set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()))


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, arg in instructions():
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, arg))
    return result


def test_multi_stage_slim_build() -> None:
    built = stages()
    assert len(built) >= 2
    args = dict(arg.split("=", 1) for op, arg in instructions() if op == "ARG" and "=" in arg)
    base = args.get("PYTHON_IMAGE", "")
    assert base.startswith("python:3.11") and "slim" in base  # the project's Python, slim
    final = built[-1]
    assert any(op == "COPY" and arg.startswith("--from=build") for op, arg in final)
    assert not any(op == "COPY" and not arg.startswith("--from") for op, arg in final)  # no sources in runtime


def test_runs_as_the_non_root_user_the_pods_ask_for() -> None:
    final = stages()[-1]
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] == str(RUN_AS_USER) != "0"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == RUN_AS_USER
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written outside /tmp


def test_entrypoint_is_the_hyperfollow_command() -> None:
    final = stages()[-1]
    (entrypoint,) = [arg for op, arg in final if op == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["hyperfollow"]
    assert PYPROJECT["project"]["scripts"]["hyperfollow"] == "hyperfollow.core.cli:main"


def test_every_package_folder_is_copied() -> None:
    copied = {arg.split()[0].rstrip("/") for op, arg in stages()[0] if op == "COPY"}
    copied |= {part for op, arg in stages()[0] if op == "COPY" for part in arg.split()[:-1]}
    missing = [folder for folder in PACKAGE_DIRS if folder not in copied]
    assert not missing, f"the Dockerfile does not copy {missing}"
    assert {"pyproject.toml", "README.md"} <= copied


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching for the paths we care about (later `!` lines re-include)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *[str(Path(*Path(path).parts[:i])) for i in range(1, len(Path(path).parts))]]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/")) for c in candidates):
            result = not negate
    return result


def docker_context(tmp: Path) -> Path:
    """What `COPY` would see: the repository minus .dockerignore, limited to what the Dockerfile copies."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = tmp / "context"
    for name in ["pyproject.toml", "README.md", *PACKAGE_DIRS]:
        source = REPO / name
        if source.is_file():
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, context / name)
            continue
        for file in source.rglob("*"):
            relative = file.relative_to(REPO)
            if file.is_file() and not ignored(str(relative), patterns):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, context / relative)
    return context


def test_dockerignore_keeps_sources_and_drops_the_rest() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for kept in ["pyproject.toml", "README.md", *PACKAGE_DIRS, "operator/handlers.py", "core/db/models.py"]:
        assert not ignored(kept, patterns), kept
    for dropped in [".venv", ".git", ".hyperfollow", "tests/conftest.py", "core/__pycache__/x.pyc",
                    "bench/results/x.json", ".env"]:
        assert ignored(dropped, patterns), dropped


def test_the_copied_sources_install_every_module(tmp_path: Path) -> None:
    """`pip install .` in the build stage: setuptools' build of the copied tree has every module and data file
    of the package folders (operator/ included, although it has no __init__.py)."""
    context = docker_context(tmp_path)
    out = tmp_path / "lib"
    done = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                           "--build-lib", str(out)], cwd=context, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    built = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    expected = set()
    for package, folder in mapping.items():
        for file in (REPO / folder).rglob("*.py"):
            if "__pycache__" not in file.parts:
                expected.add(str(Path(*package.split(".")) / file.relative_to(REPO / folder)))
    assert expected and expected <= built, sorted(expected - built)[:10]
    assert "hyperfollow/operator/handlers.py" in built
    migrations = [name for name in built if "migrations/versions" in name]
    assert migrations  # Alembic's revisions travel with the package


def test_skaffold_builds_the_image_and_deploys_the_chart(tmp_path: Path) -> None:
    config: dict[str, Any] = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    (artifact,) = config["build"]["artifacts"]
    assert artifact["image"] == "hyperfollow" and artifact["docker"]["dockerfile"] == "Dockerfile"
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]) == CHART
    values: dict[str, Any] = {}
    for path in release["valuesFiles"]:
        values.update(yaml.safe_load((REPO / path).read_text()))
    templates = release["setValueTemplates"]
    assert templates == {"image.repository": "{{.IMAGE_REPO_hyperfollow}}", "image.tag": "{{.IMAGE_TAG_hyperfollow}}"}
    values["image"] = {**values.get("image", {}), "repository": "hyperfollow", "tag": "dev"}
    files = helm.Chart.load(str(CHART)).render(values, name=release["name"], namespace="default")
    services = [doc for path, text in files.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text)
                if doc and doc.get("kind") == "Service"]
    (forward,) = config["portForward"]
    assert forward["resourceName"] in {s["metadata"]["name"] for s in services}
    assert forward["port"] == 8000
