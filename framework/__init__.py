"""OmniNode Bridge framework: declarative, contract-driven event nodes."""

__version__ = "0.1.0"
