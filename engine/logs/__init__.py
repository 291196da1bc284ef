"""The log store: per-process lines in blocks (store), and the queries over them (query)."""
