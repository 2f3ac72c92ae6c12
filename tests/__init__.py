"""Tests of the OmniNode Bridge framework and nodes."""
