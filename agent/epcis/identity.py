"""Which URI an event names a code by: one identity per code, decided by the job's template and the config.

Why one place: a consumer who scans an item must find its history under the identity the scan gives,
and a box must be the same URI as a parent and later as a child. So every producer (verification,
aggregation, operator corrections) asks `Identity.epc` and nothing else builds an EPC.

The rules (docs/cloud-contract.md, "Identity"):
- an item of a job whose template prints GS1 (digital_link, element_string) is the SGTIN of the job's
  GTIN and the code as serial;
- a code of a level with its own GTIN (code_sources.levels.<level>.gtin: a box, a case) is the SGTIN
  of that GTIN and the code as serial;
- a code of a level that mints SSCCs, or of code_format `sscc`, is that SSCC;
- any other code is read as printed: a GS1 Digital Link, element string or EPC URN names its SGTIN
  or SSCC (agent.codes.forms), another URI (a 一物一码 URL) names itself, and anything else (a raw serial, a 20-digit
  drug traceability code) is `<identity.code_namespace><percent-encoded code>`.
SGTINs and SSCCs are EPC URNs (EPC Tag Data Standard 2.x, 6.3.1 and 6.3.2) or canonical GS1 Digital
Link URIs (GS1 Digital Link URI Syntax 1.2), as `identity.epc_form` says; both forms hash to the same
eventID (CBV 2.0, 8.9: the hash canonicalises EPC URNs to that Digital Link).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from agent.codes import gs1
from agent.codes.forms import Form, FormError, read

if TYPE_CHECKING:
    from agent.config import LineConfig

URN, DIGITAL_LINK = "urn", "digital_link"  # the values of identity.epc_form
GS1_TEMPLATES = frozenset({"digital_link", "element_string"})
# For contexts built in code without a config (tests, benches): RFC 6963's namespace for examples.
# A configured line never uses it: LineContext.from_config takes identity.code_namespace or none.
EXAMPLE_NAMESPACE = "urn:example:lineagent:code:"
_URI = re.compile(r"^(?:https?://[^/?#\s]+|urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:)\S*$")
_URI_CHARS = ":/?#[]@!$&'()*+,;=%-._~"  # RFC 3986 reserved and unreserved: kept as they are


class IdentityError(ValueError):
    """A code no rule can name; the message names the code and the setting that would."""


@dataclass(frozen=True, slots=True)
class Identity:
    form: str = URN
    company_prefix_length: int = 7
    code_namespace: str | None = None
    prefix_lengths: tuple[tuple[str, int], ...] = ()  # GTIN-14 -> company prefix length
    templates: tuple[tuple[str, str, str], ...] = ()  # name, kind, url_prefix
    level_gtins: tuple[tuple[str, str], ...] = ()  # level -> GTIN-14 of its trade item
    sscc_levels: frozenset[str] = frozenset()  # levels whose codes are SSCCs
    sscc_prefix: str | None = None  # extension digit + company prefix of the minted series
    _prefix: dict[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _levels: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _templates: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        self._prefix.update(self.prefix_lengths)
        self._levels.update(self.level_gtins)
        self._templates.update({n: (k, p) for n, k, p in self.templates})

    @classmethod
    def from_config(cls, cfg: LineConfig) -> Identity:
        ident = cfg.identity
        prefixes = {p.gtin: p.company_prefix_length for p in cfg.products.values()}
        gtins: dict[str, str] = {}
        sscc_levels = {name for name, src in cfg.code_sources.levels.items() if src.code_format == "sscc"}
        for name, src in cfg.code_sources.levels.items():
            if src.gtin:
                gtins[name] = src.gtin
                prefixes.setdefault(src.gtin, src.company_prefix_length or ident.company_prefix_length)
        for spec in cfg.packing_specs.values():
            sscc_levels.update(lv.level for lv in spec.levels if lv.parent_code == "mint")
        series = cfg.code_sources.sscc
        return cls(
            form=str(ident.epc_form), company_prefix_length=ident.company_prefix_length,
            code_namespace=ident.code_namespace, prefix_lengths=tuple(sorted(prefixes.items())),
            templates=tuple((n, str(t.kind), t.url_prefix or "") for n, t in sorted(cfg.templates.items())),
            level_gtins=tuple(sorted(gtins.items())), sscc_levels=frozenset(sscc_levels),
            sscc_prefix=f"{series.extension_digit}{series.company_prefix}" if series else None,
        )

    def epc(self, code: str, *, level: str | None = None, gtin: str | None = None,
            template: str | None = None) -> str:
        """The URI events name `code` by. `gtin` and `template` are the job's when `code` is an item
        the job prints; `level` is the code's level otherwise (a box, a case, a pallet)."""
        return _epc(self, code, level, gtin, template)

    def sgtin(self, gtin: str, serial: str) -> str:
        g = gs1.normalise_gtin(gtin)
        if self.form == DIGITAL_LINK:
            return gs1.sgtin_dl(g, serial)
        return gs1.sgtin_uri(g, serial, self._prefix.get(g, self.company_prefix_length))

    def sscc(self, sscc: str) -> str:
        if self.form == DIGITAL_LINK:
            return gs1.sscc_dl(sscc)
        length = self.company_prefix_length
        if self.sscc_prefix and sscc.startswith(self.sscc_prefix):
            length = len(self.sscc_prefix) - 1
        return gs1.sscc_uri(sscc, length)

    def printed(self, text: str) -> str:
        """A code read as printed (agent.codes.forms): GS1 key, URI as it is, or under the namespace.

        Eighteen bare digits are no SSCC here (any serial may look so): only a level says that. GS1
        data that does not hold (a wrong check digit) names no key and is a plain code.
        """
        try:
            p = read(text)
        except FormError:
            p = None
        if p is not None and p.sscc and p.form is not Form.SSCC:
            return self.sscc(p.sscc)
        if p is not None and p.gtin and p.serial:
            return self.sgtin(p.gtin, p.serial)
        if _URI.match(text):  # a 一物一码 URL names itself; non-ASCII is percent-encoded (RFC 3987, 3.1)
            return text if text.isascii() else quote(text, safe=_URI_CHARS)
        if self.code_namespace is None:
            raise IdentityError(
                f"code {text!r} is no GS1 key and no URI, and identity.code_namespace is not set: "
                "events cannot name it")
        return self.code_namespace + quote(text, safe="")


@functools.lru_cache(maxsize=1 << 16)
def _epc(identity: Identity, code: str, level: str | None, gtin: str | None, template: str | None) -> str:
    """Cached: a code is named again and again (commissioned, packed, a parent and then a child)."""
    code = code.strip()
    if not code:
        raise IdentityError("an empty code has no identity")
    try:
        if gtin and template is not None:
            kind, url_prefix = identity._templates.get(template, ("raw", ""))
            if kind in GS1_TEMPLATES and gs1.SERIAL_RE.match(code):
                return identity.sgtin(gtin, code)
            return identity.printed(f"{url_prefix}{code}" if kind == "url" else code)
        level_gtin = identity._levels.get(level) if level else None
        if level_gtin and gs1.SERIAL_RE.match(code):
            return identity.sgtin(level_gtin, code)
        if level in identity.sscc_levels and len(code) == 18 and code.isdigit():
            return identity.sscc(code)
        return identity.printed(code)
    except gs1.GS1Error as exc:
        raise IdentityError(f"code {code!r}: {exc}") from exc


def epcs_of(conn: sqlite3.Connection, identity: Identity, codes: Iterable[str]) -> dict[str, str]:
    """code -> URI for codes of the ledger on `conn`, each by its own level and job (one query).

    A code the ledger does not hold is named as printed.
    """
    wanted = list(dict.fromkeys(codes))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        rows = conn.execute(
            "SELECT c.code, c.level, j.gtin, j.template, j.level FROM codes c LEFT JOIN jobs j ON j.id = c.job"
            f" WHERE c.code IN ({','.join('?' * len(chunk))})", chunk,
        ).fetchall()
        for code, level, gtin, template, job_level in rows:
            if gtin is not None and level == job_level:
                out[code] = identity.epc(code, gtin=gtin, template=template)
            else:
                out[code] = identity.epc(code, level=level)
    for code in wanted:
        if code not in out:
            out[code] = identity.epc(code)
    return out
