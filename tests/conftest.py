pytest_plugins = ["clearapi.testing.pytest_plugin"]
