"""Fixes: building them (``edits``), applying them to text (``apply``), writing
the result (``write``)."""
