"""Editors and long-lived processes: the flake8 plugin and its analysis server
(``client``, ``server``, ``wire``), the language server, and what both share
(``resident``, ``file_events``)."""
