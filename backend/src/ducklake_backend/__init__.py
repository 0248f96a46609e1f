"""DuckLake backend: DuckDB + DuckLake (catalog in PostgreSQL, data in S3/MinIO) behind an HTTP API."""

__version__ = "0.1.0"
