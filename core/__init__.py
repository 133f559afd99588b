"""Shared parts of hyperfollow: settings, logging, database, Redis keys, hashing, embedded servers, the CLI."""
