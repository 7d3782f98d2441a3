"""The database: tables, the suppression list (the Store and its migrations join at generator.store for now)."""
