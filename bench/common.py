"""What every benchmark shares: measures and their tables, progress, machine facts, references.

A benchmark module (``bench/identity.py``, ``bench/sync.py``…) exposes two
sizes, ``FULL`` and ``SHORT``, and ``collect(params, progress) -> Section``:
a :class:`Section` of :class:`Measure` rows, each a value next to a
reference measured in the same run (the machine is shared and noisy, so a
ratio says more than a bare figure).  ``bench/run.py`` calls every
``collect`` and prints one table; each script's ``main`` prints its own
section through :func:`report`.

The ratio is always ``value ÷ reference``: for a rate, below 1 means slower
than the reference; for a time or a size, above 1 means more.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import nacl.signing

MIB = 1 << 20
REPOSITORY = Path(__file__).resolve().parent.parent


# --- measures ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measure:
    """One figure and the reference it is read against (``None``: no reference applies)."""

    key: str
    label: str
    value: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    #: The reference's unit when it differs from the value's.
    reference_unit: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "reference": self.reference,
            "reference_label": self.reference_label,
            "reference_unit": self.reference_unit or self.unit,
            "ratio": self.ratio,
        }


@dataclasses.dataclass
class Section:
    """The measures of one benchmark, with a sentence on what was run and at which sizes."""

    name: str
    title: str
    setup: str = ""
    measures: list[Measure] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    def add(
        self,
        key: str,
        label: str,
        value: float,
        unit: str,
        reference: float | None = None,
        reference_label: str = "",
        reference_unit: str | None = None,
    ) -> None:
        """Add a row; ``key`` is prefixed with the section's name."""
        self.measures.append(
            Measure(
                f"{self.name}.{key}",
                label,
                float(value),
                unit,
                None if reference is None else float(reference),
                reference_label,
                reference_unit,
            )
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Section:
        """A section as :meth:`as_json` wrote it."""
        section = cls(
            data["name"], data["title"], data["setup"], [], list(data["notes"]), data["seconds"]
        )
        section.error = data["error"]
        for m in data["measures"]:
            unit = m["unit"]
            reference_unit = m["reference_unit"] if m["reference_unit"] != unit else None
            section.measures.append(
                Measure(
                    m["key"],
                    m["label"],
                    m["value"],
                    unit,
                    m["reference"],
                    m["reference_label"],
                    reference_unit,
                )
            )
        return section

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "setup": self.setup,
            "seconds": self.seconds,
            "error": self.error,
            "notes": self.notes,
            "measures": [m.as_json() for m in self.measures],
        }


def number(value: float) -> str:
    """A figure with as many digits as a noisy machine deserves (three significant, or units)."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}".replace(",", " ")
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _quantity(value: float, unit: str) -> str:
    return f"{number(value)} {unit}".rstrip()


def cells(measure: Measure) -> tuple[str, str, str, str]:
    """The four cells of a row: measure, value, reference, ratio."""
    value = _quantity(measure.value, measure.unit)
    if measure.reference is None:
        return measure.label, value, measure.reference_label or "—", "—"
    reference = _quantity(measure.reference, measure.reference_unit or measure.unit)
    if measure.reference_label:
        reference = f"{measure.reference_label}: {reference}"
    ratio = measure.ratio
    return measure.label, value, reference, "—" if ratio is None else number(ratio)


def text_table(sections: Iterable[Section]) -> str:
    """A plain-text table of every section, for a terminal."""
    rows: list[tuple[str, str, str, str] | str] = []
    for section in sections:
        heading = f"{section.title} ({section.name}, {section.seconds:.0f} s)"
        rows.append(heading + (f" — FAILED: {section.error}" if section.error else ""))
        rows.extend(cells(m) for m in section.measures)
    widths = [0, 0, 0]
    for row in rows:
        if not isinstance(row, str):
            widths = [max(w, len(c)) for w, c in zip(widths, row[:3], strict=True)]
    widths = [min(w, limit) for w, limit in zip(widths, (70, 16, 60), strict=True)]
    lines = [
        f"{'measure':<{widths[0]}}  {'value':>{widths[1]}}  {'reference (same run)':<{widths[2]}}"
        "  ratio"
    ]
    for row in rows:
        if isinstance(row, str):
            lines += ["", row]
        else:
            label, value, reference, ratio = row
            lines.append(
                f"{label:<{widths[0]}}  {value:>{widths[1]}}  {reference:<{widths[2]}}  {ratio:>5}"
            )
    return "\n".join(lines)


def markdown_table(section: Section) -> str:
    """One section as a Markdown table."""
    lines = ["| measure | value | reference (same run) | ratio |", "|---|---|---|---|"]
    for measure in section.measures:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(measure)) + " |")
    return "\n".join(lines)


# --- progress ---------------------------------------------------------------------------------


class Progress:
    """Progress lines on stderr: time since the start, which benchmark, what it is doing."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._start = time.perf_counter()
        self._where = ""

    def enter(self, where: str) -> None:
        """The lines that follow belong to ``where`` (``"[3/9] rooms"``)."""
        self._where = where

    def __call__(self, text: str) -> None:
        elapsed = time.perf_counter() - self._start
        where = f"{self._where}: " if self._where else ""
        print(f"[{elapsed:6.1f} s] {where}{text}", file=self._stream, flush=True)


# --- statistics and timing --------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q ≤ 1): p99 of 100 values is the 99th smallest."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def rate(function: Callable[[], object], seconds: float, batch: int = 1) -> float:
    """Calls per second of ``function`` over about ``seconds`` (called ``batch`` at a time)."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            function()
        count += batch
    return count / elapsed


@dataclasses.dataclass
class Timing:
    """Median wall and CPU seconds of repeated attempts."""

    wall: float
    cpu: float
    walls: list[float]


def timed(run: Callable[[], object], attempts: int) -> Timing:
    """Time ``run`` ``attempts`` times with the garbage collector off; medians."""
    walls, cpus = [], []
    for _ in range(attempts):
        gc.collect()
        gc.disable()
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            gc.enable()
        walls.append(wall)
        cpus.append(cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), walls)


def wait_blocking(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    """Poll ``predicate`` until true; raise :class:`TimeoutError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        time.sleep(step)


def ed25519_verify_rate(seconds: float, size: int = 400) -> float:
    """Bare Ed25519 verifications per second of a ``size``-byte message (libsodium).

    The reference most benchmarks use: every event, certificate and
    handshake costs at least one, so it bounds what a node can receive.
    """
    key = nacl.signing.SigningKey(os.urandom(32))
    signed = key.sign(os.urandom(size))
    verify_key = key.verify_key
    return rate(lambda: verify_key.verify(signed), seconds, batch=50)


# --- machine facts ----------------------------------------------------------------------------


def _first_line(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip() if ":" in line else line
    except OSError:
        pass
    return ""


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def _commit() -> str:
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


def machine_facts() -> dict[str, str]:
    """The machine, the software and the moment: what a figure needs next to it."""
    memory = _first_line("/proc/meminfo", "MemTotal")
    kib = int(memory.split()[0]) if memory else 0
    os_name = _first_line("/etc/os-release", "PRETTY_NAME=").removeprefix("PRETTY_NAME=")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "memory": f"{kib / MIB:.1f} GiB" if kib else "unknown",
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "os": os_name.strip('"') or "unknown",
        "load average at start": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "trio": _version("trio"),
        "pynacl": f"{_version('PyNaCl')} (its bundled libsodium, whose version it does not expose)",
        "cbor2": _version("cbor2"),
        "zeroconf": _version("zeroconf"),
        "prompt-toolkit": _version("prompt_toolkit"),
        "sqlite": sqlite3.sqlite_version,
        "p2ptchap": f"{_version('p2ptchap')}, commit {_commit()}",
    }


# --- one script on its own --------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every script takes: ``--short`` and ``--json OUT``."""
    parsed = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0],
        epilog="Run every benchmark at once with: python bench/run.py",
    )
    parsed.add_argument("--short", action="store_true", help="tiny sizes (seconds, for CI)")
    parsed.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    return parsed


def results_json(
    sections: list[Section], mode: str, seconds: float, facts: dict[str, str]
) -> dict[str, Any]:
    """Everything a run measured, for ``--json``."""
    return {
        "mode": mode,
        "seconds": seconds,
        "machine": facts,
        "failed": [s.name for s in sections if s.error],
        "sections": [s.as_json() for s in sections],
    }


def report(
    sections: list[Section],
    *,
    short: bool,
    json_path: Path | None,
    seconds: float,
    facts: dict[str, str] | None = None,
) -> None:
    """Print the machine facts, the table and the notes on stdout; write the JSON if asked."""
    facts = facts or machine_facts()
    mode = "short" if short else "full"
    print(f"mode: {mode}, {seconds:.0f} s")
    for name, value in facts.items():
        print(f"{name}: {value}")
    print()
    print(text_table(sections))
    for section in sections:
        for note in section.notes:
            print(f"  [{section.name}] {note}")
    if json_path is not None:
        data = results_json(sections, mode, seconds, facts)
        json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@dataclasses.dataclass(frozen=True)
class Option:
    """A script's own argument, overriding one field of its parameters.

    ``flag`` is ``--name`` (an option) or ``name`` (positional numbers, any
    count, kept as a tuple).
    """

    flag: str
    field: str
    type: Callable[[str], Any] = int
    help: str | None = None


def run_alone(
    doc: str | None,
    collect: Callable[[Any, Progress], Section],
    short: Any,
    full: Any,
    options: tuple[Option, ...] = (),
) -> None:
    """A script run alone: parse its arguments, collect its section, report it."""
    parsed = parser(doc)
    for option in options:
        if option.flag.startswith("--"):
            parsed.add_argument(option.flag, dest=option.field, type=option.type, help=option.help)
        else:
            parsed.add_argument(option.flag, nargs="*", type=option.type, help=option.help)
    args = parsed.parse_args()
    params = short if args.short else full
    for option in options:
        value = getattr(args, option.field if option.flag.startswith("--") else option.flag)
        if value is not None and value != []:
            value = tuple(value) if isinstance(value, list) else value
            params = dataclasses.replace(params, **{option.field: value})
    start = time.perf_counter()
    section = collect(params, Progress())
    section.seconds = time.perf_counter() - start
    report([section], short=args.short, json_path=args.json, seconds=section.seconds)
