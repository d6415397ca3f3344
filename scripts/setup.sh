#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 / Ubuntu machine (run as root or
# with sudo available): host packages, a project virtualenv in .venv with
# pytest-sev and its dependencies, and the embedded default guest's kernel
# (the distro cloud kernel, downloaded and unpacked into the cache, never
# installed on the host). A second run does no work beyond checks.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

# Host packages the harness drives. msr-tools gives rdmsr for the host probe;
# grub/mtools/dosfstools/gdisk build the disk-image guest the tests log in to;
# the compilers and kernel build tools serve `python -m pytest_sev build`;
# nodejs/npm run the Allure 3 report generator; chromium checks the report.
apt_packages=(
  qemu-system-x86 qemu-utils ovmf busybox-static cpio kmod fio libaio-dev msr-tools
  grub-efi-amd64-bin mtools dosfstools gdisk
  python3-venv git nodejs npm chromium
  # component builds (build.sh parity) and the build engine's own tests
  build-essential bc bison flex libelf-dev libssl-dev rsync dpkg-dev patch
  ninja-build meson pkg-config libglib2.0-dev libpixman-1-dev zlib1g-dev libslirp-dev libfdt-dev
  nasm acpica-tools uuid-dev python3-distutils
  # --launcher=libvirt: the daemon, virsh/virt-host-validate, libvirt-python's C build (libvirt-dev, python3-dev), xmllint for virt-xml-validate
  libvirt-daemon-system libvirt-clients libvirt-dev python3-dev libxml2-utils
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A machine may bring its own Node.js (outside dpkg): do not fight it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# libvirtd for --launcher=libvirt and the virsh_sev host check. Where systemd is PID 1 it
# starts the daemon; in a container without it, virtlogd (QEMU's log handler) and
# libvirtd are started by hand, daemonized, when nothing answers on the system socket.
if command -v libvirtd >/dev/null || [ -x /usr/sbin/libvirtd ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  # No udev in a container: /dev/kvm may be root-only (0600). libvirt then finds KVM "enabled when
  # probing, but not available now" for its qemu user and probes QEMU again on every call (measured
  # here: 70 s per domain start instead of 0.4 s). Debian's udev rule gives it group kvm, mode 0660.
  if [ -c /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" = "root:600" ] && getent group kvm >/dev/null; then
    $sudo chgrp kvm /dev/kvm && $sudo chmod 0660 /dev/kvm
  fi
  if ! timeout 15 virsh -c qemu:///system version >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
      $sudo systemctl start virtlogd libvirtd || echo "setup: systemctl start libvirtd failed"
    else
      timeout 15 $sudo /usr/sbin/virtlogd -d 2>/dev/null || true   # already running is fine
      $sudo /usr/sbin/libvirtd -d || echo "setup: libvirtd -d failed"
    fi
    for _ in $(seq 50); do timeout 5 virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  timeout 15 virsh -c qemu:///system version >/dev/null 2>&1 || echo "setup: libvirtd does not answer: --launcher=libvirt will fail"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.pytest-sev-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi

# The default guest's kernel: fetched once into the content-addressed cache.
.venv/bin/python -m pytest_sev provision

# A QEMU >= 9.1 for SEV-SNP launches, beside the host's (Debian backports' qemu-system-x86,
# ~15 MB, fetched with a private apt configuration in about 1-2 s; cached). Not fatal: without
# it the SNP argv tests skip naming this command and `launch -sev-snp` says what it needs.
.venv/bin/python -m pytest_sev provision qemu-snp \
  || echo "setup: no SEV-SNP QEMU (python -m pytest_sev provision qemu-snp says why)"

# The kernel tree of the upstream checks (suites/test_upstream.py: KVM's own SEV selftests):
# Debian's linux-source-6.12 (bookworm-backports / bookworm-security) as a local git repo under
# ~/.cache/pytest-sev/src/linux-6.12, about 2 minutes and 600 MB once; a re-run checks the tag
# and downloads nothing. Not fatal: without it the selftest items skip (or, under --sev/--sev-es,
# fail) naming this command.
bash scripts/local-sources.sh linux-6.12 \
  || echo "setup: no linux-6.12 tree (suites/test_upstream.py names scripts/local-sources.sh linux-6.12)"

# The DMA guests' fio as one static binary (2.8 MB instead of 88 MB of shared libraries in their
# initramfs: 1.2-1.5 s off every DMA guest's boot under TCG): Debian's fio source as a local repo
# (adds a deb-src entry when none is configured), then `build fio` into the cache, about 25 s
# once. Not fatal: without it the DMA guests carry the host's fio and its libraries.
bash scripts/local-sources.sh fio \
  && .venv/bin/python -m pytest_sev build fio --no-install >/dev/null \
  || echo "setup: no static fio (the DMA guests use the host's: python -m pytest_sev build fio says why)"
