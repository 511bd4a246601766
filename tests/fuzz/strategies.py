"""Hypothesis strategies for hostile answers, and the example budget (small by default, big for soak).

Budget (the "lineagent-fuzz" hypothesis profile below): scripts/test runs the fuzz directory on a busy
2-core machine in well under a minute, so the
default example counts are small; LINEAGENT_SOAK=1 multiplies them (SOAK_FACTOR). Each test names its
own default count through `budget(n)`: a Modbus example costs milliseconds, a coder example with
timeouts and reconnects a few hundred.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import SOAK
from tests.fuzz.hostile import (
    Action,
    Digits,
    Drop,
    Edit,
    Flood,
    Hangup,
    Insert,
    Overwrite,
    Pass,
    Reframe,
    Repeat,
    Replace,
    Rewrite,
    Stall,
    Truncate,
)

SOAK_FACTOR = 50
# Any other multiple for a hunt of one's own: LINEAGENT_FUZZ_FACTOR=10 python -m pytest tests/fuzz
FACTOR = int(os.environ.get("LINEAGENT_FUZZ_FACTOR", SOAK_FACTOR if SOAK else 1))
# A fuzz example waits on real links (ptys, sockets, a broker): its time says nothing about the code's
# speed (no deadline). The profile is registered here, not loaded globally: the rest of the suite keeps
# its own settings. A failure prints the @reproduce_failure blob that replays it exactly.
settings.register_profile("lineagent-fuzz", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def budget(examples: int) -> settings:
    """`examples` by default (scripts/test), SOAK_FACTOR times more under LINEAGENT_SOAK=1."""
    return settings(settings.get_profile("lineagent-fuzz"), max_examples=examples * FACTOR)


# Bytes that mean something in one protocol or another: delimiters, handshake tokens, escapes,
# separators, and bytes outside ASCII.
SPECIAL = [b"\x00", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\n", b"\r", b"\r\n", b"\x10", b"\x12",
           b"\x15", b"\x1b", b"\x1b#", b"^0", b"^", b"\\", b"{", b"}", b"$", b"!", b",", b";", b":", b"|",
           b"||", b"[", b"]", b">", b"=", b"?", b"\x7f", b"\x80", b"\xff", b"\xc3\xa9", b"\xef\xbb\xbf"]
NUMBERS = [b"0", b"00000000000000000000", b"9" * 40, b"-1", b"65535", b"65536", b"4294967295", b"4294967296",
           b"18446744073709551616", b"9" * 5000, b"1e9", b"0x10", b" 1", b"", b"+5", b"\xd9\xa3"]

special = st.sampled_from(SPECIAL)
noise = st.binary(max_size=64) | st.lists(special, min_size=1, max_size=12).map(b"".join)


def edits() -> st.SearchStrategy[tuple[Edit, ...]]:
    one: st.SearchStrategy[Edit] = st.one_of(
        st.builds(Truncate, st.integers(0, 64)),
        st.builds(Overwrite, st.integers(0, 255), special | st.binary(min_size=1, max_size=4)),
        st.builds(Insert, st.integers(0, 255), special | st.binary(min_size=1, max_size=8)),
        st.builds(Digits, st.sampled_from(NUMBERS)),
        st.builds(Repeat, st.integers(2, 64)),
    )
    return st.lists(one, min_size=1, max_size=3).map(tuple)


def actions(*, reframe: bool = True, extra: Sequence[bytes] = (),
            fields: st.SearchStrategy[tuple[Edit, ...]] | None = None, silent: bool = True
            ) -> st.SearchStrategy[Action]:
    """One hostile answer. `extra`: whole answers the target's protocol knows (valid or nearly);
    `fields`: edits of a frame's payload that know the protocol's fields (instead of generic edits);
    `silent`: also answers that never come (Drop, Stall)."""
    replacements = noise | st.sampled_from(list(extra)) if extra else noise
    choices: list[st.SearchStrategy[Action]] = [
        st.just(Pass()),
        st.builds(Rewrite, edits()),
        st.builds(Replace, replacements),
        st.builds(Hangup, st.integers(0, 32)),
        st.builds(Flood, st.sampled_from([b"A", b"\x00", b"\x02", b"9", b"\x02" + b"A" * 40, b"\r\n", b"^0",
                                          b"{", b"\x1b", b"$", b"$00", b"\xff"])),
    ]
    if silent:
        choices += [st.just(Drop()), st.just(Stall())]
    if reframe:
        choices.append(st.builds(Reframe, edits() if fields is None else fields))
    return st.one_of(choices)


def scripts(*, reframe: bool = True, extra: Sequence[bytes] = (), max_size: int = 6,
            fields: st.SearchStrategy[tuple[Edit, ...]] | None = None, silent: bool = True
            ) -> st.SearchStrategy[list[Action]]:
    return st.lists(actions(reframe=reframe, extra=extra, fields=fields, silent=silent), min_size=1,
                    max_size=max_size)


__all__ = ["Action", "Digits", "Drop", "Flood", "Hangup", "Insert", "Overwrite", "Pass", "Reframe", "Repeat",
           "Replace", "Rewrite", "Stall", "Truncate", "actions", "budget", "edits", "noise", "scripts"]
