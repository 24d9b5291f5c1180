"""`pip install .` ships what clearapi needs at run time: the provider profiles and the report's assets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_profiles_and_assets(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("clearapi-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for profile in sorted((ROOT / "providers").glob("*.toml")):
        assert f"clearapi/_providers/{profile.name}" in names
    assert {"clearapi/report/assets/report.css", "clearapi/report/assets/report.js"} <= names
    assert {"clearapi/py.typed", "clearapi_testing/py.typed"} <= names  # PEP 561: users' mypy sees the types
    assert not any(n.startswith(("tests/", "cassettes/", "providers/")) for n in names)

    # runtime dependencies: neither the emulator's HTTP parser nor the retired limiter
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert runtime and not any(r.lower().startswith(("h11", "aiolimiter")) for r in runtime), runtime
    assert any(r.startswith("h11") and "extra == 'testing'" in r for r in requires)

    # the unpacked wheel, away from the source tree, finds every profile by itself
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import clearapi; from clearapi.profiles import list_profiles; "
            "print(clearapi.__file__); print(' '.join(sorted(list_profiles())))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    where, found = out.stdout.splitlines()
    assert Path(where).is_relative_to(site)
    assert found.split() == sorted(p.stem for p in (ROOT / "providers").glob("*.toml"))


def test_runtime_package_never_imports_test_machinery() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "clearapi").rglob("*.py")
                 if "clearapi_testing" in path.read_text() or "import h11" in path.read_text()]
    assert offenders == []


def test_optional_readers_are_extras_and_in_dev() -> None:
    """Tests of Parquet, `datasets` and pandas skip where those are missing; CI installs `dev`, so there they run."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {key: {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in reqs} for key, reqs in extras.items()}
    assert "pyarrow" in names["parquet"] and {"datasets", "pyarrow"} <= names["hf"] and "pandas" in names["pandas"]
    assert {"pyarrow", "datasets", "pandas"} <= names["dev"]
