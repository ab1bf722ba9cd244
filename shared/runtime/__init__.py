"""The function's life in Lambda's runtime: its cold start (the collector paused while it imports) and SnapStart's
snapshot and restore hooks."""
