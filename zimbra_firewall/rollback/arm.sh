#!/bin/sh
# The dead-man's switch, armed before ufw changes (zimbra-firewall, tasks/safety.py arm_rollback):
# take the host's deploy lock, snapshot ufw, and start a timer that runs restore.sh unless disarm.sh
# stops it first. A systemd timer where systemd runs, a detached process where it does not.
#   sh -c "$(cat arm.sh)" arm STATE_DIR SECONDS TIMER_UNIT RESTORE_SCRIPT_TEXT
set -e
state=$1 seconds=$2 unit=$3 restore=$4
armed=$state/armed
mkdir -p "$state"
# the snapshot folder is the lock: one changing deploy at a time, and none while a restore runs
if [ -e "$state/restoring" ] || ! mkdir "$armed" 2>/dev/null; then
  echo "another deploy is changing this firewall (rollback armed since $(cat "$armed/since" 2>/dev/null));" \
    "retry when it is done" >&2
  exit 75
fi
date -u +%FT%TZ > "$armed/since"
tar -C / -cf "$armed/snapshot.tar" etc/ufw etc/default/ufw
if LC_ALL=C ufw status | grep -q '^Status: active'; then echo active; else echo inactive; fi > "$armed/was"
printf '%s' "$restore" > "$state/restore.sh"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
  # --collect: a restore that failed must not keep the unit's name from the next run;
  # AccuracySec: systemd would otherwise fire up to a minute late
  systemd-run --quiet --collect --unit="$unit" --on-active="${seconds}s" --timer-property=AccuracySec=1s \
    /bin/sh "$state/restore.sh" "$state" "$seconds"
  echo systemd > "$armed/timer"
else
  # shellcheck disable=SC2016 # expanded by the detached shell, from its own arguments
  setsid sh -c 'sleep "$1"; exec /bin/sh "$2/restore.sh" "$2" "$1"' rollback "$seconds" "$state" \
    </dev/null >/dev/null 2>&1 &
  echo $! > "$armed/timer"
fi
