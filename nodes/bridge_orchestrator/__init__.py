"""The bridge_orchestrator node (contract: contracts/bridge_orchestrator.yaml)."""
