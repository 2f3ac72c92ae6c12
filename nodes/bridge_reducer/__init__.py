"""The bridge_reducer node (contract: contracts/bridge_reducer.yaml)."""
