pytest_plugins = ["clearapi_testing.pytest_plugin"]

# Local model fixtures (local_model_path, llama_server) live in their own module.
from conftest_local import llama_server, local_model_path  # noqa: E402, F401
