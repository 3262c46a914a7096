"""The user's files: models and datasets loaded safely, atomic JSON caches."""
