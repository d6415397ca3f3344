#!/bin/busybox sh
# init of the pytest-sev embedded guest: mount the pseudo filesystems, load the
# modules the harness needs (order resolved on the host from modules.dep),
# announce readiness on the serial console, optionally ask for a login, then
# give the console a shell. Kernel command line knobs: sev.login=USER:PASS.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp /run /mnt
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
while read -r mod; do
  [ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
done < /etc/modules.order
[ -f /etc/profile ] && . /etc/profile
login=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in sev.login=*) login="${arg#sev.login=}" ;; esac
done
echo "pytest-sev: guest ready, kernel $(uname -r)"
if [ -n "$login" ]; then
  while :; do
    printf '\nsev-guest login: '; read -r user
    printf 'Password: '; stty -echo 2>/dev/null; read -r pass; stty echo 2>/dev/null; echo
    [ "$user:$pass" = "$login" ] && break
    echo "Login incorrect"
  done
fi
export PS1='sev-guest# '
cd /
while :; do
  setsid cttyhack sh -l
done
