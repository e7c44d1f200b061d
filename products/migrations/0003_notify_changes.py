"""Announce every change to products on the `product_changes` channel, after commit.

Writes that bypass Django (raw SQL, another service, psql) send no model signals; the
`listen_product_changes` process turns these notifications into cache invalidations. A
statement-level trigger keeps a bulk load to one notification: up to 100 ids, else `*`.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION products_product_notify() RETURNS trigger AS $$
DECLARE
    changed bigint;
    ids text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('product_changes', '*');
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*), string_agg(id::text, ',') INTO changed, ids
        FROM (SELECT id FROM old_rows LIMIT 101) AS s;
    ELSE
        SELECT count(*), string_agg(id::text, ',') INTO changed, ids
        FROM (SELECT id FROM new_rows LIMIT 101) AS s;
    END IF;
    IF changed > 100 THEN
        PERFORM pg_notify('product_changes', '*');
    ELSIF changed > 0 THEN
        PERFORM pg_notify('product_changes', ids);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER products_product_notify_insert AFTER INSERT ON products_product
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_notify();
CREATE TRIGGER products_product_notify_update AFTER UPDATE ON products_product
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_notify();
CREATE TRIGGER products_product_notify_delete AFTER DELETE ON products_product
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_notify();
CREATE TRIGGER products_product_notify_truncate AFTER TRUNCATE ON products_product
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_notify();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS products_product_notify_insert ON products_product;
DROP TRIGGER IF EXISTS products_product_notify_update ON products_product;
DROP TRIGGER IF EXISTS products_product_notify_delete ON products_product;
DROP TRIGGER IF EXISTS products_product_notify_truncate ON products_product;
DROP FUNCTION IF EXISTS products_product_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("products", "0002_version_trigger")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
