"""Tests of framework.contract."""
