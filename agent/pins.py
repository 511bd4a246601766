"""Operator PINs: stored as a slow, salted scrypt hash; repeated wrong PINs lock the actions out.

Why scrypt and a lock-out: a PIN has few digits. A bare SHA-256 of it (what the config held before)
is reversed by trying all 10^6 six-digit PINs in well under a second, by anyone who can read the
config. scrypt (RFC 7914) with N=2^15, r=8 costs ~50 ms and 32 MiB per try, so the same search takes
hours and cannot be done on a GPU cheaply; the lock-out (LOCKOUT_AFTER wrong PINs within
LOCKOUT_WINDOW_S refuse every PIN action until the window has passed, counted from the audit log so it
survives restarts) stops guessing at the terminal. The window is measured on the boot clock each audit row
carries (agent/clock.py), not the wall clock: setting the time forward does not end a lock-out, setting
it back does not stretch one beyond the window. The PIN itself is never written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from agent.clock import Stamp, elapsed, stamp

SCHEME = "scrypt"
N, R, P = 2**15, 8, 1
MAXMEM = 64 * 1024 * 1024
LOCKOUT_AFTER = 5
LOCKOUT_WINDOW_S = 600.0
WRONG = "refused: wrong operator PIN"


class PinFormatError(ValueError):
    pass


def hash_pin(pin: str, *, n: int = N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=R, p=P, maxmem=MAXMEM, dklen=32)
    return f"{SCHEME}${n}${R}${P}${_b64(salt)}${_b64(digest)}"


def check_format(stored: str) -> None:
    """PinFormatError unless `stored` is a hash this module wrote (the config validates with it)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise PinFormatError("not an operator PIN hash (make one with: lineagent keys pin-hash)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise PinFormatError("a damaged operator PIN hash (make a new one with: lineagent keys pin-hash)") from None
    if n < 2**14 or n & (n - 1) or r < 8 or p < 1 or len(salt) < 16 or len(digest) < 32:
        raise PinFormatError("an operator PIN hash weaker than scrypt N=16384, r=8 (make a new one)")


def verify_pin(stored: str, pin: str) -> bool:
    check_format(stored)
    _scheme, n_s, r_s, p_s, salt_s, digest_s = stored.split("$")
    want = _unb64(digest_s)
    got = hashlib.scrypt(pin.encode(), salt=_unb64(salt_s), n=int(n_s), r=int(r_s), p=int(p_s), maxmem=MAXMEM,
                         dklen=len(want))
    return hmac.compare_digest(got, want)


def locked_until(failures: list[Stamp], now: Stamp | None = None) -> float | None:
    """The wall time at which PIN actions open again, given when the latest wrong PINs were audited (at
    least the last LOCKOUT_AFTER); None when they are open now."""
    now = stamp() if now is None else now
    ages = sorted(age for f in failures if (age := elapsed(f, now)) < LOCKOUT_WINDOW_S)
    if len(ages) < LOCKOUT_AFTER:
        return None
    return now.wall + LOCKOUT_WINDOW_S - ages[LOCKOUT_AFTER - 1]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
