"""The pipeline tests share the session's one demo run: the `demo_run` fixture in tests/conftest.py."""
