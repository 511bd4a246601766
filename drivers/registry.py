"""The one explicit registry of drivers: (kind, type name) -> "module:Class", imported lazily.

Why lazy: a missing vendor library or a broken optional driver must break only the device that uses
it, not the agent's start-up. Why explicit: `lineagent config check` can list every valid `type:`
without importing anything. Each driver class carries a pydantic `Settings` model (extra keys
forbidden) that validates its device section of the line config.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class DeviceKind(StrEnum):
    CODER = "coders"
    CAMERA = "cameras"
    READER = "readers"
    PLC = "plcs"
    LABEL_PRINTER = "label_printers"


# Each part of the drivers package owns its own table; they are merged here.
CODERS: dict[str, str] = {
    "leibinger": "drivers.printers.leibinger:Leibinger",
    "generic": "drivers.printers.generic:GenericPrinter",
    "videojet_wsi": "drivers.printers.videojet:VideojetWsi",
    "hitachi": "drivers.printers.hitachi:HitachiBuffer",
    "markem_ngpcl": "drivers.printers.markem:MarkemNgpcl",
    "modbus_marker": "drivers.printers.modbus_marker:ModbusMarker",
}
CAMERAS: dict[str, str] = {
    "opencv": "drivers.cameras.opencv:OpenCVCamera",
    "folder": "drivers.cameras.folder:FolderCamera",
    "sim": "drivers.sim.camera:SimCamera",
    "banner_export": "drivers.cameras.banner_export:BannerImageExport",
}
READERS: dict[str, str] = {
    "dataman": "drivers.readers.dataman:DataMan",
    "keyence_sr": "drivers.readers.keyence:KeyenceSR",
    "generic": "drivers.readers.generic:GenericReader",
}
PLCS: dict[str, str] = {
    "modbus": "drivers.plc.plc:LinePlc",
}
LABEL_PRINTERS: dict[str, str] = {
    "zpl": "drivers.labels.zpl:ZplLabelPrinter",
}

TABLES: dict[DeviceKind, dict[str, str]] = {
    DeviceKind.CODER: CODERS,
    DeviceKind.CAMERA: CAMERAS,
    DeviceKind.READER: READERS,
    DeviceKind.PLC: PLCS,
    DeviceKind.LABEL_PRINTER: LABEL_PRINTERS,
}


class UnknownDriver(LookupError):
    pass


def names(kind: DeviceKind) -> list[str]:
    return sorted(TABLES[kind])


def load(kind: DeviceKind, name: str) -> Any:
    """Import and return the driver class registered as `name` for `kind`."""
    table = TABLES[kind]
    if name not in table:
        known = ", ".join(sorted(table)) or "none registered"
        raise UnknownDriver(f"no {kind[:-1].replace('_', ' ')} driver named {name!r} (known: {known})")
    module_name, _, attr = table[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def settings_model(kind: DeviceKind, name: str) -> type[BaseModel]:
    model = load(kind, name).Settings
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"driver {name!r} has no pydantic Settings model")
    return model


def register(kind: DeviceKind, name: str, target: str) -> None:
    """Add a driver (plug-ins, tests); the built-in ones are in the tables above."""
    TABLES[kind][name] = target
