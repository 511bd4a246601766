"""`python -m agent ...` is `lineagent ...`: for a checkout without the console script installed (and the
fault harness, which runs the agent from the tree under test)."""

from agent.cli.main import main

main()
