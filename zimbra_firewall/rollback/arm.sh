#!/bin/sh
# The dead-man's switch, armed before the firewall changes (zimbra-firewall, tasks/safety.py arm_rollback).
# Under the state folder's lock: take the host's deploy lock (the `armed` folder), snapshot the firewall's
# files (ufw's, with the kernel's rules as iptables-save and ip6tables-save print them; firewalld's permanent
# configuration, which its reload puts back in force), record this run's token (every later firewall
# step checks it), and start a timer that runs restore.sh unless disarm.sh stops it first: a transient
# systemd timer where systemd runs (plus a unit that restores at boot while armed, as a restart would
# otherwise leave the unconfirmed rules in force), a detached process where it does not.
# Whatever fails before the timer runs leaves nothing armed: the host has not changed.
#   sh -c "$(cat lib.sh arm.sh)" arm STATE_DIR SECONDS TIMER_UNIT TOKEN RESTORE_SCRIPT_TEXT FIREWALL
set -e
state=$1 seconds=$2 unit=$3 token=$4 restore=$5 firewall=${6:-ufw}
armed=$state/armed
state_dir "$state"
exec 9>>"$state/lock"
flock 9
# the snapshot folder is the lock: one changing deploy at a time, and none while a restore is unfinished
if [ -e "$state/restoring" ] || ! mkdir "$armed" 2>/dev/null; then
  echo "another deploy is changing this firewall (rollback armed since $(cat "$armed/since" 2>/dev/null));" \
    "retry when it is done" >&2
  exit 75
fi
trap 'rm -rf "$armed"' EXIT
date -u +%FT%TZ > "$armed/since"
cat /proc/sys/kernel/random/boot_id > "$armed/boot"
echo "$firewall" > "$armed/firewall"
# shellcheck disable=SC2046 # a list of paths without spaces
tar -C / -cf "$armed/snapshot.tar" $(firewall_files "$firewall")
# the kernel's rules as they are, which the restore loads back whole; read, never guessed
if [ "$firewall" = firewalld ]; then
  : # firewalld's reload rebuilds its own table from the files: nothing of the kernel's to keep
elif ! iptables-save > "$armed/iptables.rules" 2> "$armed/error"; then
  echo "cannot read the kernel's IPv4 rules (iptables-save: $(cat "$armed/error")); nothing was changed" >&2
  exit 1
fi
if [ "$firewall" != firewalld ] && [ -e /proc/net/if_inet6 ] && ! ip6tables-save > "$armed/ip6tables.rules" 2> "$armed/error"; then
  echo "cannot read the kernel's IPv6 rules (ip6tables-save: $(cat "$armed/error")); nothing was changed" >&2
  exit 1
fi
printf '%s' "$restore" > "$state/restore.sh"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
  boot=/etc/systemd/system/$unit-at-boot.service
  printf '%s\n' "[Unit]" "Description=zimbra-firewall: put the firewall back when a restart left a change unconfirmed" \
    "DefaultDependencies=no" "After=local-fs.target" "Before=ufw.service firewalld.service network-pre.target" \
    "ConditionPathExists=|$armed" "ConditionPathExists=|$state/restoring" "" "[Service]" "Type=oneshot" \
    "ExecStart=/bin/sh $state/restore.sh $state 0 boot" "" "[Install]" "WantedBy=multi-user.target" > "$boot.new"
  # each step its own command, so that set -e stops the arm at the one that fails
  if ! cmp -s "$boot.new" "$boot"; then
    chmod 644 "$boot.new"
    mv "$boot.new" "$boot"
    systemctl daemon-reload
  fi
  rm -f "$boot.new"
  systemctl is-enabled --quiet "$unit-at-boot" || systemctl enable --quiet "$unit-at-boot"
  # --collect: a restore that failed must not keep the unit's name from the next run;
  # AccuracySec: systemd would otherwise fire up to a minute late
  systemd-run --quiet --collect --unit="$unit" --on-active="${seconds}s" --timer-property=AccuracySec=1s \
    /bin/sh "$state/restore.sh" "$state" "$seconds" timer
  echo systemd > "$armed/timer"
else
  # shellcheck disable=SC2016 # expanded by the detached shell, from its own arguments
  setsid sh -c 'sleep "$1"; exec /bin/sh "$2/restore.sh" "$2" "$1" timer' zimbra-firewall-rollback "$seconds" \
    "$state" </dev/null >/dev/null 2>&1 9>&- &
  echo $! > "$armed/timer"
fi
printf '%s\n' "$token" > "$armed/token"
trap - EXIT
