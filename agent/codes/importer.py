"""Import code packages into the ledger: all or nothing, with a report of what is wrong and where.

Accepted: the signed package (always), and plain TXT (one code per line, one file per level, the
common 码包 file) or CSV (code,level) only when the config allows unsigned imports. Any problem — bad
signature, body hash mismatch, an empty or malformed line, a duplicate inside the file or against
codes already held, a wrong level — refuses the whole import and leaves the ledger unchanged.
Importing the same package twice is a no-op that says so.

Why one transaction for the whole file: a kill -9 or power loss mid-import must leave the ledger
exactly as before; SQLite's atomic commit gives that for free, and group commit is not wanted here.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.codes.package import (
    KeyFileError,
    PackageError,
    is_package,
    load_private,
    load_verify_key,
    open_package,
)
from agent.config import LineConfig
from agent.ledger import Ledger

MAX_CODE_LEN = 512
MAX_REPORTED = 50
CHUNK = 50_000
# Whitespace, C0/C1 controls, and the invisible characters a copy-paste or an editor slips into a
# code (BOM, zero-width space/joiners, direction marks, word joiner, soft hyphen): a code holding one
# prints as if it were another code, so none of them is ever part of a code.
_BAD_CHARS = re.compile("[\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Encodings tried in turn for a plain TXT/CSV file when --encoding is not given: UTF-8 (with or
# without a BOM), then GB18030, the superset of GBK/GB2312 that Chinese Windows tools write.
AUTO_ENCODINGS = ("utf-8-sig", "gb18030")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based line in the file (the body, for a signed package)
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class ImportRefused(Exception):
    source: str
    problems: list[Problem]
    total: int = 0  # how many problems in all (only the first MAX_REPORTED are kept)

    def __str__(self) -> str:
        more = f" (and {self.total - len(self.problems)} more)" if self.total > len(self.problems) else ""
        lines = "\n".join(f"  {self.source}: {p}" for p in self.problems)
        return f"import of {self.source} refused, ledger unchanged; {self.total} problem(s){more}:\n{lines}"


@dataclass(frozen=True)
class ImportResult:
    package_id: str
    source: str  # signed | txt | csv
    count: int
    levels: dict[str, int] = field(default_factory=dict)
    already_imported: bool = False
    imported_at: float = 0.0


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Problem] = []
        self.total = 0

    def add(self, line: int | None, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(Problem(line, message))

    def raise_if_any(self) -> None:
        if self.total:
            raise ImportRefused(self.source, self.items, self.total)


def import_file(
    ledger: Ledger,
    path: Path,
    cfg: LineConfig | None,
    *,
    level: str | None = None,
    progress: Progress | None = None,
    encoding: str | None = None,
) -> ImportResult:
    """Import one file; raises ImportRefused with every problem found (up to 50 listed)."""
    name = str(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block or never end
            raise ImportRefused(name, [Problem(None, "not a regular file (a pipe, a device or a folder)")], 1)
        data = path.read_bytes()
    except OSError as exc:
        raise ImportRefused(name, [Problem(None, f"cannot read: {exc.strerror or exc}")], 1) from exc
    levels = set(cfg.code_sources.levels) if cfg else None
    if is_package(data):
        return _import_signed(ledger, data, name, cfg, levels, progress)
    if cfg is not None and not cfg.security.allow_unsigned_imports:
        raise ImportRefused(name, [Problem(None, "not a signed code package, and security."
                                           "allow_unsigned_imports is false in the config")], 1)
    package_id = "file:" + hashlib.sha256(data).hexdigest()
    problems = _Problems(name)
    text = _decode(data, name, encoding)
    if path.suffix.lower() == ".csv":
        codes, code_levels = _parse_csv(text, problems, levels)
        source = "csv"
    else:
        if not level:
            raise ImportRefused(name, [Problem(None, "a TXT code file needs --level (one file per level)")], 1)
        if levels is not None and level not in levels:
            raise ImportRefused(name, [Problem(None, f"level {level!r} is not in code_sources.levels "
                                               f"({', '.join(sorted(levels))})")], 1)
        codes = _parse_lines(text, problems, lenient=True)
        code_levels = [level] * len(codes)
        source = "txt"
    problems.raise_if_any()
    body_sha = hashlib.sha256(data).hexdigest()
    return _store(ledger, name, package_id, source, codes, code_levels, body_sha, issuer="file",
                  code_format="raw", created=None, signed=False, progress=progress)


def _import_signed(
    ledger: Ledger, data: bytes, name: str, cfg: LineConfig | None, levels: set[str] | None,
    progress: Progress | None,
) -> ImportResult:
    if cfg is None:
        raise ImportRefused(name, [Problem(None, "a signed package needs the config's security."
                                           "cloud_public_key to verify it (give --config)")], 1)
    try:
        vkey = load_verify_key(cfg.resolve(cfg.security.cloud_public_key))
        line_key = None
        if cfg.security.line_private_key:
            line_key = load_private(cfg.resolve(cfg.security.line_private_key))
        pkg = open_package(data, verify_key=vkey, line_key=line_key)
    except (PackageError, KeyFileError) as exc:
        raise ImportRefused(name, [Problem(None, str(exc))], 1) from exc
    m = pkg.manifest
    problems = _Problems(name)
    if levels is not None and m.level not in levels:
        problems.add(None, f"package level {m.level!r} is not in code_sources.levels ({', '.join(sorted(levels))})")
    try:
        text = pkg.body.decode("utf-8")
    except UnicodeDecodeError:
        problems.add(None, "package body is not valid UTF-8")
        text = ""
    codes = _parse_lines(text, problems)
    if not problems.total and len(codes) != m.count:
        problems.add(None, f"manifest says {m.count} codes, body holds {len(codes)}")
    problems.raise_if_any()
    return _store(ledger, name, m.package_id, "signed", codes, [m.level] * len(codes), m.body_sha256,
                  issuer=m.issuer, code_format=m.code_format, created=m.created, signed=True,
                  progress=progress)


def _decode(data: bytes, name: str, encoding: str | None) -> str:
    """The text of a plain file: in the encoding given, else the first of AUTO_ENCODINGS that fits."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ImportRefused(name, [Problem(None, f"unknown encoding {encoding!r} (try utf-8, gb18030, gbk)")],
                                1) from None
    tried = (encoding,) if encoding else AUTO_ENCODINGS
    first_error: UnicodeDecodeError | None = None
    for enc in tried:
        try:
            return data.decode("utf-8-sig" if enc.lower().replace("_", "-") in ("utf-8", "utf8") else enc)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
    assert first_error is not None
    line = data[: first_error.start].count(b"\n") + 1
    raise ImportRefused(name, [Problem(line, f"not valid {' or '.join(tried)} (give --encoding)")], 1)


def _check_code(code: str, line: int, problems: _Problems) -> bool:
    if not code:
        problems.add(line, "empty line")
        return False
    if len(code) > MAX_CODE_LEN:
        problems.add(line, f"code is {len(code)} characters, more than {MAX_CODE_LEN}")
        return False
    bad = _BAD_CHARS.search(code)
    if bad:
        problems.add(line, f"code {code[:40]!r} contains whitespace, a control or an invisible character "
                     f"(U+{ord(bad.group()):04X}) at column {bad.start() + 1}")
        return False
    return True


def _parse_lines(text: str, problems: _Problems, *, lenient: bool = False) -> list[str]:
    """One code per line. `lenient` (plain TXT files, written by people and spreadsheets): trailing
    spaces/tabs on a line and blank lines at the end are dropped. A signed body is taken exactly as
    signed: anything but one code per line is refused."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    codes = [c[:-1] if c.endswith("\r") else c for c in lines]
    if lenient:
        codes = [c.rstrip(" \t\r") for c in codes]
        while codes and codes[-1] == "":
            codes.pop()
    if not codes:
        problems.add(None, "the file holds no codes")
    for i, c in enumerate(codes, 1):
        _check_code(c, i, problems)
    _find_file_duplicates(codes, problems)
    return codes


def _parse_csv(text: str, problems: _Problems, levels: set[str] | None) -> tuple[list[str], list[str]]:
    codes: list[str] = []
    code_levels: list[str] = []
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        n = reader.line_num
        if n == 1 and [c.strip().lower() for c in row] == ["code", "level"]:
            continue
        if len(row) != 2:
            problems.add(n, f"expected 2 columns (code,level), found {len(row)}")
            continue
        code, lv = row[0], row[1].strip()
        if not _check_code(code, n, problems):
            continue
        if levels is not None and lv not in levels:
            problems.add(n, f"level {lv!r} is not in code_sources.levels ({', '.join(sorted(levels))})")
            continue
        codes.append(code)
        code_levels.append(lv)
        lines.append(n)
    if not codes and not problems.total:
        problems.add(None, "the file holds no codes")
    _find_file_duplicates(codes, problems, lines)
    return codes, code_levels


def _find_file_duplicates(codes: Sequence[str], problems: _Problems, lines: Sequence[int] | None = None) -> None:
    if len(set(codes)) == len(codes):
        return
    first: dict[str, int] = {}
    for i, c in enumerate(codes):
        line = lines[i] if lines else i + 1
        if not c:
            continue  # already reported as an empty line
        if c in first:
            problems.add(line, f"duplicate code {c[:40]!r} (first on line {first[c]})")
        else:
            first[c] = line


def _store(
    ledger: Ledger, name: str, package_id: str, source: str, codes: list[str], code_levels: list[str],
    body_sha: str, *, issuer: str, code_format: str, created: str | None, signed: bool,
    progress: Progress | None,
) -> ImportResult:
    counts: dict[str, int] = {}
    for lv in code_levels:
        counts[lv] = counts.get(lv, 0) + 1
    pkg_level = code_levels[0] if len(counts) == 1 else "mixed"
    with ledger.lock:
        row = ledger.conn.execute(
            "SELECT imported_at, count FROM packages WHERE package_id = ?", (package_id,)
        ).fetchone()
        if row is not None:
            return ImportResult(package_id, source, int(row["count"]), counts, already_imported=True,
                                imported_at=float(row["imported_at"]))
        if ledger.conn.in_transaction:
            ledger.commit()  # the import stands alone: nothing else rides in its transaction
        now = time.time()
        try:
            with ledger.atomic(durable=True) as conn:
                cur = conn.execute(
                    "INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source,"
                    " signed, created_at, imported_at, file_name) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (package_id, issuer, pkg_level, len(codes), code_format, body_sha, source, int(signed),
                     created, now, Path(name).name),
                )
                pk = int(cur.lastrowid or 0)
                for done, chunk in _chunks(codes, code_levels):
                    conn.executemany(
                        "INSERT INTO codes(code, level, package) VALUES (?, ?, ?)",
                        ((c, lv, pk) for c, lv in chunk),
                    )
                    if progress:
                        progress(done, len(codes))
                ledger.append_event("package.imported", {"package_id": package_id, "source": source,
                                                         "count": len(codes), "levels": counts})
        except sqlite3.IntegrityError:
            _report_held_duplicates(ledger, name, codes)
            raise
    return ImportResult(package_id, source, len(codes), counts, imported_at=now)


def _chunks(codes: list[str], levels: list[str]) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    for start in range(0, len(codes), CHUNK):
        end = min(start + CHUNK, len(codes))
        yield end, list(zip(codes[start:end], levels[start:end], strict=True))


def _report_held_duplicates(ledger: Ledger, name: str, codes: list[str]) -> None:
    """The import hit the UNIQUE index: find which codes are already held and say where."""
    problems = _Problems(name)
    with ledger.lock:
        conn = ledger.conn
        for start in range(0, len(codes), 500):
            chunk = codes[start:start + 500]
            marks = ",".join("?" * len(chunk))
            held = {
                r[0]: r[1]
                for r in conn.execute(
                    f"SELECT c.code, p.package_id FROM codes c JOIN packages p ON p.id = c.package "
                    f"WHERE c.code IN ({marks})", chunk)
            }
            for i, c in enumerate(chunk, start + 1):
                if c in held:
                    problems.add(i, f"code {c[:40]!r} is already held (package {held[c]})")
    if not problems.total:
        problems.add(None, "the ledger refused the codes (unique index) but no held duplicate was found")
    raise ImportRefused(name, problems.items, problems.total)
