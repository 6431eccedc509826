#!/bin/sh
# Runs inside a fresh mount + PID + UTS namespace, inside the Mini's network namespace.
# Builds the Mini's root (overlayfs over the host's /) and execs the launchd stand-in as PID 1.
# PYTHON is the shared copy of a CPython 3.9 (mini.py prepares it): the Mini's /usr/bin/python3.
set -eu
NAME="$1"; RUN="$2"; MACOS="$3"; PYTHON="$4"
R="$RUN/root"
# The stand-ins imitate macOS's own tools, which are not Python: they run on this machine's Python, never on the
# Mini's, so the Mini's /usr/bin/python3 is only what Ansible modules and the farm venv use.
HOST_PYTHON="$(readlink -f /usr/bin/python3)"
mount --make-rprivate /
# A Mini made from an image (mini.py up --image) has that image as a read-only layer over the host's /.
LOWER=/
if [ -f "$RUN/image" ]; then LOWER="$(cat "$RUN/image"):/"; fi
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$RUN/upper,workdir=$RUN/work" "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs -o mode=1777,size=2g tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
hostname "$NAME"
# Python as on a Mac: /usr/bin/python3 is a shim that runs the Command Line Tools' python3, a CPython 3.9 in
# Python3.framework (here a read-only mount of the shared copy).
CLT=/Library/Developer/CommandLineTools
FRAMEWORK="$CLT/Library/Frameworks/Python3.framework/Versions/3.9"
mkdir -p "$R$FRAMEWORK" "$R$CLT/usr/bin"
mount --bind "$PYTHON" "$R$FRAMEWORK"
mount -o remount,bind,ro "$R$FRAMEWORK"
ln -sfn ../../Library/Frameworks/Python3.framework/Versions/3.9/bin/python3 "$R$CLT/usr/bin/python3"
rm -f "$R/usr/bin/python3"
printf '#!/bin/sh\n# macOS: /usr/bin/python3 runs the Command Line Tools'"'"' python3.\nexec %s/usr/bin/python3 "$@"\n' "$CLT" \
  > "$R/usr/bin/python3"
chmod 0755 "$R/usr/bin/python3"
# The compatibility layer is copied in at every boot, so a Mini always runs the current stand-ins.
rm -rf "$R/usr/local/libexec/sandbox-macos"
mkdir -p "$R/usr/local/libexec"
cp -r "$MACOS" "$R/usr/local/libexec/sandbox-macos"
for f in "$R"/usr/local/libexec/sandbox-macos/bin/* "$R"/usr/local/libexec/sandbox-macos/*.py; do
  if [ -f "$f" ]; then sed -i "1s|^#!/usr/bin/python3\$|#!$HOST_PYTHON|" "$f"; fi
done
for tool in sysadminctl createhomedir dseditgroup systemsetup scutil pfctl; do ln -sf /usr/local/libexec/sandbox-macos/bin/$tool "$R/usr/sbin/$tool"; done
for tool in dscl dscacheutil sw_vers launchctl pmset fdesetup vm_stat crontab; do ln -sf /usr/local/libexec/sandbox-macos/bin/$tool "$R/usr/bin/$tool"; done
# pf forgets its rules at every restart: so does the pfctl stand-in's nftables table (the namespace outlives a reboot).
nft delete table inet sandbox_pf 2>/dev/null || true
chroot "$R" "$HOST_PYTHON" /usr/local/libexec/sandbox-macos/firstboot.py "$NAME"
exec chroot "$R" "$HOST_PYTHON" /usr/local/libexec/sandbox-macos/launchd.py
