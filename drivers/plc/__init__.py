"""The line PLC over Modbus (TCP or RTU); the only part of the agent that knows pymodbus."""

from drivers.plc.bus import ModbusBus, PlcDeviceError, PlcError, PlcLinkError, PlcProtocolError, PlcTimeout, Table
from drivers.plc.plc import U16, Buses, GateMode, LinePlc, PlcSettings, Point, RegisterMap, Signal, unwrap

__all__ = [
    "U16", "Buses", "GateMode", "LinePlc", "ModbusBus", "PlcDeviceError", "PlcError", "PlcLinkError",
    "PlcProtocolError", "PlcSettings", "PlcTimeout", "Point", "RegisterMap", "Signal", "Table", "unwrap",
]
