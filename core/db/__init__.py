"""Database access: models, engines, and the Alembic migrations."""
