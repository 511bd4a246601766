"""The daemon's control socket: how the CLI drives a running line (status, jobs, alarms)."""
