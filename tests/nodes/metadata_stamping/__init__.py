"""Tests of the metadata stamping node."""
