"""Render the text printed on an item from the code held in the ledger and the job's product data.

The ledger holds the code as issued (a serial, or a whole URL for 一物一码 QR); what the coder prints
depends on the template: a GS1 Digital Link URI, a GS1 element string for DataMatrix (with GS
separators), a URL prefix + code, or the raw code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from agent.codes import gs1
from agent.config.model import TemplateConfig, TemplateKind


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
