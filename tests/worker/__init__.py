"""Tests of the worker SDK (``from jobbroker import Worker``) against a real broker and Redis.

A package, as tests/lua is, so this directory's conftest is imported as ``worker.conftest`` and
never shadows the ``conftest`` module other test directories import by name.
"""
