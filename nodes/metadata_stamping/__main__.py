"""python -m nodes.metadata_stamping: host this node (flags as for onex run)."""

from framework.cli.run import main_for

raise SystemExit(main_for("metadata_stamping"))
