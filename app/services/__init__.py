"""Services behind the routes: model registry, inspection runner, uploads, job queue."""
