"""The line config's root model and its small sections."""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from agent import pins
from agent.codes import gs1
from agent.config.mqtt import MqttConfig
from agent.config.stations import StationConfig
from confkit.base import Strict


class SiteConfig(Strict):
    id: str = Field(min_length=1)
    name: str = ""
    sgln: str | None = None  # EPCIS bizLocation, e.g. urn:epc:id:sgln:0614141.00777.0


class LineIdentity(Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    read_point: str | None = None  # EPCIS readPoint; default urn:epc:id:sgln:... or a line URN
    utc_offset: str = "+00:00"

    @field_validator("utc_offset")
    @classmethod
    def _offset(cls, v: str) -> str:
        if not re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", v):
            raise ValueError("must look like +08:00 or -05:00")
        return v

    def tzinfo(self) -> timezone:
        sign = -1 if self.utc_offset[0] == "-" else 1
        h, m = int(self.utc_offset[1:3]), int(self.utc_offset[4:6])
        return timezone(sign * timedelta(hours=h, minutes=m))


class StorageConfig(Strict):
    ledger: Path = Path("/var/lib/lineagent/ledger.db")
    group_commit_ms: float = Field(10.0, gt=0, le=1000)
    # The line stops when the ledger's file system has less free space than this. None: the mqtt
    # section's min_free_disk_mb (where the setting used to live), else 200.
    min_free_disk_mb: int | None = Field(None, ge=0, le=1_000_000)
    # Space held beside the ledger (`<ledger>.reserve`) and given back when the disk fills, so the
    # stop itself can still be recorded (status, journal, the job's pause). 0: none.
    disk_reserve_mb: int = Field(16, ge=0, le=4096)


class ControlConfig(Strict):
    """The daemon's control socket (agent/control). Default path: beside the ledger, `<ledger>.sock`;
    under systemd /run/lineagent/control.sock is the usual choice. Mode 0660 and a group name decide
    which operators' accounts may drive the line; world access is refused."""

    socket: Path | None = None
    group: str | None = None
    mode: int = Field(0o660, ge=0, le=0o770)

    @model_validator(mode="after")
    def _no_world(self) -> ControlConfig:
        if self.mode & 0o007:
            raise ValueError(f"control.mode {oct(self.mode)} gives access to every account; use 0660 or 0600")
        return self


class MetricsConfig(Strict):
    """Prometheus metrics over HTTP. Off unless enabled; localhost unless an address is given."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=1, le=65535)


class SecurityConfig(Strict):
    cloud_public_key: Path  # Ed25519 key that signs code packages and commands
    line_private_key: Path | None = None  # X25519 key for packages encrypted to this line
    allow_unsigned_imports: bool = False  # plain TXT/CSV 码包 files
    # Destructive operator actions need the PIN whose scrypt hash this is (lineagent keys pin-hash).
    operator_pin_hash: str | None = None
    operator_pin_sha256: str | None = None  # refused: a bare SHA-256 of a PIN is reversed in a second

    @field_validator("operator_pin_hash")
    @classmethod
    def _pin_hash(cls, v: str | None) -> str | None:
        if v is not None:
            pins.check_format(v)
        return v

    @field_validator("operator_pin_sha256")
    @classmethod
    def _no_sha256(cls, v: str | None) -> str | None:
        if v is not None:
            raise ValueError("a bare SHA-256 of a PIN is not safe (all 6-digit PINs are tried in a second): "
                             "replace it with operator_pin_hash from `lineagent keys pin-hash`")
        return v


class LevelSource(Strict):
    low_stock: int = Field(0, ge=0, le=1_000_000_000)  # warn when available codes of this level fall below
    code_format: str = "raw"  # raw, url, digital_link, element_string, sscc ("sscc": its codes are SSCCs)
    # A trade item of its own (a box of 6 with a GTIN-14): the level's codes are serials of this GTIN,
    # so its events name SGTINs (agent/epcis/identity.py).
    gtin: str | None = None
    company_prefix_length: int | None = Field(None, ge=6, le=12)

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, v: str | None) -> str | None:
        return None if v is None else gs1.normalise_gtin(str(v))


class EpcForm(StrEnum):
    URN = "urn"  # urn:epc:id:sgtin:... / urn:epc:id:sscc:... (EPC Tag Data Standard 2.x, 6.3)
    DIGITAL_LINK = "digital_link"  # https://id.gs1.org/01/.../21/... (GS1 Digital Link URI Syntax 1.2)


class IdentityConfig(Strict):
    """How events name the codes (docs/cloud-contract.md, "Identity")."""

    epc_form: EpcForm = EpcForm.URN
    # Where the GTIN does not say (no product or level names it): the GS1 company prefix length of
    # GTINs and SSCCs, needed to split them into an EPC URN (TDS 2.x, 6.3.1). SSCCs of the configured
    # series use the length of code_sources.sscc.company_prefix.
    company_prefix_length: int = Field(7, ge=6, le=12)
    # An absolute URI prefix for codes that are no GS1 key and no URI (a raw serial, a 20-digit drug
    # traceability code): the event names <code_namespace><percent-encoded code>.
    code_namespace: str | None = None
    # The GLN of the party whose work orders the line runs: bizTransaction ids are
    # urn:epcglobal:cbv:bt:<gln>:<work order> (CBV 2.0, 8.5). Default: the GLN of site.sgln.
    gln: str | None = None

    @field_validator("code_namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*[/:#=]", v):
            raise ValueError("must be an absolute URI ending in '/', ':', '#' or '=' (e.g. https://codes.example.cn/c/)")
        return v

    @field_validator("gln")
    @classmethod
    def _gln(cls, v: str | None) -> str | None:
        return None if v is None else gs1.validate_key(str(v), 13, "GLN")


class SsccConfig(Strict):
    extension_digit: int = Field(0, ge=0, le=9)
    company_prefix: str = Field(pattern=r"^\d{6,12}$")
    serial_from: int = Field(ge=0)
    serial_to: int = Field(ge=0)

    @model_validator(mode="after")
    def _range(self) -> SsccConfig:
        if self.serial_to < self.serial_from:
            raise ValueError("serial_to is below serial_from")
        gs1.make_sscc(self.extension_digit, self.company_prefix, self.serial_to)
        return self


class CodeSources(Strict):
    levels: dict[str, LevelSource] = Field(default_factory=lambda: {"item": LevelSource()})
    sscc: SsccConfig | None = None


class TemplateKind(StrEnum):
    DIGITAL_LINK = "digital_link"  # https://<domain>/01/<gtin>/10/<lot>/21/<serial>?17=<yymmdd>
    ELEMENT_STRING = "element_string"  # GS1 DataMatrix: 01..17..10..<GS>21..
    URL = "url"  # 一物一码 QR: <prefix><code>
    RAW = "raw"  # the code itself


class TemplateConfig(Strict):
    kind: TemplateKind
    domain: str | None = None
    url_prefix: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> TemplateConfig:
        if self.kind is TemplateKind.DIGITAL_LINK and not self.domain:
            raise ValueError("a digital_link template needs 'domain'")
        if self.kind is TemplateKind.URL and not self.url_prefix:
            raise ValueError("a url template needs 'url_prefix'")
        return self


class ProductConfig(Strict):
    gtin: str
    name: str
    template: str = "raw"
    company_prefix_length: int = Field(7, ge=6, le=12)

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, v: str) -> str:
        return gs1.normalise_gtin(str(v))


class ParentSource(StrEnum):
    PREPRINTED = "preprinted"  # the parent carries a code from a package; scanned at the station
    PRINT = "print"  # a code from a package printed on demand (label printer or coder)
    MINT = "mint"  # the line mints it (SSCC)


class PackLevel(Strict):
    level: str
    count: int | None = Field(None, ge=1, le=100_000)  # children per parent; the bottom level has none
    parent_code: ParentSource | None = None


class PackingSpec(Strict):
    levels: list[PackLevel] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> PackingSpec:
        first, rest = self.levels[0], self.levels[1:]
        if first.count is not None or first.parent_code is not None:
            raise ValueError(f"the bottom level {first.level!r} takes no count or parent_code")
        for lv in rest:
            if lv.count is None or lv.parent_code is None:
                raise ValueError(f"level {lv.level!r} needs count and parent_code")
        names = [lv.level for lv in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("a level appears twice")
        return self


class DeviceEntry(BaseModel):
    """A device: `type:` names its driver; the rest is checked against that driver's Settings."""

    model_config = ConfigDict(extra="allow")
    type: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DevicesConfig(Strict):
    coders: dict[str, DeviceEntry] = Field(default_factory=dict)
    cameras: dict[str, DeviceEntry] = Field(default_factory=dict)
    readers: dict[str, DeviceEntry] = Field(default_factory=dict)
    plcs: dict[str, DeviceEntry] = Field(default_factory=dict)
    label_printers: dict[str, DeviceEntry] = Field(default_factory=dict)


class LineConfig(Strict):
    site: SiteConfig
    line: LineIdentity
    storage: StorageConfig = Field(default_factory=StorageConfig)
    security: SecurityConfig
    code_sources: CodeSources = Field(default_factory=CodeSources)
    templates: dict[str, TemplateConfig] = Field(
        default_factory=lambda: {"raw": TemplateConfig(kind=TemplateKind.RAW)}
    )
    products: dict[str, ProductConfig] = Field(default_factory=dict)
    packing_specs: dict[str, PackingSpec] = Field(default_factory=dict)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    stations: dict[str, StationConfig] = Field(default_factory=dict)
    mqtt: MqttConfig | None = None
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    # The operator's language for CLI messages and alarms; unset: LANGUAGE/LC_ALL/LC_MESSAGES/LANG.
    locale: Literal["en", "zh_CN"] | None = None

    # Set by the loader: where the file was, so relative paths resolve against it.
    source: Path | None = Field(default=None, exclude=True)

    def resolve(self, p: Path) -> Path:
        if p.is_absolute() or self.source is None:
            return p
        return (self.source.parent / p).resolve()

    def control_socket(self, ledger: Path) -> Path:
        """Where the daemon running on `ledger` listens (and the CLI calls)."""
        return self.resolve(self.control.socket) if self.control.socket else ledger.with_suffix(".sock")

    def device_settings(self, group: str, name: str) -> Any:
        """The validated driver Settings for a device (validated once by the loader)."""
        return self._settings[(group, name)]

    _settings: dict[tuple[str, str], Any] = PrivateAttr(default_factory=dict)  # filled by the loader
