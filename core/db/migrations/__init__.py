"""Alembic migrations of the hyperfollow schema."""
