#!/usr/bin/env bash
# ansible-test sanity against the collection exactly as it ships: the tarball `ansible-galaxy collection build` makes
# (galaxy.yml's build_ignore) is installed under .cache/sanity/ansible_collections/mirascope/clawfarm and tested there
# with ansible-core's sanity tests (DOCUMENTATION vs argument_spec, compile and import under every Python the modules
# support that is on PATH, pylint, pep8, yamllint, ...). Exceptions and their reasons: tests/sanity/ignore-2.19.txt.
#
#   scripts/sanity.sh                              # every sanity test
#   scripts/sanity.sh --test validate-modules      # extra arguments go to `ansible-test sanity`
#
# The Minis' Python is CPython 3.9 (a Mac's /usr/bin/python3): its python3.9 must be on PATH for the module tests to run
# under it (CLAWFARM_PY39_BIN, default pyenv's 3.9). ansible-test's pinned requirements (pylint, voluptuous, ...) go
# into a venv of their own, .cache/sanity-venv (made once per ansible-core version), never into the project's .venv;
# it is made from the configured package index (ansible-test's --venv would download get-pip from the internet).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
root=$repo/.cache/sanity
venv=$repo/.cache/sanity-venv
py39_bin=${CLAWFARM_PY39_BIN:-/root/.pyenv/versions/3.9.18/bin}
if [[ ! -x $py39_bin/python3.9 ]]; then
  echo "sanity: no python3.9 in $py39_bin (set CLAWFARM_PY39_BIN to the directory of a CPython 3.9)" >&2
  exit 2
fi

core=$(.venv/bin/python -c 'import ansible.release; print(ansible.release.__version__)')
reqs=$(.venv/bin/python -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data", "requirements"))')
if [[ "$(cat "$venv/.stamp" 2>/dev/null)" != "$core" ]]; then
  rm -rf "$venv"
  .venv/bin/python -m venv "$venv"
  args=()
  for test in pylint validate-modules pep8 yamllint ansible-doc runtime-metadata changelog import import.plugin integration-aliases; do
    args+=(-r "$reqs/sanity.$test.txt")
  done
  "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core==$core" "${args[@]}"
  echo "$core" >"$venv/.stamp"
fi

# ansible-test makes a venv per sanity test (in ~/.ansible/test/venv) and bootstraps pip there with get-pip.py, which it
# downloads from ci-files.testing.ansible.com unless ~/.ansible/test/cache/get_pip_<version>.py exists. Without internet
# access, a stand-in in that cache does the same from the venv's own ensurepip and the configured package index.
for pip_version in $(.venv/bin/python -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as p
print(" ".join(sorted({p(types.SimpleNamespace(version=v))["pip"] for v in ("3.9", "3.11")})))'); do
  get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
  if [[ ! -e $get_pip ]]; then
    mkdir -p "$(dirname "$get_pip")"
    cat >"$get_pip" <<'PY'
"""Stand-in for get-pip.py written by clawfarm's scripts/sanity.sh: pip from ensurepip, then the requested packages."""
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
PY
  fi
done

# The collection's tracked files (as they are in the work tree; a new file counts once it is `git add`ed), built and
# installed the way a user gets them.
rm -rf "$root"
mkdir -p "$root/src" "$root/dist"
git ls-files -z --cached | while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done |
  tar -c --null -T - | tar -x -C "$root/src"
.venv/bin/ansible-galaxy collection build --force --output-path "$root/dist" "$root/src" >/dev/null
ANSIBLE_COLLECTIONS_PATH=$root .venv/bin/ansible-galaxy collection install --force --no-deps -p "$root" \
  "$root"/dist/mirascope-clawfarm-*.tar.gz >/dev/null
cd "$root/ansible_collections/mirascope/clawfarm"
# A repository of its own: ansible-test lists files with git, and this checkout ignores .cache/.
git init -q . && git add -A
# Only these Pythons (pyenv's shims would offer versions that are not installed): the sanity venv's 3.11 and the 3.9.
export PATH="$venv/bin:$py39_bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
exec ansible-test sanity --local --color no "$@"
