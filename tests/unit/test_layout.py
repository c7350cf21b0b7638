"""The test helpers stand on their own: the fakes and the daemon harness in ``tests/support/``
import neither the fixtures module nor test files, so ``bench/`` can use them outside pytest."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_helpers_and_benchmarks_import_no_fixtures_and_no_tests():
    offenders = {}
    for path in sorted([*(ROOT / "tests" / "support").glob("*.py"), *(ROOT / "bench").glob("*.py")]):
        bad = sorted(name for name in imported_modules(path)
                     if name == "tests.conftest" or name.startswith(("tests.conftest.", "tests.unit", "tests.e2e"))
                     or name.split(".")[-1].startswith("test_"))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_bench_runs_the_daemon_through_the_tests_harness():
    assert "tests.support.daemon" in imported_modules(ROOT / "bench" / "harness.py")
