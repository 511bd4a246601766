"""Operator-facing text in the operator's language: gettext, domain "lineagent", en and zh_CN.

Why call-time translation: the language is known only once a command has read its config
(`locale:`), so nothing translates at import and keeps it; `_()` asks the current catalogue each
time. Without a config the standard gettext order decides: LANGUAGE (a colon list, ignored when
the locale is C/POSIX, as GNU gettext does), then LC_ALL, LC_MESSAGES, LANG. A language we do
not ship falls back to English, which is the msgid itself.

Translators see whole sentences with named placeholders: `_("no job {name!r}").format(name=n)`.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

DOMAIN: Final = "lineagent"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
SUPPORTED: Final = ("en", "zh_CN")
DEFAULT: Final = "en"

_current: gettext.NullTranslations | None = None
_language: str = DEFAULT


def normalise(name: str | None) -> str | None:
    """A shipped language for a locale name (zh_CN.UTF-8, zh_Hans, en_US, C), or None when unknown."""
    if not name:
        return None
    base = name.split(".", 1)[0].split("@", 1)[0].replace("-", "_")
    if base in ("C", "POSIX") or base.lower().startswith("en"):
        return "en"
    low = base.lower()
    # Simplified Chinese: zh_CN, zh_SG, zh_Hans and a bare zh; Taiwan/Hong Kong use traditional script.
    if low in ("zh", "zh_cn", "zh_sg", "zh_hans", "zh_hans_cn"):
        return "zh_CN"
    return None


def env_language(environ: Mapping[str, str] | None = None) -> str:
    """The language the environment asks for, in gettext's order; English when it names none we ship."""
    env = os.environ if environ is None else environ
    locale = next((env[v] for v in ("LC_ALL", "LC_MESSAGES", "LANG") if env.get(v)), "")
    if env.get("LANGUAGE") and locale.split(".", 1)[0] not in ("C", "POSIX"):
        for part in env["LANGUAGE"].split(":"):
            found = normalise(part)
            if found:
                return found
    return normalise(locale) or DEFAULT


def set_language(language: str | None = None) -> str:
    """Use `language` (a config's `locale:`), or the environment's when None; returns the one in use."""
    global _current, _language
    chosen = normalise(language) if language else env_language()
    _language = chosen or DEFAULT
    _current = gettext.translation(DOMAIN, LOCALE_DIR, languages=[_language], fallback=True)
    return _language


def language() -> str:
    if _current is None:
        set_language()
    return _language


def _catalogue() -> gettext.NullTranslations:
    if _current is None:
        set_language()
    assert _current is not None
    return _current


def _(message: str) -> str:
    """`message` in the current language (the English msgid when untranslated)."""
    return _catalogue().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _catalogue().ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`message` where the same English word means two things (a state and a column, say)."""
    return _catalogue().pgettext(context, message)


def english(message: str) -> str:
    """The msgid as it is: for texts kept in English whatever the operator reads (the audit log)."""
    return message


def N_(message: str) -> str:
    """Marks a string for the catalogue without translating it now; translate with `_()` where shown."""
    return message
