"""Directory benchmark: a people directory of 100 000 agents, searched and loaded.

One agent's node database holds 100 000 account certificates, each with one
device certificate, issued by the cell's authority (French names, accents
included; 1 000 with ``--short``).  Measured, each next to a reference
taken in the same run:

* **search latency** of ``DirectoryStore.search`` (what ``p2ptchap
  directory search`` and the terminal app call), p50 and p99 over a mix of
  queries (a surname, a first name and a surname's beginning, three
  letters, a name typed without its accents, an exact address, nothing
  found), against SQLite FTS5 (an index: ``unicode61 remove_diacritics``)
  answering the same queries over the same names and addresses;
* **loading** the directory (``DirectoryStore`` opening: every certificate
  is verified again), against SQLite alone reading the same rows, and
  against the bare Ed25519 verifications it contains;
* ``p2ptchap directory search`` as a user runs it (a process), and a node's
  start-up, against the same with an empty directory; the node's RSS;
* filling the directory through ``add_account`` and ``add_device`` (the
  path of certificates learnt at handshakes and by gossip), on a sample,
  against bare Ed25519 verification (two per entry).

The 100 000 rows are written straight into the tables (one transaction):
through ``add_account`` they would take minutes, measured on the sample.

Run:  python bench/directory.py [--short] [--entries 100000]
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.processes import DOMAIN, NodeProcesses, cli
from p2ptchap import accounts
from p2ptchap.core import identity, vault
from p2ptchap.core.account import EnrollmentRequest
from p2ptchap.core.addresses import normalise_display_name
from p2ptchap.core.directory import fold, words
from p2ptchap.core.keys import AccountSecret, DeviceSecret, ExchangeSecret
from p2ptchap.core.revocation import RevocationSet
from p2ptchap.store.db import DB_NAME, Database
from p2ptchap.store.directory import DirectoryStore
from p2ptchap.store.home import Home
from tests.net.cell import PASSPHRASE, make_cell


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _names(
    "Jean Marie Hélène Éloïse François Zoé Noël Agnès Léa Chloé Jérôme Benoît Céline Gaëlle "
    "Loïc Amélie Inès Thérèse Mathéo Anaïs Pierre Nathalie Sébastien Camille Aurélien Maëlle "
    "Stéphane Brigitte Raphaël Océane Lucas Manon Hugo Sarah Louis Emma Paul Julie Antoine Clara"
)
LAST = _names(
    "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre "
    "Michel García Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Müller Faure "
    "André Mercier Blanc Guérin Boyer Garnier Chevalier François Legrand Gauthier Perrin Robin "
    "Clément Morin Nicolas Henry Roussel Mathieu Gautier Masson Marchand Duval Denis Lemaire "
    "Dumont Fabre Brunet Lefebvre Meunier Renard Aubert Lecomte Lucas Hamel Barbier Carré"
)
BATCH = 5_000


@dataclasses.dataclass(frozen=True)
class Params:
    entries: int
    queries: int  # timed searches (each kind in turn)
    sample: int  # entries added through add_account / add_device
    seed: int = 3


FULL = Params(entries=100_000, queries=120, sample=2_000)
SHORT = Params(entries=1_000, queries=24, sample=200)

#: account key, address, name, expiry, certificate, device key, device certificate
Row = tuple[bytes, str, str, int, bytes, bytes, bytes]


def person(number: int, rng: random.Random) -> tuple[str, str]:
    """A display name and an address, unique by ``number``."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = f"{fold(first)}.{fold(last)}.{number}".replace(" ", "")
    return normalise_display_name(f"{first} {last}"), f"{local}@{DOMAIN}"


def issue_batch(authority_home: Path, start: int, count: int, seed: int, now: int) -> list[Row]:
    """Certificates for people ``start`` to ``start + count`` (run in a worker process)."""
    authority, secret = accounts.load_authority(Home(authority_home, kdf=vault.MINIMUM), PASSPHRASE)
    rng = random.Random(seed * 1_000_003 + start)
    rng_bytes = rng.randbytes
    rows: list[Row] = []
    for number in range(start, start + count):
        name, email = person(number, rng)
        master = AccountSecret.generate(rng_bytes)
        request = EnrollmentRequest(email, name, master.public_key(), now, b"")
        certificate = identity.issue_account_certificate(
            secret, authority, request, kind=identity.Kind.AGENT, now=now, days=30, rng=rng_bytes
        )
        device = DeviceSecret.generate(rng_bytes).public_key()
        exchange = ExchangeSecret.generate(rng_bytes).public_key()
        device_certificate = identity.issue_device_certificate(master, device, exchange, "pc", now)
        rows.append(
            (
                bytes(master.public_key()),
                email,
                name,
                now + 30 * 86_400,
                certificate,
                bytes(device),
                device_certificate,
            )
        )
    return rows


def issue_all(authority_home: Path, total: int, seed: int, now: int) -> list[Row]:
    """Every certificate, issued by as many worker processes as there are cores."""
    starts = range(0, total, BATCH)
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        batches = pool.map(
            issue_batch,
            [authority_home] * len(starts),
            starts,
            [min(BATCH, total - s) for s in starts],
            [seed] * len(starts),
            [now] * len(starts),
        )
        return [row for batch in batches for row in batch]


def fill(path: Path, rows: list[Row]) -> None:
    """Write the rows into a node database's ``people`` and ``devices`` tables directly."""
    db = Database(path)
    with db.transaction() as cursor:
        cursor.executemany(
            "INSERT INTO people (account, email, name, kind, expires, certificate)"
            " VALUES (?, ?, ?, 'agent', ?, ?)",
            [(r[0], r[1], r[2], r[3], r[4]) for r in rows],
        )
        cursor.executemany(
            "INSERT INTO devices (device, account, certificate) VALUES (?, ?, ?)",
            [(r[5], r[0], r[6]) for r in rows],
        )
    db.close()


def queries(rows: list[Row], count: int, seed: int) -> list[str]:
    """A mix of what people type, cycling through six kinds."""
    rng = random.Random(seed)
    found: list[str] = []
    for number in range(count):
        _, email, name, *_ = rng.choice(rows)
        first, last = name.split(" ", 1)
        kind = number % 6
        if kind == 0:
            found.append(last)  # a surname
        elif kind == 1:
            found.append(f"{first} {last[:3]}")  # a first name and a surname's beginning
        elif kind == 2:
            found.append(fold(last)[:3])  # three letters
        elif kind == 3:
            found.append(fold(f"{first} {last}"))  # typed without accents
        elif kind == 4:
            found.append(email)  # an exact address
        else:
            found.append(f"zz{rng.randrange(1000)}")  # nothing found
    return found


def fts_index(rows: list[Row]) -> sqlite3.Connection:
    """The same names and addresses in an SQLite FTS5 index, in memory."""
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE people USING fts5("
        "name, email, tokenize = 'unicode61 remove_diacritics 2')"
    )
    db.executemany("INSERT INTO people VALUES (?, ?)", [(r[2], r[1]) for r in rows])
    return db


def fts_search(db: sqlite3.Connection, query: str) -> list[tuple[str, str]]:
    """Every word of ``query`` as a prefix, sorted by name, 50 at most (as ours)."""
    match = " AND ".join(f'"{w}"*' for w in words(query))
    if not match:
        return []
    sql = "SELECT name, email FROM people WHERE people MATCH ? ORDER BY name LIMIT 50"
    return db.execute(sql, (match,)).fetchall()


def latencies(search: object, asked: list[str]) -> list[float]:
    times: list[float] = []
    for query in asked:
        start = time.perf_counter()
        search(query)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


@dataclasses.dataclass
class Loaded:
    load_seconds: float
    sqlite_seconds: float
    search: list[float]
    fts: list[float]
    add_rate: float


def in_process(root: Path, rows: list[Row], params: Params, progress: common.Progress) -> Loaded:
    """Loading and searching in this process; filling through the API on a sample."""
    home = Home(root / "alice", kdf=vault.MINIMUM)
    trust = home.trust_store()
    now = int(time.time())
    path = root / "alice" / DB_NAME
    progress("loading the directory (every certificate verified)")
    start = time.perf_counter()
    directory = DirectoryStore(Database(path), trust, RevocationSet, lambda: now)
    load_seconds = time.perf_counter() - start
    if len(directory) < len(rows):
        raise RuntimeError(f"only {len(directory)} of {len(rows)} certificates loaded")
    with sqlite3.connect(path) as db:
        start = time.perf_counter()
        db.execute("SELECT certificate FROM people").fetchall()
        db.execute("SELECT certificate FROM devices").fetchall()
        sqlite_seconds = time.perf_counter() - start
    asked = queries(rows, params.queries, params.seed)
    progress(f"{len(asked)} searches, and the same with SQLite FTS5")
    search = latencies(directory.search, asked)
    index = fts_index(rows)
    fts = latencies(lambda q: fts_search(index, q), asked)
    index.close()
    directory.db.close()
    progress(f"add_account + add_device of {params.sample} entries")
    scratch = DirectoryStore(Database(root / "scratch.db"), trust, RevocationSet, lambda: now)
    start = time.perf_counter()
    for row in rows[: params.sample]:
        scratch.add_account(row[4])
        scratch.add_device(row[6])
    add_rate = params.sample / (time.perf_counter() - start)
    scratch.db.close()
    return Loaded(load_seconds, sqlite_seconds, search, fts, add_rate)


def timed_cli(root: Path, name: str, query: str) -> float:
    start = time.perf_counter()
    cli(root, "--home", name, "directory", "search", query, "--json")
    return time.perf_counter() - start


def collect(params: Params, progress: common.Progress) -> common.Section:
    n = params.entries
    size = f"{n:,}".replace(",", " ")
    section = common.Section(
        "directory",
        "People directory",
        f"{size} agents (an account and a device certificate each) in one node's database; "
        f"{params.queries} searches.",
    )
    with tempfile.TemporaryDirectory(prefix="bench-directory-") as folder:
        root = make_cell(Path(folder), ["alice", "bruno"])
        progress(f"issuing {size} account and device certificates")
        rows = issue_all(root / "auth", n, params.seed, int(time.time()))
        fill(root / "alice" / DB_NAME, rows)
        Database(root / "bruno" / DB_NAME).close()  # an empty directory, same schema
        loaded = in_process(root, rows, params, progress)
        progress("the CLI's directory search, with and without the directory")
        asked = rows[0][2].split(" ", 1)[1]  # someone's surname
        cli_full = timed_cli(root, "alice", asked)
        cli_empty = timed_cli(root, "bruno", asked)
        progress("a node's start-up, with and without the directory")
        with NodeProcesses(root) as nodes:
            nodes.up("alice", timeout=1800)
            nodes.up("bruno")
            rss = {name: nodes.rss(name) for name in ("alice", "bruno")}
            started = dict(nodes.started)
    verify = common.ed25519_verify_rate(1.0)

    for name, q in (("p50", 0.5), ("p99", 0.99)):
        section.add(
            f"search.{name}",
            f"search among {size} people (`DirectoryStore.search`), {name}",
            common.percentile(loaded.search, q) * 1000,
            "ms",
            common.percentile(loaded.fts, q) * 1000,
            f"SQLite FTS5, same queries, {name}",
        )
    section.add(
        "load",
        f"load the directory ({size} accounts + devices, each verified)",
        loaded.load_seconds,
        "s",
        loaded.sqlite_seconds,
        "SQLite alone reading the rows",
    )
    section.add(
        "load.vs_verify",
        "… the same load",
        loaded.load_seconds,
        "s",
        2 * n / verify,
        f"{2 * n:,} bare Ed25519 verifications".replace(",", " "),
    )
    section.add(
        "cli_search",
        "`p2ptchap directory search` (a process, wall time)",
        cli_full,
        "s",
        cli_empty,
        "the same, empty directory",
    )
    section.add(
        "node_startup",
        "node start-up until the control socket answers",
        started["alice"],
        "s",
        started["bruno"],
        "the same, empty directory",
    )
    section.add(
        "node_rss",
        "… that node's RSS once started",
        rss["alice"] / common.MIB,
        "MiB",
        rss["bruno"] / common.MIB,
        "empty directory",
    )
    section.add(
        "add",
        f"fill through `add_account` + `add_device` ({params.sample} entries)",
        loaded.add_rate,
        "entries/s",
        verify / 2,
        "bare Ed25519 verify ÷ 2",
        "/s",
    )
    return section


#: This script's own arguments, besides --short and --json.
OPTIONS = (common.Option("--entries", "entries", help="people in the directory"),)


if __name__ == "__main__":
    common.run_alone(__doc__, collect, SHORT, FULL, OPTIONS)
