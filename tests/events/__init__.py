"""Tests of framework.events."""
