"""Tests of framework/cli."""
