"""The daemon's and the jobs' refusals in the operator's language.

Why the CLI matches English text: the control socket answers in English whatever language each
operator's CLI speaks (logs, the audit and scripts read one language), and a JobError carries the
English text that also goes into the audit log. Every such refusal is built from a template marked with
N_ (agent/control/protocol.py, agent/jobs.py); the CLI matches the text against those templates, takes
the values back and formats the translated template with them. A text that matches none (a daemon of
another version, an error from below) is shown as it came.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from functools import cache

from agent.cli.common import state_name
from agent.control import protocol
from agent.i18n import _
from agent.jobs import REFUSALS as JOB_REFUSALS

# Values that are words themselves: a job state is shown in the operator's language.
CONVERT: dict[str, Callable[[str], str]] = {"state": state_name, "target": state_name}


class _Shown(str):
    """A value as it stood in the English text: `!r` gives it back unchanged (it is a repr already)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


@cache
def _patterns() -> list[tuple[re.Pattern[str], str]]:
    """Each template as a regular expression, the most specific (most literal text) first, so that
    "job 'A' is already ending (stop)" is not read as "job {job!r} is already {state}"."""
    out: list[tuple[int, re.Pattern[str], str]] = []
    for template in (*protocol.REFUSALS, *JOB_REFUSALS):
        regex, literal = [], 0
        for text, name, _spec, _conv in string.Formatter().parse(template):
            regex.append(re.escape(text))
            literal += len(text)
            if name is not None:
                regex.append(f"(?P<{name}>.*?)")
        out.append((literal, re.compile("".join(regex), re.DOTALL), template))
    return [(pattern, template) for _n, pattern, template in sorted(out, key=lambda x: -x[0])]


def refusal(text: str) -> str:
    """`text` (a refusal in English) in the operator's language; as it is when no template matches."""
    for pattern, template in _patterns():
        found = pattern.fullmatch(text)
        if found:
            values = {k: _Shown(CONVERT[k](v) if k in CONVERT else v) for k, v in found.groupdict().items()}
            return _(template).format(**values)
    return text
