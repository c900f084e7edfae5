"""Storage infrastructure: the engine, the unit of work, column types and migrations."""
