#!/usr/bin/env bash
# Make local git repositories of the component sources (linux, qemu, edk2)
# from Debian's source packages, for fixtures/sources/local.toml.
#
# Why: build machines of this project reach Debian's package archive but not
# git.kernel.org, gitlab.com/qemu-project or github.com/tianocore, so the
# upstream pins of fixtures/sources/upstream.toml cannot be fetched there.
# Debian's source packages are the same upstream trees (plus Debian's
# patches); committing each extracted tree to a local git repo gives the
# build recipes a git URL, a ref and a commit, exactly like upstream.
#
# Usage: scripts/local-sources.sh [linux] [qemu] [edk2] [fio] [linux-X.Y]   (default: linux)
#
# fio: the guest's DMA load tool, built static for the embedded guest
# (pytest_sev.build.fio): Debian's fio links 64 shared libraries (ceph, gluster,
# rdma, ICU: 88 MB of initramfs, 1.5-2 s of every DMA guest's boot under TCG).
#
# linux-X.Y (e.g. linux-6.12): a newer kernel tree than the release's own,
# from the *binary* package linux-source-X.Y (bookworm-backports /
# bookworm-security carry linux-source-6.12), which ships the patched tree as
# /usr/src/linux-source-X.Y.tar.xz.  Why: the kernel's own SEV selftests
# (tools/testing/selftests/kvm: sev_smoke_test, sev_init2_tests) are newer
# than Debian 12's 6.1, whose tree has sev_migrate_tests only.  The repo is
# ${PYTEST_SEV_SRC}/linux-X.Y, one commit per package version, tagged like
# the others (6.12.118-1~deb12u1 -> debian/6.12.118-1_deb12u1).  The package
# is downloaded (apt-get download) and unpacked here, never installed;
# DEB_VERSION_linux_source_6_12=<version> picks a version (default: the
# newest apt knows; a re-run whose newest version is already tagged
# downloads nothing).
# Environment:
#   PYTEST_SEV_SRC   where the repos go (default ~/.cache/pytest-sev/src)
#   DEB_VERSION_<pkg> a source version to fetch (e.g. DEB_VERSION_linux=6.1.176-1);
#                    default: the first version of the package whose files the
#                    mirror actually serves (security-suite sources can 404).
#
# Each repo gets one commit per source version, tagged debian/<version> (with
# DEP-14's mangling: ':' -> '%', '~' -> '_', so 1:7.2-1 is debian/1%7.2-1), and
# the branch `main` pointing at the newest one.  The Debian packaging
# directory (debian/) is removed: the recipes package with the upstream
# tooling (bindeb-pkg, make install), as AMD's build.sh does.  Debian's
# patches (debian/patches) stay applied.  edk2: Debian's orig tarball embeds
# the submodule trees OVMF needs (openssl, brotli, softfloat); QEMU: the dfsg
# tarball has no prebuilt firmware.  local.toml handles both (submodules =
# false, ovmf-patches-debian, qemu configure_args).
#
# apt-get source needs deb-src entries; when none is configured this adds
# one for the same mirror and suites as the binary entries (needs root).
set -euo pipefail

src_root=${PYTEST_SEV_SRC:-$HOME/.cache/pytest-sev/src}
mkdir -p "$src_root"
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(linux)

ensure_deb_src() {
  if apt-get source --print-uris -q linux >/dev/null 2>&1; then
    return 0
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  local list=/etc/apt/sources.list.d/pytest-sev-deb-src.sources
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: copy every binary stanza as a deb-src one (same mirror, suites).
    sed -e 's/^Types: *deb$/Types: deb-src/' -e '/^#/d' \
      /etc/apt/sources.list.d/debian.sources | $sudo tee "$list" >/dev/null
  else
    grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | sed 's/^deb /deb-src /' |
      $sudo tee /etc/apt/sources.list.d/pytest-sev-deb-src.list >/dev/null
  fi
  $sudo apt-get update -q
}

fetch_source() {  # pkg dir -> prints the version that was fetched
  local pkg=$1 dir=$2 var="DEB_VERSION_$1" v
  local versions
  if [ -n "${!var:-}" ]; then
    versions=("${!var}")
  else
    # newest first; apt-cache lists every suite's versions
    mapfile -t versions < <(apt-cache showsrc "$pkg" | sed -n 's/^Version: //p' | sort -Vru)
  fi
  for v in "${versions[@]}"; do
    if (cd "$dir" && apt-get source -q --download-only "$pkg=$v" >"$dir/download.log" 2>&1); then
      echo "$v"
      return 0
    fi
    rm -f "$dir"/*.dsc "$dir"/*.tar.* 2>/dev/null || true
  done
  echo "local-sources: no version of $pkg could be downloaded (see $dir/download.log)" >&2
  return 1
}

make_repo() {
  local pkg=$1 repo="$src_root/$1"
  local work
  work=$(mktemp -d "$src_root/.$pkg-XXXXXX")
  trap 'rm -rf "$work"' RETURN
  local version
  version=$(fetch_source "$pkg" "$work")
  local tag
  tag=$(deb_tag "$version")
  if [ -d "$repo/.git" ] && git -C "$repo" rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
    echo "local-sources: $repo already has $tag"
    return 0
  fi
  echo "local-sources: extracting $pkg $version"
  (cd "$work" && dpkg-source -q --no-check -x ./*.dsc tree >/dev/null)
  rm -rf "$work/tree/debian" "$work/tree/.pc"
  commit_tree "$repo" "$work/tree" "$pkg $version (Debian source package, debian/ removed)" "$tag"
}

binary_versions() {  # pkg -> the versions to try, newest first (DEB_VERSION_<pkg> pins one)
  local var
  var="DEB_VERSION_$(printf '%s' "$1" | tr -c 'A-Za-z0-9\n' '_')"
  if [ -n "${!var:-}" ]; then
    printf '%s\n' "${!var}"
  else
    apt-cache madison "$1" | awk -F'|' '{gsub(/ /, "", $2); print $2}' | sort -Vru
  fi
}

deb_tag() {  # version -> DEP-14 tag (git refuses ':' and '~': 1:7.2+dfsg-7 -> debian/1%7.2+dfsg-7, 1.0~rc1 -> debian/1.0_rc1)
  printf 'debian/%s' "$(printf '%s' "$1" | tr ':~' '%_')"
}

fetch_binary() {  # pkg dir -> prints the version whose .deb was downloaded
  local pkg=$1 dir=$2 v
  local versions
  mapfile -t versions < <(binary_versions "$pkg")
  for v in "${versions[@]}"; do
    if (cd "$dir" && apt-get download -q "$pkg=$v" >"$dir/download.log" 2>&1); then
      echo "$v"
      return 0
    fi
    rm -f "$dir"/*.deb 2>/dev/null || true
  done
  echo "local-sources: no version of $pkg could be downloaded (see $dir/download.log)" >&2
  return 1
}

commit_tree() {  # repo tree message tag: the tree replaces the repo's work tree, committed and tagged
  local repo=$1 tree=$2 msg=$3 tag=$4
  if [ ! -d "$repo/.git" ]; then
    git init -q -b main "$repo"
  fi
  # Replace the work tree wholesale with the new version, then commit it.
  git -C "$repo" rm -rq --cached . >/dev/null 2>&1 || true
  find "$repo" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
  (cd "$tree" && tar -cf - .) | (cd "$repo" && tar -xf -)
  git -C "$repo" add -A -f .
  # an identical tree (a re-run after a failed tag) needs no new commit
  if ! git -C "$repo" rev-parse -q --verify HEAD >/dev/null ||
     ! git -C "$repo" diff --cached --quiet; then
    git -C "$repo" -c user.name=pytest-sev -c user.email=pytest-sev@localhost commit -q -m "$msg"
  fi
  git -C "$repo" tag -f "$tag"
  echo "local-sources: $repo $tag $(git -C "$repo" rev-parse HEAD)"
}

make_linux_source_repo() {  # linux-X.Y: from the binary package linux-source-X.Y
  local name=$1 series=${1#linux-} repo="$src_root/$1"
  local pkg="linux-source-$series" work version tag newest
  # idempotent without a download: the newest candidate is already committed
  newest=$(binary_versions "$pkg" | head -n1)
  if [ -z "$newest" ]; then
    echo "local-sources: apt knows no $pkg (bookworm-backports or bookworm-security carry linux-source-6.12)" >&2
    return 1
  fi
  tag=$(deb_tag "$newest")
  if [ -d "$repo/.git" ] && git -C "$repo" rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
    echo "local-sources: $repo already has $tag"
    return 0
  fi
  work=$(mktemp -d "$src_root/.$name-XXXXXX")
  trap 'rm -rf "$work"' RETURN
  version=$(fetch_binary "$pkg" "$work")
  tag=$(deb_tag "$version")
  if [ -d "$repo/.git" ] && git -C "$repo" rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
    echo "local-sources: $repo already has $tag"
    return 0
  fi
  echo "local-sources: extracting $pkg $version"
  # only the tarball: dpkg-deb's data archive, then the tree inside it
  dpkg-deb --fsys-tarfile "$work"/*.deb |
    tar -xf - -C "$work" "./usr/src/linux-source-$series.tar.xz"
  mkdir "$work/tree"
  tar -xf "$work/usr/src/linux-source-$series.tar.xz" -C "$work/tree" --strip-components=1
  rm -rf "$work/tree/debian" "$work/tree/.pc"
  commit_tree "$repo" "$work/tree" "$pkg $version (Debian binary package's source tarball)" "$tag"
}

for p in "${pkgs[@]}"; do
  case $p in
    linux|qemu|edk2|fio) ensure_deb_src; make_repo "$p" ;;
    linux-[0-9]*.[0-9]*) make_linux_source_repo "$p" ;;
    *) echo "local-sources: unknown package $p (linux|qemu|edk2|fio|linux-X.Y)" >&2; exit 2 ;;
  esac
done
