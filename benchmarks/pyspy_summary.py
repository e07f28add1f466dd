"""Summarise a ``py-spy record -f raw`` profile: where the daemon's samples go.

    python -m benchmarks.pyspy_summary benchmarks/results/profiles/null_1of1.txt [--top 15] [--markdown]

Each raw line is ``frame;frame;...;leaf COUNT``.  Samples whose leaf is an idle thread-pool worker are
dropped.  A leaf of ``Runner.run`` means the event loop's own C code (uvloop: epoll wait and native
callbacks), shown as its own row.  The tables are: by pipeline component (the first asqsd frame under the
event loop, else the first
callback frame), by package of the leaf frame, top leaf functions (self time) and top inclusive functions.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")
_IDLE_LEAVES = ("_worker (concurrent/futures/thread.py", "wait (threading.py", "_wait_for_tstate_lock")
_LOOP_LEAF = "Runner.run (asyncio/runners.py"


@dataclass(slots=True)
class Profile:
    """Sample counts of one raw profile, aggregated several ways."""

    total: int = 0
    idle: int = 0
    leaf: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    component: Counter[str] = field(default_factory=Counter)
    package: Counter[str] = field(default_factory=Counter)

    @property
    def busy(self) -> int:
        return self.total - self.idle


def _name(frame: str) -> tuple[str, str]:
    """(``func (file)``, file) of a raw frame, without the line number."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return f"{match['func']} ({match['file']})", match["file"]


def _package(file: str) -> str:
    if not file:
        return "?"
    head = file.split("/", 1)[0]
    if head.startswith("<frozen"):
        return "stdlib"
    if head in ("botocore", "aiobotocore"):
        return "aiobotocore/botocore"
    if "/" not in file and file.endswith(".py"):
        return f"stdlib ({file})"
    return head


def _loop_index(names: Sequence[str]) -> int:
    """Index of the event loop's ``Runner.run`` frame (frames above it are in every stack), or -1."""
    for index, name in enumerate(names):
        if name.startswith("Runner.run (asyncio/runners.py"):
            return index
    return -1


def _component(names: Sequence[str]) -> str:
    below = names[_loop_index(names) + 1 :]
    for name in below:
        if "(asqsd/" in name:
            return name.split(" (")[0]
    if below:
        return f"callback: {below[0]}"
    return "(event loop itself)"


def parse(lines: Iterable[str]) -> Profile:
    """Aggregate raw py-spy lines."""
    profile = Profile()
    for raw in lines:
        raw = raw.rstrip("\n")
        if not raw:
            continue
        stack, _, count_text = raw.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        profile.total += count
        if frames[-1].startswith(_IDLE_LEAVES):
            profile.idle += count
            continue
        names = [_name(frame)[0] for frame in frames]
        leaf_name, leaf_file = _name(frames[-1])
        if frames[-1].startswith(_LOOP_LEAF):
            leaf_name, leaf_file = "event loop C code (uvloop run: epoll + native callbacks)", "uvloop"
        profile.leaf[leaf_name] += count
        profile.package[_package(leaf_file)] += count
        profile.component[_component(names)] += count
        for name in set(names[_loop_index(names) + 1 :]):
            profile.inclusive[name] += count
    return profile


def _table(title: str, counts: Counter[str], busy: int, top: int, markdown: bool) -> list[str]:
    rows = counts.most_common(top)
    if markdown:
        out = [f"| {title} | samples | % of busy |", "|---|---:|---:|"]
        out += [f"| `{name}` | {n:,} | {100 * n / busy:.1f} % |" for name, n in rows]
        return [*out, ""]
    out = [title]
    out += [f"  {100 * n / busy:5.1f} %  {n:7,}  {name}" for name, n in rows]
    return [*out, ""]


def render(profile: Profile, top: int = 15, markdown: bool = False) -> str:
    busy = max(profile.busy, 1)
    head = (
        f"{profile.total:,} samples, {profile.idle:,} idle (thread-pool waits) dropped, {profile.busy:,} kept"
    )
    lines = [head, ""]
    lines += _table("component (first asqsd frame)", profile.component, busy, top, markdown)
    lines += _table("package of the leaf frame", profile.package, busy, top, markdown)
    lines += _table("leaf function (self)", profile.leaf, busy, top, markdown)
    lines += _table("inclusive function", profile.inclusive, busy, top + 10, markdown)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pyspy_summary", description=__doc__)
    parser.add_argument("raw", type=Path, nargs="+", help="py-spy raw output file(s)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    lines: list[str] = []
    for path in args.raw:
        lines += path.read_text(errors="replace").splitlines()
    print(render(parse(lines), args.top, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
