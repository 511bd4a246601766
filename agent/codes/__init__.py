"""Codes: packages (码包) from the cloud, their import, and codes the line mints and renders itself."""
