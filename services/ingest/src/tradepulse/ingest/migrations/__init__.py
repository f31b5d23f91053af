"""The `market` schema's migrations, NNNN_name.sql, applied in order by `common.db.apply_migrations`."""
