"""Hardware talk: transports, framing, device drivers and their simulators.

Drivers know frames and registers; they know nothing of jobs, codes' meaning or the ledger.
"""
