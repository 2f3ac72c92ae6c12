"""Conformance suites: one per port, each run against every implementation of that port (ARCHITECTURE §10.2)."""
