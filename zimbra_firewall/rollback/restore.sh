#!/bin/sh
# The dead-man's switch firing (zimbra-firewall): the change was not confirmed. firewalld: its files go back
# to the snapshot arm.sh took, then one reload (checked first; it drops new connections while it rebuilds).
# ufw: its files and the kernel's rules go back to the snapshot arm.sh took, in one transaction per family
# (iptables-restore, ip6tables-restore), never through a moment in which the firewall lets everything in, as
# `ufw reload` (disable, then enable) would. While ufw was active then and is now, with the same chains, only
# ufw's part comes back (--noflush: other programs' rules, Docker's, fail2ban's bans, stay as they are now);
# else the tables ufw makes come back whole. Then the kernel is compared with the snapshot. The next run
# reports the line this writes to rollbacks.log, a failure as a failure. arm.sh writes it after lib.sh's
# functions.
#   /bin/sh STATE_DIR/restore.sh STATE_DIR SECONDS WHY
# WHY: timer (it fired), boot (before ufw.service or firewalld.service, which then load the restored files),
# or the words of the run that found the arm without its timer, or an earlier restore cut short.
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
firewall=$(cat "$d/firewall" 2>/dev/null || echo ufw)
if [ "$firewall" = firewalld ]; then
  what="firewalld's configuration"
  # at boot the files alone: firewalld starts after this unit, from them
  put_back_files "$d/snapshot.tar" firewalld || failed="firewalld's files could not be put back"
  if [ -z "$failed" ] && [ "$why" != boot ]; then
    reload_firewalld || failed="firewalld did not reload its configuration of before"
  fi
else
  what="the ufw rules and policies"
  put_back_files "$d/snapshot.tar" ufw || failed="ufw's files could not be put back"
fi
# the tables ufw makes (filter, and those its rule files name); another program's are not ours to touch. A
# table the snapshot lacks did not exist then, which filters nothing: it is given back empty, with every
# built-in chain accepting (as iptables-restore empties a table it is given)
builtins() {
  case $1 in
    filter | security) echo INPUT FORWARD OUTPUT ;;
    nat) echo PREROUTING INPUT OUTPUT POSTROUTING ;;
    mangle) echo PREROUTING INPUT FORWARD OUTPUT POSTROUTING ;;
    raw) echo PREROUTING OUTPUT ;;
  esac
}
ufw_tables() {
  { echo filter; sed -n 's/^\*//p' /etc/ufw/*.rules 2>/dev/null; } | sort -u
}
whole_tables() {
  for table in $(ufw_tables); do
    if grep -qx "\*$table" "$1"; then
      awk -v t="*$table" '$0 == t { on = 1 } on { print } on && /^COMMIT$/ { exit }' "$1"
    elif "$2-save" | grep -qx "\*$table"; then
      echo "*$table"
      for chain in $(builtins "$table"); do echo ":$chain ACCEPT [0:0]"; done
      echo COMMIT
    fi
  done
}
# load_whole_tables FAMILY FILE: the tables ufw makes, as FILE has them, in one transaction, then compared
# (status as load_ufw_part's)
load_whole_tables() {
  whole_tables "$2" "$1" > "$d/$1.restore"
  "$1-restore" -w 60 < "$d/$1.restore" || return 1
  [ "$(normalized "$d/$1.restore")" = "$(for table in $(ufw_tables); do "$1-save" -t "$table" 2>/dev/null; done |
    normalized)" ] || return 2
}
# the rules without comments and counters, and without tables that filter nothing (an empty table whose
# built-in chains accept is the same as no table)
normalized() {
  awk '/^#/ { next }
    /^\*/ { table = $0; body = ""; trivial = 1; next }
    /^COMMIT$/ { if (!trivial) printf "%s\n%sCOMMIT\n", table, body; next }
    { sub(/ \[[0-9]+:[0-9]+\]$/, ""); body = body $0 "\n"; if ($0 !~ /^:[A-Z]+ ACCEPT$/) trivial = 0 }' "$@"
}
if [ "$firewall" != firewalld ] && [ "$why" != boot ]; then
  for family in iptables ip6tables; do
    [ -e "$d/$family.rules" ] || continue
    if same_ufw_chains "$family" "$d/$family.rules"; then
      load_ufw_part "$family" "$d/$family.rules" 60
    else
      load_whole_tables "$family" "$d/$family.rules"
    fi
    case $? in
      1) failed="${failed:+$failed; }$family-restore failed" ;;
      2) failed="${failed:+$failed; }the kernel's $family rules differ from the snapshot after the restore" ;;
    esac
  done
fi
if [ -n "$failed" ]; then
  line="$now FAILED to restore $what of $(cat "$d/since") ($reason): $failed"
  echo "$line" >> "$state/rollbacks.log"
  echo "$line" >&2
  rm -rf "$d"
  exit 1
fi
echo "$now restored $what of $(cat "$d/since"): $reason" >> "$state/rollbacks.log"
rm -rf "$d"
