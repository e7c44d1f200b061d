"""Row counts per block of 1,024 ids, kept by triggers in the same transaction as the rows.

They make the catalogue count exact and cheap (a sum over ~1,000 rows for a million products),
and let page/limit find a deep page's first row without walking the offset: sum the buckets up
to the offset, then skip fewer than 1,024 rows inside one bucket. Concurrent inserts into the
newest bucket queue on its row until they commit: fine for a catalogue's write rate.
"""

from django.db import migrations

FORWARD = """
-- No insert or delete may commit between the initial count and the triggers' creation.
LOCK TABLE products_product IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE products_id_bucket (
    bucket bigint PRIMARY KEY,
    n bigint NOT NULL CHECK (n >= 0)
);
INSERT INTO products_id_bucket (bucket, n)
    SELECT id >> 10, count(*) FROM products_product GROUP BY 1;

CREATE OR REPLACE FUNCTION products_product_count_buckets() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO products_id_bucket AS b (bucket, n)
            SELECT id >> 10, count(*) FROM new_rows GROUP BY 1 ORDER BY 1
            ON CONFLICT (bucket) DO UPDATE SET n = b.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE products_id_bucket AS b SET n = b.n - d.c
            FROM (SELECT id >> 10 AS bucket, count(*) AS c FROM old_rows GROUP BY 1) AS d
            WHERE b.bucket = d.bucket;
    ELSE
        DELETE FROM products_id_bucket;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER products_product_buckets_insert AFTER INSERT ON products_product
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_count_buckets();
CREATE TRIGGER products_product_buckets_delete AFTER DELETE ON products_product
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_count_buckets();

-- Ids never change (the buckets, ETags and cache keys rely on it).
CREATE OR REPLACE FUNCTION products_product_keep_id() RETURNS trigger AS $$
BEGIN
    IF NEW.id <> OLD.id THEN
        RAISE EXCEPTION 'products_product.id cannot change (% to %)', OLD.id, NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER products_product_keep_id BEFORE UPDATE OF id ON products_product
    FOR EACH ROW EXECUTE FUNCTION products_product_keep_id();
CREATE TRIGGER products_product_buckets_truncate AFTER TRUNCATE ON products_product
    FOR EACH STATEMENT EXECUTE FUNCTION products_product_count_buckets();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS products_product_buckets_insert ON products_product;
DROP TRIGGER IF EXISTS products_product_buckets_delete ON products_product;
DROP TRIGGER IF EXISTS products_product_keep_id ON products_product;
DROP FUNCTION IF EXISTS products_product_keep_id();
DROP TRIGGER IF EXISTS products_product_buckets_truncate ON products_product;
DROP FUNCTION IF EXISTS products_product_count_buckets();
DROP TABLE IF EXISTS products_id_bucket;
"""


class Migration(migrations.Migration):
    dependencies = [("products", "0003_notify_changes")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
