"""Where the pages' `templates/` and `static/` folders are: beside the `web` package in a source
checkout, inside it once installed (pyproject.toml installs them as web/templates and web/static)."""

from __future__ import annotations

from pathlib import Path

_WEB = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    for candidate in (_WEB / name, _WEB.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the web pages' {name}/ folder is missing (looked in {_WEB} and {_WEB.parent})")
