"""Service plumbing shared by app/ and worker/: settings, database, tables, blob storage, errors."""
