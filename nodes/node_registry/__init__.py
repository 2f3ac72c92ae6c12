"""The node_registry node (contract: contracts/node_registry.yaml)."""
