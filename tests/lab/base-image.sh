#!/usr/bin/env bash
# Builds (or reuses) the lab's base image: a Debian bookworm root made with
# debootstrap and imported with `docker import` (the engine has no registry).
# The tag carries a hash of the package list, so a changed list rebuilds.
set -euo pipefail

PACKAGES="systemd,systemd-sysv,openssh-server,python3,iproute2,dbus,procps,ca-certificates"
TAG="paxos-lab-base:$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12)"
CACHE="${PAXOS_LAB_CACHE:-/var/cache/paxos-lab}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    echo "lab: installing debootstrap" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

mkdir -p "$CACHE"
root="$(mktemp -d "$CACHE/root.XXXXXX")"
trap 'rm -rf --one-file-system "$root"' EXIT
started=$SECONDS
echo "lab: debootstrap bookworm into $root (takes about a minute)" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
# sshd: keys only, root may log in with a key (the lab's Ansible user).
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/ssh/sshd_config.d/lab.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
CONF
# Host keys are made at first boot so that every container has its own.
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/hostkeys.conf" <<'CONF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
CONF
chroot "$root" systemctl enable ssh.service >/dev/null 2>&1 || true
# Units that make no sense in a container and slow its boot.
for unit in systemd-timesyncd.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$TAG" >&2
echo "lab: built $TAG in $((SECONDS - started)) s ($(du -sh "$root" | cut -f1))" >&2
echo "$TAG"
