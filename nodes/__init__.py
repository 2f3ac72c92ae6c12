"""The shipped OmniNode Bridge nodes, one package each; each runs with python -m nodes.<name>."""
