"""Mutation score of a module against its tests: would the suite notice if this line broke?

Usage (always on a copy of the project, never the working tree other people test in)::

    cp -r /work/main /tmp/mut
    python bench/mutation.py --root /tmp/mut gateway/calls/tracker.py \\
        tests/test_tracker.py tests/test_tracker_paths.py tests/test_replay_traces.py
    python bench/mutation.py --root /tmp/mut --sample 80 gateway/ami/frames.py tests/test_frames.py
    python bench/mutation.py --root /tmp/mut gateway/ami/frames.py      # its usual tests
    python bench/mutation.py --root /tmp/mut --list gateway/ami/frames.py  # ids, no run
    python bench/mutation.py --root /tmp/mut --only compare#3,delete#12 gateway/ami/frames.py

One classic mutation at a time, found on the module's AST: a flipped comparison, ``and`` and
``or`` swapped, ``+`` and ``-`` swapped, a deleted statement (replaced by ``pass``), a
``return x`` turned into ``return None``, an integer constant plus or minus one. Strings and
docstrings are left alone (the score is of non-string mutants). Each mutant is written over
the module in ``--root``, the tests run with ``-x -q``, and the original is restored in a
``finally``. A mutant is killed when the tests fail (or time out). ``--sample N`` draws N
mutants at random (``--seed``, deterministic: same source, same seed, same mutants) when the
whole set is too slow for the machine. Without test files, the module's usual tests
(``DEFAULT_TESTS``) run.

Each mutant has an id, ``kind#index`` (stable while the module's source does not change),
printed with its line by ``--list`` and in the report of survivors; ``--only`` runs just
those ids (to check a new test kills them). ``--equivalents FILE`` names the mutants judged
equivalent (no observable difference, e.g. a buffer constant that only changes speed), one
per line as ``<line> <kind> [# why]``; the report gives the score with and without them.
A mutant whose source cannot be built is reported as skipped, never counted as killed.
"""

from __future__ import annotations

import argparse
import ast
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
# the tests that exercise a module, when none are named on the command line
DEFAULT_TESTS: dict[str, tuple[str, ...]] = {
    "gateway/calls/tracker.py": (
        "tests/test_tracker.py",
        "tests/test_tracker_paths.py",
        "tests/test_tracker_mutants.py",
        "tests/test_tracker_mutants2.py",
        "tests/test_replay_traces.py",
        "tests/test_tracker_correction.py",
    ),
    "gateway/ami/frames.py": ("tests/test_frames.py", "tests/test_frames_mutants.py"),
    "gateway/lookup/numbers.py": ("tests/test_numbers.py", "tests/test_numbers_mutants.py"),
    "gateway/calls/replay.py": (
        "tests/test_replay_traces.py",
        "tests/test_tracker_correction.py",
        "tests/test_cli.py",
        "tests/test_replay_mutants.py",
    ),
    "gateway/calls/model.py": (
        "tests/test_tracker.py",
        "tests/test_replay_traces.py",
        "tests/test_tracker_correction.py",
        "tests/test_model_mutants.py",
    ),
    "gateway/calls/settings.py": (
        "tests/test_tracker.py",
        "tests/test_replay_traces.py",
        "tests/test_model_mutants.py",
    ),
    "gateway/calls/events.py": (
        "tests/test_tracker.py",
        "tests/test_replay_traces.py",
        "tests/test_tracker_correction.py",
        "tests/test_model_mutants.py",
    ),
}
_DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Delete, ast.If)


@dataclass(frozen=True, slots=True)
class Mutant:
    """The ``index``-th mutation site of its kind, and where it is (for the report)."""

    kind: str
    index: int
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.kind}#{self.index}"


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _sites(tree: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) in _FLIP:
                    yield "compare", node
        elif isinstance(node, ast.BoolOp):
            yield "boolop", node
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            yield "arith", node
        elif isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                yield "return", node
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
        ):
            yield "const+1", node
            yield "const-1", node
        if isinstance(node, _DELETABLE) and not _is_docstring(node):
            yield "delete", node


def mutants(source: str) -> list[Mutant]:
    """Every mutation of ``source``, in a stable order."""
    tree = ast.parse(source)
    out: list[Mutant] = []
    counts: dict[str, int] = {}
    for kind, node in _sites(tree):
        i = counts.get(kind, 0)
        counts[kind] = i + 1
        line = getattr(node, "lineno", 0)
        out.append(Mutant(kind, i, line, ast.unparse(node).splitlines()[0][:70]))
    return out


def apply(source: str, mutant: Mutant) -> str:
    """The source with one mutation applied (unparsed: formatting changes, meaning does not)."""
    tree = ast.parse(source)
    i = 0
    for kind, node in _sites(tree):
        if kind != mutant.kind:
            continue
        if i == mutant.index:
            _mutate(tree, kind, node)
            return ast.unparse(ast.fix_missing_locations(tree))
        i += 1
    raise LookupError(f"no mutation site {mutant}")


def _mutate(tree: ast.AST, kind: str, node: ast.AST) -> None:
    if kind == "compare":
        assert isinstance(node, ast.Compare)
        node.ops = [_FLIP[type(op)]() if type(op) in _FLIP else op for op in node.ops]
    elif kind == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "arith":
        assert isinstance(node, ast.BinOp)
        node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
    elif kind == "return":
        assert isinstance(node, ast.Return)
        node.value = ast.Constant(None)
    elif kind in ("const+1", "const-1"):
        assert isinstance(node, ast.Constant) and isinstance(node.value, int)
        node.value = node.value + (1 if kind == "const+1" else -1)
    elif kind == "delete":
        for parent in ast.walk(tree):
            for field in ("body", "orelse", "finalbody"):
                body = getattr(parent, field, None)
                if isinstance(body, list) and node in body:
                    body[body.index(node)] = ast.copy_location(ast.Pass(), node)
                    return


def run_tests(root: Path, tests: list[str], timeout: float, memory_mb: int = 0) -> bool:
    """True when the tests pass (the mutant survived). ``memory_mb`` caps the test process's
    address space: a mutant that grows a buffer without bound fails fast (killed) instead of
    eating a shared machine's memory until the timeout."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]

    def limit() -> None:
        if memory_mb:
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    try:
        done = subprocess.run(
            cmd,
            cwd=root,
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=limit,  # no threads in this process
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def read_equivalents(path: Path) -> dict[tuple[int, str], str]:
    """``<line> <kind> [# why]`` per line (blank lines and ``#`` comments ignored)."""
    out: dict[tuple[int, str], str] = {}
    for raw in path.read_text().splitlines():
        body, _, why = raw.partition("#")
        if not body.strip():
            continue
        line, kind = body.split()[:2]
        out[(int(line), kind)] = why.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("module", help="path of the module, relative to --root")
    ap.add_argument("tests", nargs="*", help="test files, relative to --root (default: usual)")
    ap.add_argument("--root", required=True, help="a COPY of the project")
    ap.add_argument("--sample", type=int, default=0, help="test N random mutants (0: all)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--memory-mb", type=int, default=2048, help="address space cap (0: none)")
    ap.add_argument("--only", default="", help="comma-separated mutant ids (kind#index)")
    ap.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    ap.add_argument("--equivalents", type=Path, help="file of mutants judged equivalent")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    path = root / args.module
    original = path.read_text()
    tests = list(args.tests) or list(DEFAULT_TESTS.get(args.module, ()))
    tests = [t for t in tests if (root / t).exists()]
    if not tests and not args.list:
        print(f"no tests named or known for {args.module}", file=sys.stderr)
        return 2
    every = mutants(original)
    chosen = every
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        chosen = [m for m in every if m.id in wanted]
        unknown = wanted - {m.id for m in chosen}
        if unknown:
            print(f"unknown mutant ids: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    elif args.sample and args.sample < len(every):
        chosen = sorted(
            random.Random(args.seed).sample(every, args.sample),
            key=lambda m: (m.line, m.kind, m.index),
        )
    if args.list:
        for m in chosen:
            print(f"{m.line:5d} {m.id:14s} {m.text}")
        return 0
    equivalents = read_equivalents(args.equivalents) if args.equivalents else {}
    if not run_tests(root, tests, args.timeout, args.memory_mb):
        print("the tests fail without any mutation: fix them first", file=sys.stderr)
        return 2
    survivors: list[Mutant] = []
    skipped: list[Mutant] = []
    started = time.monotonic()
    try:
        for n, m in enumerate(chosen, 1):
            try:
                mutated = apply(original, m)
            except (LookupError, SyntaxError, ValueError):
                skipped.append(m)
                continue
            path.write_text(mutated)
            if run_tests(root, tests, args.timeout, args.memory_mb):
                survivors.append(m)
            print(f"\r{n}/{len(chosen)} survived={len(survivors)}", end="", file=sys.stderr)
    finally:
        path.write_text(original)
    print(file=sys.stderr)
    ran = len(chosen) - len(skipped)
    killed = ran - len(survivors)
    score = 100.0 * killed / ran if ran else 100.0
    sample = f"sample {len(chosen)} of {len(every)} (seed {args.seed})"
    if args.only:
        sample = f"{len(chosen)} chosen of {len(every)}"
    elif len(chosen) == len(every):
        sample = f"all {len(every)}"
    print(
        f"{args.module}: {killed}/{ran} mutants killed ({score:.1f} %), {sample}, "
        f"{time.monotonic() - started:.0f} s; tests: {' '.join(tests)}"
    )
    equivalent = [m for m in survivors if (m.line, m.kind) in equivalents]
    if equivalent:
        rest = ran - len(equivalent)
        print(
            f"  without {len(equivalent)} judged equivalent: {killed}/{rest} killed "
            f"({100.0 * killed / rest if rest else 100.0:.1f} %)"
        )
    if skipped:
        print(f"  skipped (could not be built): {', '.join(m.id for m in skipped)}")
    for m in survivors:
        why = equivalents.get((m.line, m.kind))
        note = f"  [equivalent: {why}]" if why is not None else ""
        print(f"  survived line {m.line:4d} {m.id:14s} {m.text}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
