"""Search keys that pair each piece of a name with the product's 100-dollar price bucket.

Migration 0005's index let a search by name and price range find its candidates in one GIN
scan: every three-character piece of the term (`@>`), and one of the buckets that tile the range
(`&&`). GIN still decodes each of those keys' posting lists in full before it intersects them:
for `steel` in 100-200 dollars, three lists of about 10,000 products and one of 54,000, to
return 604 candidates. That decoding was most of PostgreSQL's part of a search.

Here each product also has, for each piece of its upper-cased name, the hash of the piece paired
with its price's 100-dollar bucket (`STE@p2:1`: the piece STE, priced 100-199). A search asks,
for each bucket that tiles its range, for every piece of its term paired with that bucket's
100-dollar bucket, and for the bucket itself when it is finer; the buckets are ORed. Each list
GIN reads is then narrowed to one 100-dollar bucket: about 560 products for each piece of
`steel` at 100-199, and 540 for the 200-dollar bucket.

Measured with pgbench (two clients, copies of the bench's 1,000,000 products with only this
index and the primary key): 2,790 searches a second against 1,060 with 0005's keys, and 4,030
price updates against 4,780. A write that changes a price or a name inserts every key of the new
row into GIN's pending list: about 58 keys for a name of 28 characters, against 32. Pairing the
pieces with the 10- and 1,000-dollar buckets as well searched no faster (2,760 a second) and cost
updates a third more (3,110 a second), so only the 100-dollar buckets are paired. A range that
needs more than PRICE_LABELS_MAX branches (wider than a few thousand dollars, or tiled by
many 1,000-dollar buckets) is searched with 0005's unpaired keys, which this index keeps.

The functions are the only definition of the keys; products/selectors.py builds the bucket
labels. As in 0005, products_search_pieces calls the other functions by their schema, and the
keys are hashtext() values (REINDEX INDEX product_search_pieces if hashtext ever changes).
0005's index and its products_search_keys function go; the functions the queries call stay.
"""

import importlib

from django.apps.registry import Apps
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SEARCH_INDEX = "product_search_pieces"

FUNCTIONS = """
-- The pairs of each piece of the upper-cased term with one bucket label ('p<level>:<bucket>').
CREATE OR REPLACE FUNCTION products_piece_keys(term text, label text) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    upper_term text := upper(term);
    keys integer[] := '{}';
BEGIN
    FOR i IN 1 .. length(upper_term) - 2 LOOP
        keys := keys || hashtext(substr(upper_term, i, 3) || '@' || label);
    END LOOP;
    RETURN keys;
END
$$;

-- 0005's keys (the name's pieces, the price's buckets at six sizes), and each piece paired with
-- the price's 100-dollar bucket (level 2).
CREATE OR REPLACE FUNCTION products_search_pieces(name text, price numeric) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    keys integer[] := {schema}.products_name_keys(name);
    dollars bigint := floor(price)::bigint;
    label text;
BEGIN
    FOR level IN 0 .. 5 LOOP
        label := 'p' || level || ':' || dollars / (10::bigint ^ level)::bigint;
        keys := keys || hashtext(label);
        IF level = 2 THEN
            keys := keys || {schema}.products_piece_keys(name, label);
        END IF;
    END LOOP;
    RETURN keys;
END
$$;
"""

CREATE_INDEX = f"""
CREATE INDEX CONCURRENTLY IF NOT EXISTS "{SEARCH_INDEX}" ON "products_product"
    USING gin ((products_search_pieces("name", "price"))) WITH (gin_pending_list_limit = 256)
"""
DROP_INDEX = f'DROP INDEX CONCURRENTLY IF EXISTS "{SEARCH_INDEX}"'

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS products_search_pieces(text, numeric);
DROP FUNCTION IF EXISTS products_piece_keys(text, text);
"""

# 0005's helpers: its create_functions is the reverse of dropping products_search_keys, and
# its execute_in_schema and drop_if_invalid serve this migration too.
_0005 = importlib.import_module("products.migrations.0005_search_tokens")


def create_functions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0005.execute_in_schema(schema_editor, FUNCTIONS)


def drop_functions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS)


def drop_old_function(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute("DROP FUNCTION IF EXISTS products_search_keys(text, numeric)")


def drop_invalid_index(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0005.drop_if_invalid(schema_editor, SEARCH_INDEX)


def search_pieces() -> models.Func:
    return models.Func(
        models.F("name"),
        models.F("price"),
        function="products_search_pieces",
        output_field=ArrayField(models.IntegerField()),
    )


class Migration(migrations.Migration):
    # Concurrent index builds keep a live catalogue writable; they cannot run in a transaction.
    atomic = False

    dependencies = [("products", "0006_bucket_trigger_search_path")]

    operations = [
        migrations.RunPython(create_functions, drop_functions),
        migrations.RunPython(drop_invalid_index, migrations.RunPython.noop),
        # AddIndexConcurrently's SQL with IF NOT EXISTS: a run that built the index and then
        # stopped (a lock timeout while dropping 0005's index) can be run again.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="product",
                    index=GinIndex(
                        search_pieces(), name=SEARCH_INDEX, gin_pending_list_limit=256
                    ),
                )
            ],
            database_operations=[migrations.RunSQL(CREATE_INDEX, DROP_INDEX)],
        ),
        RemoveIndexConcurrently(model_name="product", name="product_search_keys"),
        migrations.RunPython(drop_old_function, _0005.create_functions),
    ]
