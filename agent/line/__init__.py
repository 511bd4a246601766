"""The line runtime: builds a running line from the config (coders, verification, aggregation, sync)
and the simulated line that stands in for every device of a config (tests, the demo, benchmarks)."""
