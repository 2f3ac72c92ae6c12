"""Tests of framework.runtime."""
