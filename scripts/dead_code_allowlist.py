"""Names the dead-code check (vulture, in scripts/test) must not report: each is
called by a framework or is public API, never by name in this repository."""

# ruff: noqa: B018, F821
# mypy: ignore-errors

# libcst calls these on its transformers and code-generation state.
_.on_visit  # session_lint/fixes/apply.py
_.on_leave
_.before_codegen  # session_lint/core/positions.py
_.after_codegen
_._update_position
_.record_syntactic_position
_.leave_TypeAlias  # session_lint/older_syntax.py: a libcst transformer
_.leave_FormattedString
_.leave_TemplatedString
_.leave_ExceptHandler
_.leave_ExceptStarHandler
exc_type  # positions: __exit__'s arguments

# The walker dispatches visit_<Node>/leave_<Node> by name (session_lint/core/walker.py).
_.visit_Comment
_.leave_Module  # SL409 matches a file's sessions with their users after the walk
_.leave_With  # SL305: a with block that bound sessions ends
_.visit_TrailingWhitespace
_.leave_TrailingWhitespace
_.visit_SimpleString
_.visit_FormattedString
_.visit_AnnAssign
leave_ClassDef
leave_FunctionDef
leave_Lambda

# flake8 loads the plugin by its entry point and calls these (pyproject.toml).
Plugin
_.add_options
_.parse_options

# pygls calls the language server's handlers, registered by decorator.
initialize
initialized
did_change_configuration
did_open
did_change
did_save
did_close
code_action_resolve
hover

# Whether file events come from inotify: tests/lint/test_file_events.py asks.
_.native

# session_runtime: the pytest plugin's fixtures (pytest finds them by name) and the
# server objects they give tests (runtime/README.md documents .restart() and .admin()).
session_runtime_postgresql_proc
postgres_url
pgbouncer_url
make_pgbouncer
_.restart
_.admin
_stop_all  # atexit
frame  # a signal handler's argument

# session_runtime: SQLAlchemy calls these (pool.py: a Pool subclass and a pool event).
_._do_get
proxy
# __aexit__'s arguments (session.py).
tb
# An ORM column (batch/models.py) and the worker's report, read by callers.
meta
succeeded
retried
not_ready_retries
_.succeeded
_.retried
_.not_ready_retries
