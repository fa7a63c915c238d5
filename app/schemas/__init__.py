"""Pydantic schemas of what the API and the CLI return."""
