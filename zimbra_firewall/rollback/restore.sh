#!/bin/sh
# The dead-man's switch firing (zimbra-firewall): the change was not confirmed, so ufw's files and the
# kernel's rules go back to the snapshot arm.sh took. The kernel's in one transaction per table and
# family (iptables-restore, ip6tables-restore), never through a moment in which the firewall lets
# everything in, as `ufw reload` (disable, then enable) would; then the kernel is compared with the
# snapshot. The next run reports the line this writes to rollbacks.log, a failure as a failure.
#   /bin/sh STATE_DIR/restore.sh STATE_DIR SECONDS WHY
# WHY: timer (it fired), boot (before ufw.service, which then loads the restored files), or the words of
# the run that found the arm without its timer, or an earlier restore cut short.
state=$1 seconds=$2 why=$3
d=$state/restoring
exec 9>>"$state/lock"
flock 9
# claiming the snapshot by renaming it: whichever of restore and disarm renames first decides; an
# earlier restore that was cut short left `restoring`, and is finished here
if [ ! -d "$d" ]; then
  mv "$state/armed" "$d" 2>/dev/null || exit 0
fi
case $why in
  timer) reason="no new SSH connection from the controller confirmed the change within $seconds s" ;;
  boot) reason="the host restarted before the change was confirmed" ;;
  *) reason=$why ;;
esac
now=$(date -u +%FT%TZ)
if [ ! -s "$d/token" ]; then
  echo "$now an arm cut short before it completed changed nothing: nothing to restore" >> "$state/rollbacks.log"
  rm -rf "$d"
  exit 0
fi
printf '%s %s\n' "$(date -u +%T)" "$(cat "$d/token")" > "$state/fired"
failed=""
tar -C / -xf "$d/snapshot.tar" || failed="ufw's files could not be put back"
# A table the snapshot lacks did not exist then, which filters nothing: it is given back empty, with every
# built-in chain accepting (as iptables-restore empties a table it is given). Only the tables ufw makes
# (filter, and those its rule files name): another program's are not ours to empty.
builtins() {
  case $1 in
    filter | security) echo INPUT FORWARD OUTPUT ;;
    nat) echo PREROUTING INPUT OUTPUT POSTROUTING ;;
    mangle) echo PREROUTING INPUT FORWARD OUTPUT POSTROUTING ;;
    raw) echo PREROUTING OUTPUT ;;
  esac
}
restore_input() {
  for table in $("$1-save" | sed -n 's/^\*//p'); do
    grep -qx "\*$table" "$2" && continue
    [ "$table" = filter ] || grep -qsx "\*$table" /etc/ufw/*.rules || continue
    echo "*$table"
    for chain in $(builtins "$table"); do echo ":$chain ACCEPT [0:0]"; done
    echo COMMIT
  done
  cat "$2"
}
# the rules without comments and counters, and without tables that filter nothing (an empty table whose
# built-in chains accept is the same as no table)
normalized() {
  awk '/^#/ { next }
    /^\*/ { table = $0; body = ""; trivial = 1; next }
    /^COMMIT$/ { if (!trivial) printf "%s\n%sCOMMIT\n", table, body; next }
    { sub(/ \[[0-9]+:[0-9]+\]$/, ""); body = body $0 "\n"; if ($0 !~ /^:[A-Z]+ ACCEPT$/) trivial = 0 }' "$@"
}
if [ "$why" != boot ]; then
  for family in iptables ip6tables; do
    [ -e "$d/$family.rules" ] || continue
    restore_input "$family" "$d/$family.rules" > "$d/$family.restore"
    if ! "$family-restore" -w 60 < "$d/$family.restore"; then
      failed="${failed:+$failed; }$family-restore failed"
      continue
    fi
    normalized "$d/$family.restore" > "$d/$family.wanted"
    "$family-save" | normalized > "$d/$family.now"
    cmp -s "$d/$family.wanted" "$d/$family.now" ||
      failed="${failed:+$failed; }the kernel's $family rules differ from the snapshot after the restore"
  done
fi
if [ -n "$failed" ]; then
  line="$now FAILED to restore the ufw rules and policies of $(cat "$d/since") ($reason): $failed"
  echo "$line" >> "$state/rollbacks.log"
  echo "$line" >&2
  rm -rf "$d"
  exit 1
fi
echo "$now restored the ufw rules and policies of $(cat "$d/since"): $reason" >> "$state/rollbacks.log"
rm -rf "$d"
