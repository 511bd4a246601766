"""The `lineagent` command line (typer + rich)."""
