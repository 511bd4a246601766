"""Render the text printed on an item from the code held in the ledger and the job's product data.

The ledger holds the code as issued (a serial, or a whole URL for 一物一码 QR); what the coder prints
depends on the template: a GS1 Digital Link URI, a GS1 element string for DataMatrix (with GS
separators), a URL prefix + code, or the raw code.

Two texts per code. `render` gives the printed text as a scanner transmits it (an element string with
GS, 1Dh, where FNC1 separates fields, no leading FNC1): the verify station compares reads with it.
`coder_renderer` gives what is sent to one coder: the same text with FNC1 written the way that coder's
barcode takes it (`gs1_fnc1`, `gs1_fnc1_first` in its device settings, drivers/printers/base.py
CoderSettings). FNC1 goes after each variable-length field that is not last (GS1 General
Specifications, release 24.0, §7.8.5) and, when the coder's barcode is not in GS1 mode, first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from agent.codes import gs1
from agent.config.model import TemplateConfig, TemplateKind
from agent.i18n import _


class Fnc1NotSet(gs1.GS1Error):
    """A GS1 element-string job on a coder whose FNC1 spelling is not known: refused, not guessed."""


def render(template: TemplateConfig, code: str, *, gtin: str, lot: str | None, expiry: date | None) -> str:
    if template.kind is TemplateKind.RAW:
        return code
    if template.kind is TemplateKind.URL:
        return f"{template.url_prefix}{code}"
    if template.kind is TemplateKind.DIGITAL_LINK:
        assert template.domain  # enforced by the config model
        return gs1.digital_link(template.domain, gtin, code, lot=lot, expiry=expiry)
    return gs1.element_string(gtin, code, lot=lot, expiry=expiry)


def renderer(template: TemplateConfig, *, gtin: str, lot: str | None, expiry: date | None) -> Callable[[str], str]:
    """A one-argument renderer for a job, as the feeder takes it; fails early on bad product data."""
    gs1.normalise_gtin(gtin)

    def _render(code: str) -> str:
        return render(template, code, gtin=gtin, lot=lot, expiry=expiry)

    return _render


def coder_renderer(template: TemplateConfig, printed: Callable[[str], str], *, coder: str, fnc1: str | None,
                   fnc1_first: bool = False) -> Callable[[str], str]:
    """code -> the record text for `coder`; `printed` is the job's renderer. Only element strings change.

    Fnc1NotSet when the job prints element strings and the coder's spelling is unknown: printing the GS
    byte to a coder that does not take it as FNC1 gives a plain DataMatrix, which the supply chain
    cannot read as GS1."""
    if template.kind is not TemplateKind.ELEMENT_STRING:
        return printed
    if fnc1 is None:
        raise Fnc1NotSet(_("coder {coder}: a GS1 element-string job needs devices.coders.{coder}.gs1_fnc1, "
                           "how this coder takes FNC1 in its data (see docs/technicians.md, GS1 codes); "
                           "the job is not printed").format(coder=coder))
    spelling = fnc1

    def _render(code: str) -> str:
        text = printed(code)
        if spelling != gs1.GS and spelling in text:
            raise gs1.GS1Error(f"{text!r} holds {spelling!r}, the FNC1 spelling of coder {coder}: "
                               "the coder would read that data as FNC1")
        out = text.replace(gs1.GS, spelling)
        return spelling + out if fnc1_first else out

    return _render
