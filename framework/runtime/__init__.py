"""The runtime: node kinds, the FSM engine, the catalog, and the host that runs nodes from contracts."""
