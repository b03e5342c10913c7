#!/usr/bin/env bash
# Installs what the tests use besides Rust: the DuckDB Python package, the independent
# Parquet reader of the integration tests. Idempotent; quiet when already installed.
set -euo pipefail
if python3 -c "import duckdb" 2>/dev/null; then
  exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "duckdb>=1.1"
