"""Versioning: the ``VersionManager`` base, GitVM, its snapshots and its prompts."""
