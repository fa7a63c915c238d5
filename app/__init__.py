"""The FastAPI service and the `crackscan` command line."""
