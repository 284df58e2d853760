pytest_plugins = ["tests.fixtures.infra", "tests.fixtures.softhsm", "tests.fixtures.browser"]
