#!/bin/sh
# Undo (zimbra-firewall, undo.py): the firewall as it was before the last deploy that changed it, from the
# record that deploy's disarm kept (STATE_DIR/last), under the undo's own arm (hold_arm: the undo is rolled
# back like a deploy when no new SSH connection confirms it). ufw's files come back whole (those made since
# removed). The kernel: while ufw is active then and now, with the same chains, its chains and the built-in
# chains' policies come back in ONE iptables-restore transaction per family, --noflush, so other programs'
# rules (Docker's, fail2ban's) stay as they are now; else ufw is enabled (from inactive: nothing opens) or
# disabled (it was then), from the restored files. The kernel's ufw part is then compared with the record's.
# firewalld: its files come back whole, then one reload.
#   sh -c "$(cat lib.sh undo.sh)" undo STATE_DIR TOKEN LOCK_SECONDS
state=$1 token=$2 wait=$3
hold_arm "$state" "$token" "$wait"
last=$state/last
set -e
if [ "$(cat "$last/firewall" 2>/dev/null)" = firewalld ]; then
  put_back_files "$last/snapshot.tar" firewalld
  reload_firewalld
  exit 0
fi
was=inactive now=inactive
if grep -q '^:ufw-user-input ' "$last/iptables.rules"; then was=active; fi
if iptables -n -L ufw-user-input >/dev/null 2>&1; then now=active; fi
# per family, ufw's chains then and now: where they differ (IPv6 turned on or off since), ufw's part alone
# cannot be put back, and nothing is changed
families=""
if [ "$was-$now" = active-active ]; then
  for family in iptables ip6tables; do
    if [ -e "$last/$family.rules" ] && same_ufw_chains "$family" "$last/$family.rules"; then
      families="$families $family"
    elif [ -n "$(ufw_chain_names "$last/$family.rules" 2>/dev/null)$("$family-save" -t filter 2>/dev/null |
      ufw_chain_names)" ]; then
      echo "ufw's $family chains are not those of before the deploy (IPv6 turned on or off since?):" \
        "nothing was changed; put the firewall back by hand" >&2
      exit 1
    fi
  done
fi
put_back_files "$last/snapshot.tar" ufw
case $was-$now in
  active-active)
    for family in $families; do
      loaded=0
      load_ufw_part "$family" "$last/$family.rules" "$wait" || loaded=$?
      case $loaded in
        1) echo "$family-restore refused ufw's $family rules of before the deploy" >&2; exit 1 ;;
        2) echo "after the undo, the kernel's $family ufw rules differ from those before the deploy" >&2; exit 1 ;;
      esac
    done
    ;;
  active-inactive) LC_ALL=C ufw --force enable >/dev/null ;;
  inactive-active) LC_ALL=C ufw --force disable >/dev/null ;;
esac
