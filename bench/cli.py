"""`hyperfollow bench [NAME ...]`: run benchmarks, print their figures, write `bench/results/NAME.json`.

A benchmark is a module `hyperfollow.bench.bench_<name>` with `run(quick: bool) -> dict`: it measures our
way and a baseline in the same run (the ratio is the point) and returns its figures; this runner adds the
machine and time, prints them and writes the JSON file.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

__all__ = ["available", "register", "run_benchmarks"]

RESULTS = Path(__file__).parent / "results"


def available() -> list[str]:
    import hyperfollow.bench as package

    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(package.__path__)
                  if m.name.startswith("bench_"))


def run_benchmarks(names: list[str], quick: bool = False, results_dir: Path = RESULTS) -> dict[str, dict]:
    results: dict[str, dict] = {}
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(f"hyperfollow.bench.bench_{name}")
        started = time.perf_counter()
        figures = module.run(quick=quick)
        record = {
            "benchmark": name,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
            "quick": quick,
            "seconds": round(time.perf_counter() - started, 2),
            "figures": figures,
        }
        typer.echo(json.dumps(record, indent=2, default=str))
        (results_dir / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        results[name] = record
    return results


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(names: list[str] = typer.Argument(None, help="benchmarks to run (default: all)"),
              quick: bool = typer.Option(False, help="smaller workloads, for a smoke run")) -> None:
        """Run benchmarks; figures go to stdout and bench/results/NAME.json."""
        known = available()
        chosen = names or known
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise typer.BadParameter(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
        if not chosen:
            typer.echo("no benchmarks yet", err=True)
            raise typer.Exit(3)
        run_benchmarks(chosen, quick=quick)
