"""lineagent: the line logic (codes, jobs, items, aggregation). Never touches bytes on a wire."""

__version__ = "0.1.0"
