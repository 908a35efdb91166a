"""What the linter knows of the project before it lints a file: its configuration,
the project index, declared dependencies, evidence of SQLAlchemy, file roles, and
which files to lint."""
