"""Checks of tools/mutate.py on a tiny known example (not part of the suite or CI):

    .venv/bin/python -m pytest -q tools/test_mutate.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutate  # noqa: E402

TOOL = Path(__file__).resolve().parent / "mutate.py"

CORE = textwrap.dedent('''\
    """A docstring with 1 < 2 in it."""
    import logging

    __all__ = ["mean", "is_adult", "count_up", "tail", "rest"]
    LIMIT: int = 18
    log = logging.getLogger(__name__)


    def mean(values: list[float]) -> float:
        if not values:
            return 0.0
        return sum(values) / len(values)


    def is_adult(age: int) -> bool:
        log.info("checking %s", age + 1)
        return age >= LIMIT


    def count_up(n: int) -> int:
        i = 0
        while i < n:
            i += 1
        return i


    def tail(items: list[int], n: int) -> list[int]:
        if n == 0 or items is None:
            raise ValueError(f"bad {n + 1}")
        start = len(items) - n
        return items[start:]


    def rest(items: list[int]) -> list[int]:
        return items[1:]


    def show(x: int) -> None:
        print(x * 2)
    ''')

WEAK = textwrap.dedent('''\
    from tiny.core import count_up, is_adult, mean, rest, tail

    def test_weak():
        assert mean([2.0, 4.0]) == 3.0
        assert is_adult(30) is True
        assert count_up(3) == 3
        assert tail([1, 2, 3, 4], 2) == [3, 4]
    ''')

STRONG = WEAK.replace("def test_weak", "def test_strong") + textwrap.dedent('''\
        assert mean([]) == 0.0
        assert is_adult(18) and not is_adult(17)
        assert count_up(0) == 0
        assert rest([1, 2, 3]) == [2, 3]
        try:
            tail(None, 1)
        except ValueError:
            pass
        else:
            raise AssertionError
        try:
            tail([1], 0)
        except ValueError:
            pass
        else:
            raise AssertionError
    ''')


def mutations(tmp_path: Path) -> set[tuple[int, str]]:
    (tmp_path / "src" / "tiny").mkdir(parents=True, exist_ok=True)
    (tmp_path / "src" / "tiny" / "core.py").write_text(CORE)
    return {(m.line, m.description) for m in mutate.collect(tmp_path, "src/tiny/core.py", None)}


def test_the_expected_mutants_and_nothing_in_docstrings_annotations_all_logging_or_messages(tmp_path):
    assert mutations(tmp_path) == {
        (5, "18 -> 19"),                                   # LIMIT: the value, not the annotation
        (10, "not x -> x"), (11, "0.0 -> 1.0"), (12, "/ -> *"), (12, "return ... -> return None"),
        (17, "return ... -> return None"), (17, ">= -> >"),  # not the log.info line above it
        (21, "0 -> 1"), (22, "< -> <="), (23, "+= -> -="), (23, "1 -> 2"),
        (24, "return ... -> return None"),
        (28, "or -> and"), (28, "== -> !="), (28, "0 -> 1"), (28, "is -> is not"),  # not the raise's f-string
        (30, "- -> +"), (31, "return ... -> return None"), (31, "[start] -> [start + 1]"),
        (35, "return ... -> return None"), (35, "1 -> 2"),
    }                                                      # nothing in show(): print only


def test_every_mutant_compiles_and_changes_one_line(tmp_path):
    mutations(tmp_path)
    for m in mutate.collect(tmp_path, "src/tiny/core.py", None):
        assert mutate.compiles(tmp_path, m)
        assert m.original != m.mutated


def test_named_scope_and_sampling_are_deterministic_and_stratified(tmp_path):
    mutations(tmp_path)
    only = {(m.line, m.description) for m in mutate.collect(tmp_path, "src/tiny/core.py", {"count_up"})}
    assert only == {(21, "0 -> 1"), (22, "< -> <="), (23, "+= -> -="), (23, "1 -> 2"),
                    (24, "return ... -> return None")}
    by_file = {"a": mutate.collect(tmp_path, "src/tiny/core.py", None),
               "b": mutate.collect(tmp_path, "src/tiny/core.py", {"mean"})}
    ok = lambda m: True  # noqa: E731
    first = [m.ident for m in mutate.sample(by_file, 6, 1, ok)]
    assert first == [m.ident for m in mutate.sample(by_file, 6, 1, ok)]
    assert first != [m.ident for m in mutate.sample(by_file, 6, 2, ok)]
    assert len(first) == 6


def run_tool(tmp_path: Path, test_file: str, body: str) -> dict:
    mutations(tmp_path)
    (tmp_path / "src" / "tiny" / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "tests" / test_file).write_text(body)
    out = tmp_path / f"{test_file}.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--root", str(tmp_path), "--paths", "src/tiny/core.py",
                           "--tests", f"tests/{test_file}", "--max", "0", "--timeout", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("test_file, body, survivors", [
    # The weak test never calls mean([]), is_adult at 18, count_up(0), tail's error paths or rest().
    ("test_weak.py", WEAK, {(5, "18 -> 19"), (11, "0.0 -> 1.0"), (17, ">= -> >"), (21, "0 -> 1"),
                            (28, "or -> and"), (28, "0 -> 1"), (35, "return ... -> return None"),
                            (35, "1 -> 2")}),
    ("test_strong.py", STRONG, set()),
])
def test_a_weak_test_lets_the_boundary_mutants_survive_and_a_strong_one_kills_all(tmp_path, test_file, body,
                                                                                  survivors):
    result = run_tool(tmp_path, test_file, body)
    status = {(r["line"], r["description"]): r["status"] for r in result["results"]}
    assert {k for k, v in status.items() if v == "survived"} == survivors
    assert status[(23, "+= -> -=")] == "timeout"            # an endless loop counts as killed
    assert result["score"] == pytest.approx(1 - len(survivors) / len(status), abs=1e-3)
