"""``onex db partitions [--ahead N] [--keep N]``: maintain the monthly partitions of ``hash_metrics``.

``onex migrate up`` runs it too (with the defaults). A running host only creates partitions (on start and then every
``ONEX_PARTITION_MAINTENANCE_S`` seconds, default 6 h) and never drops any: dropping old months is done here, with
``--keep``. Run it monthly (cron, a systemd timer) to apply the retention, and on a long-lived database no host keeps
running. Same database flags as ``onex migrate``; exit codes 0 done, 1 failed, 2 usage.
"""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING, Any

from framework.cli.migrate import connection_flags, print_partition_changes, run_with_migrator

if TYPE_CHECKING:
    from framework.adapters.migrator import Migrator


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "db",
        help="database maintenance",
        description="Database maintenance on --postgres-dsn / POSTGRES_DSN, else the embedded server under --data-dir.",
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    partitions = tasks.add_parser(
        "partitions",
        parents=[connection_flags(migrations_dir=False)],
        help="create the coming months' hash_metrics partitions and drop old ones",
        description="Create the hash_metrics partitions of this month (UTC) and the next N months (rows already "
        "waiting in the default partition move into them), and drop the partitions that ended more than --keep "
        "months before this month began. Needs the hash_metrics migration (onex migrate up).",
    )
    partitions.add_argument(
        "--ahead", type=int, default=3, metavar="N", help="months to prepare after this one (default 3)"
    )
    partitions.add_argument("--keep", type=int, default=12, metavar="N", help="months of history to keep (default 12)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    body = functools.partial(_partitions, ahead=args.ahead, keep=args.keep)
    return run_with_migrator(args, f"db {args.task}", body)


async def _partitions(migrator: Migrator, *, ahead: int, keep: int) -> int:
    print_partition_changes(await migrator.ensure_partitions(months_ahead=ahead, keep_months=keep))
    names = [name for name, _ in await migrator.partitions()]
    print(f"hash_metrics has {len(names)} partitions: {', '.join(names)}")
    return 0
