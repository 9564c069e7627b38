#!/bin/sh
# What an earlier run left unfinished, found by the next run (zimbra-firewall, tasks/safety.py
# report_rollbacks): a restore cut short (restoring/ is there) is finished; an arm whose timer is gone (the
# host restarted, or the timer's process was killed) is restored, since its change was never confirmed. An
# arm whose timer runs, another deploy's, is left alone. Under the state folder's lock, so that the answer
# cannot change before it is acted on.
#   sh -c "$(cat lib.sh recover.sh)" recover STATE_DIR TIMER_UNIT RESTORE_SCRIPT_TEXT
state=$1 unit=$2 restore=$3
exec 9>>"$state/lock"
flock 9
if [ -d "$state/restoring" ]; then
  why="an earlier restore was cut short: the next run finished it"
elif [ -d "$state/armed" ] && timer_gone "$state" "$unit"; then
  why="the change was never confirmed and its rollback timer was gone (the host restarted, or the timer was killed): the next run restored it"
else
  exit 0
fi
# this deploy's restore (an arm cut short may not have written one; restore.sh tells whether it changed anything)
printf '%s' "$restore" > "$state/restore.sh"
exec 9>&-
exec /bin/sh "$state/restore.sh" "$state" 0 "$why"
