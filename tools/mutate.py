#!/usr/bin/env python3
"""Mutation check of specwise's pure core: which small bugs would the test suite not notice?

Each mutant is one small change to one source file (a comparison, an operator, a constant, a
boolean, a `not`, a return value, a slice bound). The selected tests run against it; a mutant
the tests still pass on "survived" and points at a missing test. Not part of CI: `make mutate`.

Speed: the heavy third-party libraries are imported once here; each mutant then runs in a
forked child that puts a private copy of src/ (the one file rewritten) first on sys.path and
calls pytest.main(... -x) in-process on the selected test files that load the mutated module
(those that import it themselves first, the quickest first), so a mutant that is killed is
usually killed within a second or two.

    python tools/mutate.py                         # the default core, --max 150 --seed 0
    python tools/mutate.py --max 150 --seed 1 --json mutate.json
    python tools/mutate.py --paths src/specwise/stats.py --tests "tests/test_load_units.py" --max 0
    python tools/mutate.py --list                  # the sampled mutants only, nothing run

Standard library and pytest only.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import gc
import importlib
import importlib.util
import io
import json
import os
import py_compile
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path

T0 = time.monotonic()

# What is mutated by default, relative to the repository root: files, directories (every .py under
# them), or `file.py::name,name` for only those top-level functions/classes (or Class.method) of a
# file. Edit this list when modules move.
DEFAULT_PATHS = [
    "src/specwise/thresholds.py",
    "src/specwise/check.py",
    "src/specwise/metrics.py",
    "src/specwise/results/",
    "src/specwise/workload/",
    "src/specwise/plan/",
    "src/specwise/analysis/",
    "src/specwise/verdict/",
    "src/specwise/experiment/findings.py",
    "src/specwise/experiment/controls.py",
    # the load generator's pure part: the streaming protocol (the client, driver and scrape do network I/O)
    "src/specwise/load/protocol.py",
]

# The pytest selection run against each mutant: every fast, in-process test. Left out: the
# engine/slow marks (a real vLLM), the fault-server tests (a live HTTP server, multi-second stalls),
# the launcher tests (stand-in processes), the engine-package tests (torch/vLLM; they test
# specwise.engine, which is not mutated), the Chromium test and the tests that spawn
# `python -m specwise` subprocesses.
DEFAULT_TESTS = " ".join([
    "tests", "-m", shlex.quote("not engine and not slow"),
    "--ignore=tests/test_bench_faults.py",
    "--ignore=tests/test_engine_server.py",
    "--ignore=tests/test_engine_pair.py",
    "--ignore=tests/test_engine_plugin.py",
    "--ignore=tests/test_engine_real.py",
    "--ignore=tests/test_experiment_real.py",
    "--ignore=tests/test_verdict_groundtruth.py",
    "--ignore=tests/test_house.py",
    "--deselect=tests/test_findings.py::test_report_opens_in_chromium_with_plots_and_no_console_error",
    "--deselect=tests/test_cli_plan.py::test_console_script_runs",
    "--deselect=tests/test_experiment.py::test_cli_bad_file_is_one_line",
    "--deselect=tests/test_experiment.py::test_cli_unreachable_server_is_one_line_naming_it",
])

DEFAULT_MAX = 150        # about 2 s a mutant on 2 shared cores: ~5 minutes (--max 0: all, ~40 minutes)

# Imported once in the parent so that every forked child has them already. Missing ones are skipped.
PRELOAD = ["numpy", "pydantic", "jinja2", "matplotlib", "matplotlib.pyplot", "prometheus_client",
           "prometheus_client.parser", "yaml", "rich", "rich.console", "rich.table", "typer",
           "typer.testing", "click", "httpx", "packaging.version", "torch", "transformers"]

PYTEST_FLAGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]

# Calls whose arguments are only logged or printed (print(), log.info(), console.print(),
# warnings.warn(), "...".format()): not mutated.
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
LOG_RECEIVERS = {"log", "logger", "logging", "_log", "_logger", "LOG", "LOGGER", "warnings", "console"}
# Keyword arguments that only change how something is shown: not mutated.
DISPLAY_KEYWORDS = {"repr", "indent", "width", "flush", "ensure_ascii", "sort_keys", "end", "sep"}


# ---------------------------------------------------------------------------------------------
# Mutants


@dataclass
class Mutant:
    path: str                      # relative to the root, e.g. src/specwise/stats.py
    line: int
    kind: str                      # compare, arith, augassign, number, bool, boolop, not, return, slice
    description: str               # e.g. "< -> <="
    edits: list[tuple[int, int, str]]   # (start, end, text) in character offsets of the source
    original: str = ""             # the source line(s) before and after
    mutated: str = ""

    @property
    def ident(self) -> str:
        return f"{self.path}:{self.line}:{self.edits[0][0]}:{self.kind}:{self.description}"


COMPARE_SWAP = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
                ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"),
                ast.IsNot: ("is not", "is"), ast.In: ("in", "not in"), ast.NotIn: ("not in", "in")}
ARITH_SWAP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
              ast.FloorDiv: ("//", "*")}


class Source:
    """A file's text with conversions from ast positions (line, UTF-8 column) to character offsets,
    and its tokens."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.tokens: list[tuple[int, int, int, str]] = []     # (start, end, type, string)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            self.tokens.append((self.pos(tok.start[0], tok.start[1], chars=True),
                                self.pos(tok.end[0], tok.end[1], chars=True), tok.type, tok.string))
        self.token_starts = [t[0] for t in self.tokens]

    def pos(self, line: int, col: int, chars: bool = False) -> int:
        if line - 1 >= len(self.lines):
            return len(self.text)
        if not chars:
            col = len(self.lines[line - 1].encode()[:col].decode(errors="replace"))
        return self.starts[line - 1] + col

    def start(self, node: ast.AST) -> int:
        return self.pos(node.lineno, node.col_offset)

    def end(self, node: ast.AST) -> int:
        return self.pos(node.end_lineno, node.end_col_offset)

    def tokens_between(self, a: int, b: int) -> list[tuple[int, int, int, str]]:
        i = bisect.bisect_left(self.token_starts, a)
        out = []
        while i < len(self.tokens) and self.tokens[i][0] < b:
            out.append(self.tokens[i])
            i += 1
        return out

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)))


def _is_literal_seq(node: ast.AST) -> bool:
    return isinstance(node, (ast.List, ast.Tuple, ast.ListComp)) or _is_str(node)


def _is_log_call(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "print"
    if isinstance(func, ast.Attribute):
        if func.attr == "format" and _is_str(func.value):
            return True
        receiver = func.value
        name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", None)
        if name in LOG_RECEIVERS and (func.attr in LOG_METHODS or func.attr == "print" or name == "warnings"):
            return True
    return False


def _returns_none(fn: ast.AST) -> bool:
    returns = getattr(fn, "returns", None)
    return isinstance(returns, ast.Constant) and returns.value is None


class Collector:
    """Walks one module's AST and records every mutation in scope."""

    def __init__(self, rel: str, src: Source, tree: ast.Module, names: set[str] | None) -> None:
        self.rel, self.src, self.tree, self.names = rel, src, tree, names
        self.mutants: list[Mutant] = []
        self.fn_stack: list[ast.AST] = []

    # -- recording
    def add(self, node: ast.AST, kind: str, description: str, edits: list[tuple[int, int, str]]) -> None:
        self.mutants.append(Mutant(self.rel, getattr(node, "lineno", 0), kind, description, edits))

    def token_span(self, a: int, b: int, words: tuple[str, ...]) -> tuple[int, int] | None:
        """The span of the operator tokens `words` (in order) between offsets a and b."""
        toks = [t for t in self.src.tokens_between(a, b) if t[3] not in ("(", ")")]
        strings = tuple(t[3] for t in toks)
        for i in range(len(toks) - len(words) + 1):
            if strings[i:i + len(words)] == words:
                return toks[i][0], toks[i + len(words) - 1][1]
        return None

    # -- traversal
    def in_scope(self, qualname: list[str]) -> bool:
        if self.names is None:
            return True
        dotted = ".".join(qualname)
        return any(dotted == n or dotted.startswith(n + ".") or n.startswith(dotted + ".") for n in self.names)

    def run(self) -> list[Mutant]:
        self.body(self.tree.body, [], top=True)
        return self.mutants

    def body(self, stmts: list[ast.stmt], qualname: list[str], top: bool = False) -> None:
        for stmt in stmts:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = [*qualname, stmt.name]
                if not self.in_scope(inner):
                    continue
                if stmt.name in ("__repr__", "__str__", "__rich__", "__format__"):
                    continue
                self.defaults(stmt, inner)
                self.fn_stack.append(stmt)
                self.body(stmt.body, inner)
                self.fn_stack.pop()
                continue
            if top and self.names is not None:
                continue        # only the named definitions of this file
            self.stmt(stmt, qualname)

    def defaults(self, stmt: ast.AST, qualname: list[str]) -> None:
        """Default argument values (not the annotations, not the decorators)."""
        if isinstance(stmt, ast.ClassDef):
            return
        for value in [*stmt.args.defaults, *[d for d in stmt.args.kw_defaults if d is not None]]:
            self.expr(value)

    def stmt(self, stmt: ast.stmt, qualname: list[str]) -> None:
        if isinstance(stmt, ast.Expr) and _is_str(stmt.value):
            return                                         # docstring or bare string
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _is_log_call(stmt.value):
            return
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass, ast.Break, ast.Continue, ast.Global,
                             ast.Nonlocal)):
            return
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
            return
        if isinstance(stmt, ast.If) and self.is_guard(stmt.test):
            return
        if isinstance(stmt, ast.Raise):
            return                                         # the message, not the condition that raises
        if isinstance(stmt, ast.Assert):
            self.expr(stmt.test)
            return
        if isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.expr(stmt.value)
            return
        if isinstance(stmt, ast.Return):
            if stmt.value is not None:
                self.return_none(stmt)
                self.expr(stmt.value)
            return
        if isinstance(stmt, ast.AugAssign):
            swap = ARITH_SWAP.get(type(stmt.op))
            if swap and not _is_literal_seq(stmt.value):
                span = self.token_span(self.src.end(stmt.target), self.src.start(stmt.value), (swap[0] + "=",))
                if span:
                    self.add(stmt, "augassign", f"{swap[0]}= -> {swap[1]}=", [(*span, swap[1] + "=")])
            self.expr(stmt.value)
            return
        # Generic statement: its expressions, then nested statement lists.
        for name, value in ast.iter_fields(stmt):
            if name in ("targets", "target") and isinstance(stmt, (ast.Assign, ast.For, ast.AsyncFor)):
                continue
            if name in ("type_comment", "decorator_list", "returns", "annotation"):
                continue
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self.body(value, qualname)
                else:
                    for item in value:
                        if isinstance(item, ast.expr):
                            self.expr(item)
                        elif isinstance(item, ast.excepthandler):
                            self.body(item.body, qualname)
                        elif isinstance(item, ast.withitem):
                            self.expr(item.context_expr)
                        elif isinstance(item, ast.match_case):
                            self.body(item.body, qualname)
            elif isinstance(value, ast.expr):
                self.expr(value)

    @staticmethod
    def is_guard(test: ast.expr) -> bool:
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            return True
        return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__")

    def return_none(self, stmt: ast.Return) -> None:
        value = stmt.value
        if isinstance(value, ast.Constant):
            return                                         # constants are mutated as constants
        fn = self.fn_stack[-1] if self.fn_stack else None
        if fn is None or isinstance(fn, ast.ClassDef) or _returns_none(fn) or fn.name == "__init__":
            return
        self.add(stmt, "return", "return ... -> return None",
                 [(self.src.start(value), self.src.end(value), "None")])

    def expr(self, node: ast.expr) -> None:
        if isinstance(node, ast.JoinedStr):
            return                                         # f-string text and its format-only values
        if isinstance(node, ast.Call) and _is_log_call(node):
            return
        if isinstance(node, ast.Lambda):
            self.expr(node.body)                           # not its arguments' defaults
            return
        if isinstance(node, ast.Compare):
            self.compare(node)
        elif isinstance(node, ast.BinOp):
            swap = ARITH_SWAP.get(type(node.op))
            if swap and not (_is_literal_seq(node.left) or _is_literal_seq(node.right)):
                span = self.token_span(self.src.end(node.left), self.src.start(node.right), (swap[0],))
                if span:
                    self.add(node, "arith", f"{swap[0]} -> {swap[1]}", [(*span, swap[1])])
        elif isinstance(node, ast.BoolOp):
            word, other = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            edits = []
            for left, right in zip(node.values, node.values[1:]):
                span = self.token_span(self.src.end(left), self.src.start(right), (word,))
                if span:
                    edits.append((*span, other))
            if len(edits) == len(node.values) - 1:
                self.add(node, "boolop", f"{word} -> {other}", edits)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.add(node, "not", "not x -> x", [(self.src.start(node), self.src.start(node.operand), "")])
        elif isinstance(node, ast.Constant):
            self.constant(node)
        elif isinstance(node, ast.Slice):
            for bound in (node.lower, node.upper):
                if isinstance(bound, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
                    a, b = self.src.start(bound), self.src.end(bound)
                    text = self.src.text[a:b]
                    self.add(bound, "slice", f"[{text}] -> [{text} + 1]", [(a, b, f"{text} + 1")])
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child)
            elif isinstance(child, ast.comprehension):
                self.expr(child.iter)
                for cond in child.ifs:
                    self.expr(cond)
            elif isinstance(child, ast.keyword) and child.arg not in DISPLAY_KEYWORDS:
                self.expr(child.value)

    def compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAP.get(type(op))
            if not swap:
                continue
            span = self.token_span(self.src.end(operands[i]), self.src.start(operands[i + 1]),
                                   tuple(swap[0].split()))
            if span:
                self.add(node, "compare", f"{swap[0]} -> {swap[1]}", [(*span, swap[1])])

    def constant(self, node: ast.Constant) -> None:
        value = node.value
        a, b = self.src.start(node), self.src.end(node)
        if isinstance(value, bool):
            self.add(node, "bool", f"{value} -> {not value}", [(a, b, str(not value))])
        elif isinstance(value, int):
            self.add(node, "number", f"{value} -> {value + 1}", [(a, b, str(value + 1))])
        elif isinstance(value, float):
            new = 1.0 if value == 0.0 else value * 0.5
            self.add(node, "number", f"{self.src.text[a:b]} -> {new!r}", [(a, b, repr(new))])


def apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def parse_path_spec(spec: str) -> tuple[str, set[str] | None]:
    if "::" in spec:
        path, names = spec.split("::", 1)
        return path, {n.strip() for n in names.split(",") if n.strip()}
    return spec, None


def expand_paths(root: Path, specs: list[str]) -> list[tuple[str, set[str] | None]]:
    out: dict[str, set[str] | None] = {}
    for spec in specs:
        path, names = parse_path_spec(spec)
        full = root / path
        if full.is_dir():
            files = sorted(p for p in full.rglob("*.py") if "__pycache__" not in p.parts)
        elif full.is_file():
            files = [full]
        else:
            sys.exit(f"mutate: no such path: {path}")
        for f in files:
            rel = f.relative_to(root).as_posix()
            if rel in out and (out[rel] is None or names is None):
                out[rel] = None
            elif rel in out:
                out[rel] = out[rel] | names
            else:
                out[rel] = names
    return list(out.items())


def collect(root: Path, rel: str, names: set[str] | None) -> list[Mutant]:
    """Every mutation in scope in one file (not yet checked to compile: see `compiles`)."""
    text = (root / rel).read_text()
    tree = ast.parse(text)
    src = Source(text)
    seen: set[str] = set()
    mutants = []
    for m in Collector(rel, src, tree, names).run():
        first = min(e[0] for e in m.edits)
        last = max(e[1] for e in m.edits)
        lo, hi = src.line_of(first), src.line_of(max(first, last - 1))
        m.line = lo                                        # the line of the change, not of its statement
        if m.ident in seen:
            continue
        seen.add(m.ident)
        mutated = apply(text, m.edits)
        more = " ..." if hi > lo else ""
        m.original = src.lines[lo - 1].strip() + more
        m.mutated = mutated.splitlines()[lo - 1].strip() + (more if m.kind != "return" else "")
        mutants.append(m)
    return mutants


def compiles(root: Path, m: Mutant, _texts: dict[str, str] = {}) -> bool:
    if m.path not in _texts:
        _texts[m.path] = (root / m.path).read_text()
    try:
        compile(apply(_texts[m.path], m.edits), m.path, "exec", ast.PyCF_ONLY_AST)
    except SyntaxError:
        return False
    return True


def sample(mutants_by_file: dict[str, list[Mutant]], limit: int, seed: int, valid) -> list[Mutant]:
    """Up to `limit` mutants that pass `valid`, deterministic for a seed, stratified: each file
    gets a share proportional to its mutant count (largest remainder, at least one each)."""
    files = sorted(f for f, v in mutants_by_file.items() if v)
    total = sum(len(mutants_by_file[f]) for f in files)
    if limit <= 0 or limit >= total:
        quota = {f: len(mutants_by_file[f]) for f in files}
    else:
        quota = {f: 0 for f in files}
        if limit < len(files):
            for f in random.Random(seed).sample(files, limit):
                quota[f] = 1
        else:
            for f in files:
                quota[f] = 1
            rest = limit - len(files)
            spare = {f: len(mutants_by_file[f]) - 1 for f in files}
            pool = sum(spare.values())
            exact = {f: rest * spare[f] / pool for f in files}
            for f in files:
                quota[f] += int(exact[f])
            left = limit - sum(quota.values())
            for f in sorted(files, key=lambda f: (-(exact[f] - int(exact[f])), f))[:left]:
                quota[f] += 1
    out = []
    for f in files:
        candidates = list(mutants_by_file[f])
        random.Random(f"{seed}:{f}").shuffle(candidates)
        taken = 0
        for m in candidates:
            if taken == quota[f]:
                break
            if valid(m):
                out.append(m)
                taken += 1
    return sorted(out, key=lambda m: (m.path, m.line, m.edits[0][0], m.kind, m.description))


# ---------------------------------------------------------------------------------------------
# Running


def module_name(rel: str) -> str:
    parts = Path(rel).with_suffix("").parts
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def split_tests(root: Path, args: list[str]) -> tuple[list[str], list[str]]:
    """The selection's test files (directories expanded, --ignore applied) and its other arguments."""
    ignores, options, files = set(), [], []
    takes_value = {"-m", "-k", "-p", "-o", "--ignore", "--deselect", "--rootdir", "-c", "--confcutdir"}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            value = arg.split("=", 1)[1] if "=" in arg else None
            if value is None and name in takes_value and i + 1 < len(args):
                value = args[i + 1]
                i += 1
                options += [arg, value]
            else:
                options.append(arg)
            if name == "--ignore" and value:
                ignores.add((root / value).resolve())
        else:
            path = root / arg.split("::")[0]
            if path.is_dir():
                files += [p.relative_to(root).as_posix() for p in sorted(path.rglob("test_*.py"))
                          if "__pycache__" not in p.parts]
            else:
                files.append(arg)
        i += 1
    files = [f for f in files if (root / f.split("::")[0]).resolve() not in ignores]
    return files, options


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """The modules of `package` that a file imports, anywhere in it (also inside functions)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == package:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)   # `from pkg import submodule`
    return out


class ImportGraph:
    """Which modules of the mutated package each test file loads, directly or through other modules."""

    def __init__(self, root: Path, package: str) -> None:
        self.root, self.package = root, package
        self.deps: dict[str, set[str]] = {}
        for path in (root / "src" / package).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            try:
                tree = ast.parse(path.read_text())
            except (SyntaxError, UnicodeDecodeError):
                continue
            self.deps[module_name(rel)] = imported_modules(tree, package)

    def closure(self, modules: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = [m for m in modules if m in self.deps]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            parts = m.split(".")
            parents = {".".join(parts[:i]) for i in range(1, len(parts))}   # importing a.b runs a/__init__
            todo += [d for d in self.deps.get(m, set()) | parents if d in self.deps and d not in seen]
        return seen

    def conftests(self, test_file: str) -> set[str]:
        """What the conftest.py files above a test file import: every test in it loads them."""
        out: set[str] = set()
        folder = (self.root / test_file.split("::")[0]).resolve().parent
        while True:
            conftest = folder / "conftest.py"
            if conftest.is_file():
                try:
                    out |= imported_modules(ast.parse(conftest.read_text()), self.package)
                except SyntaxError:
                    pass
            if folder == self.root or folder == folder.parent:
                return out
            folder = folder.parent

    def tiers(self, test_file: str) -> tuple[set[str], set[str]]:
        """The package's modules a test file imports itself, and all it loads (through them and
        its conftest.py files)."""
        try:
            tree = ast.parse((self.root / test_file.split("::")[0]).read_text())
        except (OSError, SyntaxError):
            return set(), set(self.deps)          # unreadable: assume it may load anything
        direct = imported_modules(tree, self.package)
        return direct, self.closure(direct | self.conftests(test_file))


def order_tests(graph: ImportGraph, files: list[str], module: str, everything: bool,
                seconds: dict[str, float]) -> list[str]:
    """The test files that import the mutated module, then those that load it through another
    module; with `everything`, then the rest too (which could only reach it by a dynamic import:
    none in this project). Within each group the quickest files (in the clean run) first."""
    tiers = {}
    for f in files:
        direct, loaded = graph.tiers(f)
        tiers[f] = 0 if module in direct else 1 if module in loaded else 2
    return sorted((f for f in files if everything or tiers[f] < 2),
                  key=lambda f: (tiers[f], seconds.get(f.split("::")[0], 0.0)))


def preload() -> list[str]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:
            pass
    # pytest's plugins, so that no child loads them again.
    try:
        from importlib.metadata import entry_points
        for ep in entry_points(group="pytest11"):
            try:
                ep.load()
            except Exception:
                pass
    except Exception:
        pass
    import _pytest.config  # noqa: F401
    import _pytest.python  # noqa: F401
    # Nothing allocated so far is ever garbage: the children's collections skip it (and leave its
    # pages shared with this process).
    gc.collect()
    gc.freeze()
    return loaded


def use_pycache(folder: Path) -> None:
    """Byte-code in a private folder: the venv's packages may be installed without it (pip
    --no-compile), PYTHONDONTWRITEBYTECODE may be set, and compiling them again in every child
    costs seconds. The mutated file's own byte-code is deleted before and after each mutant."""
    folder.mkdir(parents=True, exist_ok=True)
    sys.pycache_prefix = str(folder)
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)


class Workspace:
    """A private copy of the root's src/: .py files copied (and byte-compiled once), everything
    else linked. One file at a time is rewritten with a mutant and put back after."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = Path(tempfile.mkdtemp(prefix="specwise-mutate-"))
        self.src = self.dir / "src"
        self.basetemp = self.dir / "pytest-tmp"
        for path in sorted((root / "src").rglob("*")):
            if "__pycache__" in path.parts or path.is_dir() or ".egg-info" in path.as_posix():
                continue
            target = self.src / path.relative_to(root / "src")
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".py":
                shutil.copy2(path, target)
            else:
                target.symlink_to(path)
        import compileall
        compileall.compile_dir(str(self.src), quiet=2)

    def path(self, rel: str) -> Path:
        return self.dir / rel

    def write(self, rel: str, text: str) -> None:
        """Replace one file; its byte-code (which a child may have written for a mutant with the same
        size and mtime second) is deleted first."""
        target = self.path(rel)
        Path(importlib.util.cache_from_source(str(target))).unlink(missing_ok=True)
        target.write_text(text)

    def restore(self, rel: str) -> None:
        target = self.path(rel)
        self.write(rel, (self.root / rel).read_text())
        py_compile.compile(str(target), quiet=2)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if sys.pycache_prefix:      # the copy's byte-code, under the prefix at the copy's path
            shutil.rmtree(Path(sys.pycache_prefix + str(self.dir)), ignore_errors=True)


@dataclass
class Outcome:
    status: str                  # killed, survived, timeout, error
    seconds: float
    exit: int | None = None


class FileTimes:
    """A pytest plugin: seconds spent per test file (setup, call and teardown)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        key = report.nodeid.split("::")[0]
        self.seconds[key] = self.seconds.get(key, 0.0) + report.duration


def run_child(ws: Workspace, root: Path, pytest_args: list[str], timeout: float, log: Path,
              times: Path | None = None) -> Outcome:
    """pytest on the workspace's src/ in a forked child; `times`: write FileTimes there as JSON."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:                                           # the child: never returns
        code = 70
        try:
            os.setsid()
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            os.chdir(root)
            sys.path.insert(0, str(ws.src))
            os.environ["PYTHONPATH"] = os.pathsep.join([str(ws.src), os.environ.get("PYTHONPATH", "")])
            import pytest
            timer = FileTimes()
            code = int(pytest.main(pytest_args, plugins=[timer]))
            if times:
                times.write_text(json.dumps(timer.seconds))
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = start + timeout
    try:
        return _wait(pid, start, deadline)
    except BaseException:
        _kill(pid)
        raise


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _wait(pid: int, start: float, deadline: float) -> Outcome:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            seconds = time.monotonic() - start
            if os.WIFSIGNALED(status):
                return Outcome("killed", seconds, -os.WTERMSIG(status))
            code = os.WEXITSTATUS(status)
            if code == 0:
                return Outcome("survived", seconds, 0)
            if code in (1, 2, 3):      # tests failed; collection/import errors; pytest internal error
                return Outcome("killed", seconds, code)
            return Outcome("error", seconds, code)          # 4 usage error, 5 no tests, 70 our own failure
        if time.monotonic() > deadline:
            _kill(pid)
            return Outcome("timeout", time.monotonic() - start, None)
        time.sleep(0.02)


def table(results: list[dict], files: list[str]) -> str:
    rows = [("file", "mutants", "killed", "survived", "score")]
    tot_n = tot_k = tot_s = 0
    for f in files:
        rs = [r for r in results if r["path"] == f]
        if not rs:
            continue
        k = sum(r["status"] in ("killed", "timeout") for r in rs)
        s = sum(r["status"] == "survived" for r in rs)
        rows.append((f, str(len(rs)), str(k), str(s), f"{100 * k / (k + s):.0f}%" if k + s else "-"))
        tot_n, tot_k, tot_s = tot_n + len(rs), tot_k + k, tot_s + s
    score = f"{100 * tot_k / (tot_k + tot_s):.1f}%" if tot_k + tot_s else "-"
    rows.append(("total", str(tot_n), str(tot_k), str(tot_s), score))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if j == 0 or j == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                        help="files, directories or file.py::name,name to mutate (default: the pure core)")
    parser.add_argument("--tests", default=DEFAULT_TESTS,
                        help="the pytest selection, one shell-quoted string (default: the fast in-process tests)")
    parser.add_argument("--max", type=int, default=DEFAULT_MAX,
                        help="mutants to sample, 0 for all (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the sampled mutants and stop")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant before it counts as killed by timeout "
                             "(default: 5x the clean run, at least 60)")
    parser.add_argument("--all-tests", action="store_true",
                        help="run every selected test file on each mutant, not only those that import the "
                             "mutated module (directly, through other modules or their conftest.py)")
    parser.add_argument("--survivors-of", type=Path, default=None, metavar="JSON",
                        help="run only the mutants that survived in this earlier --json result (e.g. against a "
                             "wider --tests); --max and --seed then do not apply")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the project root holding src/ and the tests (default: this repository)")
    parser.add_argument("--keep-logs", type=Path, default=None, help="keep each mutant's pytest output in this folder")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    specs = args.paths or DEFAULT_PATHS
    by_file: dict[str, list[Mutant]] = {}
    for rel, names in expand_paths(root, specs):
        if not rel.startswith("src/"):
            sys.exit(f"mutate: {rel} is not under src/")
        by_file[rel] = collect(root, rel, names)
    files = sorted(by_file)
    if args.survivors_of:
        wanted = {r["id"] for r in json.loads(args.survivors_of.read_text())["results"] if r["status"] == "survived"}
        chosen = [m for f in files for m in by_file[f] if m.ident in wanted]
        if len(chosen) < len(wanted):
            print(f"mutate: {len(wanted) - len(chosen)} of those survivors are outside these --paths "
                  "(or the source has changed since)", flush=True)
    else:
        chosen = sample(by_file, args.max, args.seed, lambda m: compiles(root, m))
    total = sum(len(v) for v in by_file.values())
    how = f"survivors of {args.survivors_of}" if args.survivors_of else f"sampled (seed {args.seed})"
    print(f"mutate: {total} mutants in {len(files)} files; {len(chosen)} {how}", flush=True)
    if args.list:
        for m in chosen:
            print(f"{m.path}:{m.line}  [{m.kind}] {m.description}\n    - {m.original}\n    + {m.mutated}")
        return 0

    test_args = shlex.split(args.tests)
    test_files, options = split_tests(root, test_args)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "specwise-mutate" / "pycache"
    use_pycache(cache)
    loaded = preload()
    print(f"mutate: preloaded {', '.join(loaded) or 'nothing'} "
          f"({time.monotonic() - T0:.0f}s since start)", flush=True)
    ws = Workspace(root)
    logs = args.keep_logs
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    log = (logs or ws.dir) / "baseline.log"
    common = [*options, *PYTEST_FLAGS, f"--basetemp={ws.basetemp}"]
    results: list[dict] = []
    started = time.monotonic()
    clean_s = 0.0
    current: str | None = None
    try:
        times_file = ws.dir / "file-times.json"
        base = run_child(ws, root, [*test_files, *common], timeout=3600, log=log, times=times_file)
        if base.status != "survived":
            print(f"mutate: the tests fail without any mutant (exit {base.exit}); see the output below\n",
                  file=sys.stderr)
            print(log.read_text()[-6000:], file=sys.stderr)
            return 2
        clean_s = base.seconds
        # Generous: on a shared machine a mutant can take several times the clean run, and a false
        # timeout would count as a kill; an endless loop only costs this once.
        timeout = args.timeout or max(60.0, 5 * base.seconds)
        print(f"mutate: clean run {base.seconds:.1f}s; timeout per mutant {timeout:.0f}s", flush=True)
        file_seconds = json.loads(times_file.read_text()) if times_file.exists() else {}
        order_cache: dict[str, list[str]] = {}
        graph = ImportGraph(root, module_name(files[0]).split(".")[0]) if files else None
        for i, m in enumerate(chosen, 1):
            module = module_name(m.path)
            if module not in order_cache:
                order_cache[module] = order_tests(graph, test_files, module, args.all_tests, file_seconds)
            current = m.path
            ws.write(m.path, apply((root / m.path).read_text(), m.edits))
            log = (logs or ws.dir) / f"mutant-{i:04d}.log"
            if order_cache[module]:
                out = run_child(ws, root, [*order_cache[module], *common], timeout=timeout, log=log)
            else:
                out = Outcome("survived", 0.0, None)         # no selected test file loads the module
            ws.restore(m.path)
            current = None
            record = {**{k: v for k, v in asdict(m).items() if k != "edits"}, "id": m.ident,
                      "status": out.status, "exit": out.exit, "seconds": round(out.seconds, 2),
                      "test_files": len(order_cache[module])}
            results.append(record)
            where = f"{m.path}:{m.line}"
            print(f"[{i}/{len(chosen)}] {out.status:8s} {out.seconds:5.1f}s  {where}  [{m.kind}] {m.description}",
                  flush=True)
            if out.status == "error":
                print(f"    (pytest exit {out.exit}; output: {log})", flush=True)
            if not logs:
                log.unlink(missing_ok=True)
    except KeyboardInterrupt:
        print("\nmutate: interrupted; results so far", file=sys.stderr)
    finally:
        if current:
            ws.restore(current)
        ws.close()
    wall = time.monotonic() - started

    survivors = [r for r in results if r["status"] == "survived"]
    print(f"\nSurviving mutants ({len(survivors)}):")
    for r in survivors:
        print(f"  {r['path']}:{r['line']}  [{r['kind']}] {r['description']}\n"
              f"      - {r['original']}\n      + {r['mutated']}")
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        print(f"\nNot counted, pytest could not judge them ({len(errors)}): "
              + ", ".join(f"{r['path']}:{r['line']}" for r in errors))
    print()
    print(table(results, files))
    n = len(results)
    print(f"\nwall time {wall:.0f}s: clean run {clean_s:.0f}s, then {n} mutants in {wall - clean_s:.0f}s "
          f"({(wall - clean_s) / n if n else 0:.2f}s each)")
    if args.json:
        k = sum(r["status"] in ("killed", "timeout") for r in results)
        s = len(survivors)
        args.json.write_text(json.dumps({
            "seed": args.seed, "max": args.max, "paths": specs, "tests": args.tests,
            "mutants_total": total, "wall_s": round(wall, 1), "clean_run_s": round(clean_s, 1),
            "score": round(k / (k + s), 4) if k + s else None,
            "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
