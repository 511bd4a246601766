"""Config primitives shared by agent/ and drivers/: the strict pydantic base (unknown keys refused) and
the YAML loader that keeps every key's line for error messages.

Why a package of its own: drivers validate their own device sections but must import nothing from
agent/ (a driver knows nothing of jobs or the ledger), and the agent's config builds on the same
primitives. A leaf both can use keeps that rule true by construction (import-linter checks it).
"""
