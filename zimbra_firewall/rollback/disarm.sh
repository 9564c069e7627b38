#!/bin/sh
# Disarm the dead-man's switch once a new SSH connection got through (zimbra-firewall): under the state
# folder's lock and only while this run's arm holds, stop the timer and release the deploy lock. Fails,
# saying when, when the rollback already fired and restored the firewall. KEEP=keep: the snapshot becomes
# the undo record (STATE_DIR/last, what undo.py puts back), replacing the one before.
#   sh -c "$(cat lib.sh disarm.sh)" disarm STATE_DIR TIMER_UNIT TOKEN LOCK_SECONDS KEEP
state=$1 unit=$2 token=$3 wait=$4 keep=$5
hold_arm "$state" "$token" "$wait"
timer=$(cat "$state/armed/timer")
if [ "$timer" = systemd ]; then
  systemctl stop "$unit.timer" "$unit.service" 2>/dev/null || true
else
  kill -- "-$timer" 2>/dev/null || kill "$timer" 2>/dev/null || true
fi
if [ "$keep" = keep ]; then
  rm -rf "$state/last" && mv "$state/armed" "$state/last"
else
  rm -rf "$state/armed"
fi
