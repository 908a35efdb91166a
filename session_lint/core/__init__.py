"""The machinery every rule stands on: the file context, the tree walker, positions,
the parse guard, the prefilter and ``# noqa``."""
