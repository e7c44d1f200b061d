"""`manage.py seed_products --count N [--replace]`: load N plausible products with PostgreSQL
COPY, into an empty table unless --replace, and drop every cached entry after the commit."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connection, transaction

from inventory_project.management.database import DatabaseCommand
from products import cache
from products.models import Product

ADJECTIVES = [
    "Compact", "Heavy-duty", "Classic", "Premium", "Portable", "Rugged", "Slim", "Deluxe",
    "Industrial", "Eco", "Pro", "Mini", "Ultra", "Smart", "Vintage", "Modular",
]  # fmt: skip
MATERIALS = [
    "Aluminium", "Oak", "Copper", "Carbon", "Ceramic", "Bamboo", "Glass", "Leather",
    "Nylon", "Brass", "Walnut", "Titanium", "Cotton", "Rubber", "Granite", "Acrylic",
]  # fmt: skip
NOUNS = [
    "Hammer", "Kettle", "Lamp", "Chair", "Bracket", "Wrench", "Bottle", "Shelf", "Drill",
    "Bucket", "Ladder", "Toolbox", "Clamp", "Hinge", "Valve", "Pan", "Desk", "Stool",
]  # fmt: skip
# About 1 % of names contain "Steel", so a search for it is selective (benchmarks rely on it).
STEEL_SHARE = 0.01
BATCH_ROWS = 50_000
# Below this, inserting through the indexes is cheaper than rebuilding them.
REBUILD_INDEXES_FROM = 50_000


def product_rows(count: int, seed: int) -> Any:
    """Deterministic plausible rows (name, price, stock_level) as COPY text lines."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    for serial in range(1, count + 1):
        material = "Steel" if rng.random() < STEEL_SHARE else rng.choice(MATERIALS)
        name = f"{rng.choice(ADJECTIVES)} {material} {rng.choice(NOUNS)} {serial:07d}"
        cents = int(rng.lognormvariate(7.5, 1.2)) % 10_000_000 + 1
        stock = 0 if rng.random() < 0.05 else rng.randint(1, 500)
        yield f"{name}\t{cents // 100}.{cents % 100:02d}\t{stock}\n"


class Command(DatabaseCommand):
    help = (
        "Load N plausible products with PostgreSQL COPY (1,000,000 in well under two minutes). "
        "Refuses a non-empty table unless --replace, which empties it first in the same "
        "transaction: the same command always leaves the same catalogue behind."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, default=1000, help="how many products (default: 1000)"
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed for the rows")
        parser.add_argument(
            "--replace", action="store_true", help="delete every existing product first"
        )

    interrupted = "interrupted: nothing was loaded (the load is one transaction, rolled back)"

    def handle(self, *args: object, **options: Any) -> None:
        count: int = options["count"]
        if count < 0:
            raise CommandError("--count must be >= 0")
        if options["seed"] < 0:  # Python's random would take it as its absolute value
            raise CommandError("--seed must be >= 0")
        started = time.monotonic()
        table = Product._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            # One seeding at a time: two at once on an empty table both found it empty and both
            # loaded a catalogue. This mode lets reads through and waits for other writers.
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            if options["replace"]:
                cursor.execute(f"TRUNCATE {table} RESTART IDENTITY")
            elif Product.objects.exists():
                raise CommandError("products already exist; use --replace to empty the table first")
            rebuild = count >= REBUILD_INDEXES_FROM
            indexes = self._secondary_indexes(cursor, table) if rebuild else []
            for name, _definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            now = datetime.now(UTC).isoformat()
            columns = "name, price, stock_level, created_at, updated_at, version"
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                batch: list[str] = []
                suffix = f"\t{now}\t{now}\t1\n"
                for line in product_rows(count, options["seed"]):
                    batch.append(line[:-1] + suffix)
                    if len(batch) >= BATCH_ROWS:
                        copy.write("".join(batch))
                        batch.clear()
                if batch:
                    copy.write("".join(batch))
            # COPY sends no model signals: drop every cached product read after commit.
            transaction.on_commit(cache.invalidate_all)
            if indexes:
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                for _name, definition in indexes:
                    cursor.execute(definition)
        # Fresh statistics for the planner and a visibility map for index-only scans (deep
        # pages); VACUUM cannot run inside the transaction.
        self.interrupted = (
            f"interrupted after loading {count} products, before their statistics were "
            f"refreshed: run VACUUM (ANALYZE) {table}"
        )
        with connection.cursor() as cursor:
            if connection.in_atomic_block:  # a caller's transaction: VACUUM is not allowed
                cursor.execute(f"ANALYZE {table}")
            else:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
        elapsed = time.monotonic() - started
        self.stdout.write(self.style.SUCCESS(f"seeded {count} products in {elapsed:.1f}s"))

    @staticmethod
    def _secondary_indexes(cursor: Any, table: str) -> list[tuple[str, str]]:
        cursor.execute(
            """
            SELECT i.relname, pg_get_indexdef(i.oid)
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = %s::regclass AND NOT x.indisprimary AND NOT x.indisunique
            """,
            [table],
        )
        return [(row[0], row[1]) for row in cursor.fetchall()]
