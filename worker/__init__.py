"""Thin Celery glue around the compression library (architecture.md, Packages)."""
