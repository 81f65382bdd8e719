#!/usr/bin/env python3
"""Set up and run Flightdeck on a fresh machine: Python 3.11+ and git are all it needs.

    python3 dev.py demo     # install into .venv, migrate, create a first user, serve
    python3 dev.py test     # install into .venv and run the test suite (extra args go to pytest)

Uses SQLite and an embedded Celery broker unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".flightdeck-installed"


def ensure_environment() -> None:
    """Create .venv and install the project with its test tools, again only when
    pyproject.toml changed since the last install."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before the venv exists
        sys.exit("Flightdeck needs Python 3.11 or newer.")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing Flightdeck and its dependencies into .venv ...", flush=True)
    run([PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([PYTHON, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"])
    STAMP.write_text(wanted)


def run(command: list, **kwargs) -> None:
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False, **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


def manage(*args: str, env: dict) -> None:
    run([PYTHON, "manage.py", *args], env=env)


def demo(args: list[str]) -> None:
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    manage("migrate", "--no-input", env=env)
    manage("bootstrap_demo", env=env)
    manage("seed_history", "--if-empty", "--runs", "40", env=env)
    address = args[0] if args else "127.0.0.1:8000"
    print(f"\nFlightdeck is at http://{address}/  (Ctrl-C stops it)\n", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        manage("runserver", "--noreload", address, env=env)


def test(args: list[str]) -> None:
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    result = subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env, check=False)
    sys.exit(result.returncode)


def main() -> None:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    ensure_environment()
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
