#!/bin/sh
# Disarm the dead-man's switch once a new SSH connection got through (zimbra-firewall): stop the timer
# and release the deploy lock. Fails when the timer already fired and restored the firewall.
#   sh -c "$(cat disarm.sh)" disarm STATE_DIR TIMER_UNIT
state=$1 unit=$2
d=$state/disarming
if ! mv "$state/armed" "$d" 2>/dev/null; then
  echo "the rollback timer fired before the change was confirmed: the firewall is back as it was" >&2
  exit 1
fi
timer=$(cat "$d/timer")
if [ "$timer" = systemd ]; then
  systemctl stop "$unit.timer" "$unit.service" 2>/dev/null || true
else
  kill -- "-$timer" 2>/dev/null || kill "$timer" 2>/dev/null || true
fi
rm -rf "$d"
