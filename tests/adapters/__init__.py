"""Tests of framework/adapters."""
