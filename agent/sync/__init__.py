"""Cloud sync over MQTT: the uplink (outbox -> EPCIS batches, exactly once as the receiver sees it),
the downlink (signed commands), and the backlog policy."""
