#!/usr/bin/env bash
# The test suite on a fresh Debian machine (root): setup, lint (ruff, ansible-lint), ansible-doc of every
# module, unit and integration tests, end-to-end tests against a sandbox Mini with a real OpenClaw gateway,
# and a small run of the archive benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
trap 'echo "==> total: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"' EXIT
bash scripts/setup.sh
source .venv/bin/activate
echo "==> ruff"
ruff check plugins tests roles bench api
echo "==> ansible-lint"
ansible-lint --offline -q roles playbooks
echo "==> ansible-doc"
for module in plugins/modules/*.py; do
  module="$(basename "$module" .py)"
  doc="$(ANSIBLE_NOCOLOR=1 ansible-doc "mirascope.clawfarm.$module")"
  for section in OPTIONS EXAMPLES "RETURN VALUES"; do
    grep -q "^$section" <<<"$doc" || { echo "ansible-doc: mirascope.clawfarm.$module renders no $section"; exit 1; }
  done
done
echo "==> collection build"
ansible-galaxy collection build --force --output-path .cache/build >/dev/null
echo "==> pytest"
python -m pytest tests -q -p no:cacheprovider --durations=25 "$@"
echo "==> benchmark smoke run (archive, 32 MiB; prints ratios, asserts nothing)"
python bench/archive_bench.py --size-mib 32 --workdir .cache/bench
