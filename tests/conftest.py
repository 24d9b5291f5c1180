import os

from hypothesis import settings

pytest_plugins = ["clearapi_testing.pytest_plugin"]

# Property tests draw the same examples on every run: a property that fails fails in CI every
# time, not once in twenty runs. HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Local model fixtures (local_model_path, llama_server) live in their own module.
from conftest_local import llama_server, local_model_path  # noqa: E402, F401
