#!/usr/bin/env bash
# The test suite on a fresh Debian machine (root): setup, lint (ruff, ansible-lint), ansible-doc of every
# module, unit and integration tests, end-to-end tests against a sandbox Mini with a real OpenClaw gateway,
# and a small run of the archive benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
# The machine's CPU time over the run (all cores, from /proc/stat): a run as long as another with less CPU used was
# waiting, not computing; steal is time the hypervisor gave to others.
read -r _ user0 nice0 system0 idle0 iowait0 irq0 softirq0 steal0 _ </proc/stat
cpu_report() {
  local tick user nice system idle iowait irq softirq steal
  tick=$(getconf CLK_TCK)
  read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
  echo "==> CPU over the run ($(nproc) cores, seconds): user $(( (user + nice - user0 - nice0) / tick ))," \
    "system $(( (system + irq + softirq - system0 - irq0 - softirq0) / tick )), idle $(( (idle + iowait - idle0 - iowait0) / tick )), steal $(( (steal - steal0) / tick ))"
}
trap '{ cpu_report || true; }; echo "==> total: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"' EXIT
bash scripts/setup.sh
source .venv/bin/activate
# The OpenClaw runtime bundles the sandbox Minis install (both versions the upgrade test needs) build in the
# background while the linters run (tests/sandbox/bundles.py, cached in .cache/openclaw-runtime). The e2e fixtures
# wait for the one they need, under the same per-bundle lock, so the older one may finish while tests run.
echo "==> runtime bundles (background, log in .cache/bundles.log)"
mkdir -p .cache
python tests/sandbox/bundles.py >.cache/bundles.log 2>&1 &
bundles=$!
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
echo "==> changelog lint, role docs"
antsibull-changelog lint
ansible-doc -t role mirascope.clawfarm.claw >/dev/null
# ansible-test sanity of the collection as built (CPython 3.9 and 3.11; scripts/sanity.sh) runs beside the tests:
# about 40 s of CPU once its venvs exist, a few minutes on a fresh machine. Its log is printed if it fails.
echo "==> ansible-test sanity (background, log in .cache/sanity.log)"
bash scripts/sanity.sh >.cache/sanity.log 2>&1 &
sanity=$!
# Two lanes (pytest-xdist workers): each e2e module runs whole on one worker, every module that uses the fleet on
# the same one (tests/conftest.py's scheduler); each worker boots its own `mini`. The slowest tests and the
# total are printed at the end.
echo "==> pytest (2 workers)"
python -m pytest tests -q -p no:cacheprovider -n 2 --dist loadscope --no-loadscope-reorder --durations=25 \
  --junitxml=.cache/pytest-junit.xml "$@"
if wait "$sanity"; then
  echo "==> ansible-test sanity: passed"
else
  tail -60 .cache/sanity.log
  echo "ansible-test sanity failed (full log: .cache/sanity.log)"
  exit 1
fi
# (The tests built any bundle the background job could not; its log says why.)
wait "$bundles" || echo "note: the background bundle build failed; see .cache/bundles.log"
grep '^bundles:' .cache/bundles.log || true
echo "==> benchmark smoke run (archive, 32 MiB; prints ratios, asserts nothing)"
python bench/archive_bench.py --size-mib 32 --workdir .cache/bench
