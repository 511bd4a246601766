"""GS1 identifiers: check digits, SSCC minting, and rendering item codes from templates.

Why here and not in a library: the rules are small, exact and must not change under us; every
function is tested against GS1's published examples (tests/codes/test_gs1.py).
"""

from __future__ import annotations

import functools
import re
from datetime import date
from urllib.parse import quote

GS = "\x1d"  # FNC1 as transmitted inside a GS1 DataMatrix / GS1-128 element string


class GS1Error(ValueError):
    pass


def check_digit(body: str) -> int:
    """GS1 mod-10 check digit of the digits before it (weights 3,1,3,... from the right)."""
    if not body.isdigit():
        raise GS1Error(f"{body!r}: GS1 keys are digits only")
    total = 3 * sum(map(int, body[-1::-2])) + sum(map(int, body[-2::-2]))  # no per-digit generator
    return (10 - total % 10) % 10


def validate_key(key: str, length: int, name: str) -> str:
    if len(key) != length or not key.isdigit():
        raise GS1Error(f"{name} {key!r} must be {length} digits")
    expected = check_digit(key[:-1])
    if int(key[-1]) != expected:
        raise GS1Error(f"{name} {key!r} has check digit {key[-1]}, expected {expected}")
    return key


@functools.lru_cache(maxsize=1024)
def normalise_gtin(gtin: str) -> str:
    """Any GTIN-8/12/13/14 with a valid check digit, as GTIN-14 (the form used in AI (01)).

    Cached: a line names every item by its job's GTIN (agent/epcis/identity.py), so the same few
    GTINs are checked once per item otherwise; a refused GTIN raises and is not cached."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        raise GS1Error(f"GTIN {gtin!r} must be 8, 12, 13 or 14 digits")
    return validate_key(gtin.zfill(14), 14, "GTIN")


def validate_sscc(sscc: str) -> str:
    return validate_key(sscc, 18, "SSCC")


def make_sscc(extension: int, company_prefix: str, serial_ref: int) -> str:
    """SSCC = extension digit + company prefix + serial reference (16 digits together) + check."""
    if not 0 <= extension <= 9:
        raise GS1Error(f"SSCC extension digit {extension} must be 0-9")
    if not company_prefix.isdigit() or not 6 <= len(company_prefix) <= 12:
        raise GS1Error(f"GS1 company prefix {company_prefix!r} must be 6-12 digits")
    width = 16 - len(company_prefix)
    if not 0 <= serial_ref < 10**width:
        raise GS1Error(
            f"SSCC serial reference {serial_ref} does not fit {width} digits after prefix {company_prefix}"
        )
    body = f"{extension}{company_prefix}{serial_ref:0{width}d}"
    return body + str(check_digit(body))


SERIAL_RE = re.compile(r"^[!\"%-/0-9:-?A-Z_a-z]{1,20}$")  # GS1 AI encodable character set 82
LOT_RE = SERIAL_RE


def _check_serial(serial: str, what: str = "serial") -> str:
    if not SERIAL_RE.match(serial):
        raise GS1Error(f"{what} {serial!r} must be 1-20 characters of the GS1 AI character set")
    return serial


def yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


def digital_link(domain: str, gtin: str, serial: str, lot: str | None = None, expiry: date | None = None) -> str:
    """GS1 Digital Link URI: https://<domain>/01/<gtin14>/10/<lot>/21/<serial>?17=<yymmdd>."""
    g = normalise_gtin(gtin)
    uri = f"https://{domain.strip('/')}/01/{g}"
    if lot:
        uri += f"/10/{quote(_check_serial(lot, 'lot'), safe='')}"
    uri += f"/21/{quote(_check_serial(serial), safe='')}"
    if expiry:
        uri += f"?17={yymmdd(expiry)}"
    return uri


def element_string(gtin: str, serial: str, lot: str | None = None, expiry: date | None = None,
                   *, human: bool = False) -> str:
    """GS1 element string for a GS1 DataMatrix: fixed-length AIs first, GS after variable ones.

    Order (01)(17)(10)(21): fixed-length AIs need no separator, so only the lot (10) needs a GS
    when the serial follows it. `human=True` gives the bracketed form for labels and logs.
    """
    g = normalise_gtin(gtin)
    _check_serial(serial)
    if human:
        s = f"(01){g}"
        if expiry:
            s += f"(17){yymmdd(expiry)}"
        if lot:
            s += f"(10){_check_serial(lot, 'lot')}"
        return s + f"(21){serial}"
    s = f"01{g}"
    if expiry:
        s += f"17{yymmdd(expiry)}"
    if lot:
        s += f"10{_check_serial(lot, 'lot')}{GS}"
    return s + f"21{serial}"


# EPC Tag Data Standard 2.x, section 6.3 / Table A-1 ("GS1 AI encodable character set 82" in EPC
# URIs): of the 82 characters only these seven are percent-escaped in the serial of an SGTIN URI;
# every other one (! ' ( ) * + , - . : ; = _ and alphanumerics) stands as itself.
_TDS_ESCAPES = str.maketrans({'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"})


def epc_escape(value: str) -> str:
    """A GS1 serial as the EPC URI writes it (TDS 2.x Table A-1): only the seven listed characters."""
    return value.translate(_TDS_ESCAPES)


def sgtin_uri(gtin: str, serial: str, company_prefix_len: int = 7) -> str:
    """EPC pure identity URI urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial (TDS 2.x 6.3.1)."""
    g = normalise_gtin(gtin)
    if not 6 <= company_prefix_len <= 12:
        raise GS1Error("company prefix length must be 6-12")
    indicator, rest = g[0], g[1:13]
    cp, item = rest[:company_prefix_len], rest[company_prefix_len:]
    return f"urn:epc:id:sgtin:{cp}.{indicator}{item}.{epc_escape(_check_serial(serial))}"


def sscc_uri(sscc: str, company_prefix_len: int = 7) -> str:
    """EPC pure identity URI urn:epc:id:sscc:CompanyPrefix.ExtensionSerialRef (TDS 2.x 6.3.2)."""
    s = validate_sscc(sscc)
    if not 6 <= company_prefix_len <= 12:
        raise GS1Error("company prefix length must be 6-12")
    ext, rest = s[0], s[1:17]
    return f"urn:epc:id:sscc:{rest[:company_prefix_len]}.{ext}{rest[company_prefix_len:]}"


CANONICAL_DL = "https://id.gs1.org"  # GS1 Digital Link URI Syntax 1.2: the domain of the canonical DL URI


# The seven EPC escapes plus these: the canonical form CBV 2.0, 8.9 gives an SGTIN's serial when it
# turns an EPC URN into a Digital Link for the event hash. Written so, both forms of one SGTIN are
# the same string to the hash and the same eventID (tests/epcis/test_identity.py).
_DL_ESCAPES = str.maketrans({"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"})


def sgtin_dl(gtin: str, serial: str) -> str:
    """The canonical GS1 Digital Link of an SGTIN (GS1 Digital Link URI Syntax 1.2, "canonical GS1
    Digital Link URI": id.gs1.org, GTIN-14 and serial only). Its serial is percent-encoded as CBV 2.0,
    8.9 does ("%&/<>? and !()*+,: escaped, the rest as is), a valid path segment (RFC 3986, 3.3)."""
    return f"{CANONICAL_DL}/01/{normalise_gtin(gtin)}/21/{epc_escape(_check_serial(serial)).translate(_DL_ESCAPES)}"


def sscc_dl(sscc: str) -> str:
    return f"{CANONICAL_DL}/00/{validate_sscc(sscc)}"
