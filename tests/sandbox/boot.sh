#!/bin/sh
# Runs inside a fresh mount + PID + UTS namespace, inside the Mini's network namespace.
# Builds the Mini's root (overlayfs over the host's /) and execs the launchd stand-in as PID 1.
set -eu
NAME="$1"; RUN="$2"; MACOS="$3"
R="$RUN/root"
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/,upperdir=$RUN/upper,workdir=$RUN/work" "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs -o mode=1777,size=2g tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
hostname "$NAME"
# The compatibility layer is copied in at every boot, so a Mini always runs the current stand-ins.
rm -rf "$R/usr/local/libexec/sandbox-macos"
mkdir -p "$R/usr/local/libexec"
cp -r "$MACOS" "$R/usr/local/libexec/sandbox-macos"
for tool in sysadminctl createhomedir dseditgroup systemsetup scutil; do ln -sf /usr/local/libexec/sandbox-macos/bin/$tool "$R/usr/sbin/$tool"; done
for tool in dscl dscacheutil sw_vers launchctl pmset fdesetup; do ln -sf /usr/local/libexec/sandbox-macos/bin/$tool "$R/usr/bin/$tool"; done
chroot "$R" /usr/bin/python3 /usr/local/libexec/sandbox-macos/firstboot.py "$NAME"
exec chroot "$R" /usr/bin/python3 /usr/local/libexec/sandbox-macos/launchd.py
