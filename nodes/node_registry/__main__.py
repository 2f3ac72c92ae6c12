"""python -m nodes.node_registry: host this node (flags as for onex run)."""

from framework.cli.run import main_for

raise SystemExit(main_for("node_registry"))
