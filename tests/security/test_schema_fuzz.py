"""Schemathesis (pinned in pyproject.toml) drives every documented route of a live server with
requests made from the OpenAPI document, bounded in examples and time: no answer may be a 5xx,
and every answer must be one the document describes (status, content type, headers, body and
each streamed event)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(open_server, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "run", f"{open_server.url}/docs/openapi.json", "--checks", CHECKS, "--max-examples", "10",
         "--max-time", "60", "--workers", "1", "--request-timeout", "30", "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failures" not in result.stdout.split("SUMMARY")[-1].lower()
