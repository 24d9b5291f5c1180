"""Users' type checkers see clearapi's types: the package ships `py.typed` (PEP 561).

mypy runs in a subprocess against a throwaway environment whose site-packages finds clearapi
through a `.pth` file, the way an installed or editable package is found; a copy of the package
without the marker shows the test can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_SCRIPT = '''\
import clearapi
from clearapi import Score


def confident(rows: list[Score]) -> list[str]:
    return [r.id for r in rows if (r.confidence or 0.0) > 0.5]


print(confident([]), clearapi.__version__)
'''


def _mypy(tmp_path: Path, package_root: Path) -> subprocess.CompletedProcess[str]:
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # clearapi first, then the dependencies (pydantic, openai...) from the environment running the tests
    Path(site, "clearapi_under_test.pth").write_text(f"{package_root}\n{sysconfig.get_paths()['purelib']}\n")
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    # no PYTHONPATH: mypy would read the source tree from it and never look for the marker
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
                           str(python), str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.mark.slow
def test_user_script_type_checks_strictly_against_clearapi(tmp_path: Path) -> None:
    done = _mypy(tmp_path, ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "py.typed" not in done.stdout and "missing library stubs" not in done.stdout


@pytest.mark.slow
def test_without_the_marker_mypy_complains(tmp_path: Path) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "clearapi", copy / "clearapi", ignore=shutil.ignore_patterns("py.typed", "__pycache__"))
    done = _mypy(tmp_path, copy)
    assert done.returncode != 0
    assert "py.typed" in done.stdout
