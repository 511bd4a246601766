"""The line PLC over Modbus (TCP or RTU); the only part of the agent that knows pymodbus."""

from drivers.plc.bus import ModbusBus, PlcDeviceError, PlcError, PlcLinkError, PlcProtocolError, PlcTimeout, Table
from drivers.plc.plc import Buses, LinePlc, PlcSettings, Point, RegisterMap, Signal, unwrap

__all__ = [
    "Buses", "LinePlc", "ModbusBus", "PlcDeviceError", "PlcError", "PlcLinkError", "PlcProtocolError", "PlcSettings",
    "PlcTimeout", "Point", "RegisterMap", "Signal", "Table", "unwrap",
]
