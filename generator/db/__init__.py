"""The database: every table, the Store and its queries, the suppression list, the Alembic migrations."""
