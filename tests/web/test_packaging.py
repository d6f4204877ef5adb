"""`pip install .` from a clean copy installs the pages and the default model: the wheel holds
every module, the top-level templates/ and static/ folders (as web/templates and web/static) and
inference/assets (the embedded default model, the shipped step-time tables), and the installed
package finds them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("inference", "kernels", "web", "templates", "static")


def test_the_wheel_carries_the_templates_static_files_and_every_module(tmp_path):
    copy = tmp_path / "src"
    for name in SOURCES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(out)!r})"],
                   cwd=copy, check=True, capture_output=True)
    wheel = zipfile.ZipFile(next(out.glob("*.whl")))
    names = set(wheel.namelist())
    expected = {str(p.relative_to(copy)) for package in ("inference", "kernels", "web")
                for p in (copy / package).rglob("*.py")}
    expected |= {"web/" + str(p.relative_to(copy)) for folder in ("templates", "static")
                 for p in (copy / folder).rglob("*") if p.is_file()}
    assets = {str(p.relative_to(copy)) for p in (copy / "inference" / "assets").rglob("*") if p.is_file()}
    expected |= assets
    assert expected - names == set()
    assert {"inference/assets/tokenizer.model", "inference/assets/config.json", "inference/assets/codellama.json",
            "inference/assets/step_times/nvidia-h200-7b.json"} <= assets
    installed = tmp_path / "site"
    wheel.extractall(installed)
    found = subprocess.run([sys.executable, "-c", "from web.assets import asset_dir; "
                            "print(asset_dir('templates')); print(asset_dir('static'))"],
                           cwd=tmp_path, env={"PYTHONPATH": str(installed)}, check=True, capture_output=True, text=True)
    assert found.stdout.split() == [str(installed / "web" / "templates"), str(installed / "web" / "static")]
    model = subprocess.run([sys.executable, "-c", "from inference.model_source import default_model_dir; "
                            "print(default_model_dir())"],
                           cwd=tmp_path, env={"PYTHONPATH": str(installed)}, check=True, capture_output=True, text=True)
    assert model.stdout.strip() == str(installed / "inference" / "assets")
