"""What the tests share: paths, request parameters, the one wait helper, audio helpers and the Kubernetes API
emulator. Fixtures live in tests/conftest.py; test modules import helpers from here, never from conftest."""
