"""python -m nodes.bridge_reducer: host this node (flags as for onex run)."""

from framework.cli.run import main_for

raise SystemExit(main_for("bridge_reducer"))
