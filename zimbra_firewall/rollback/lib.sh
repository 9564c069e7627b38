#!/bin/sh
# Shell functions the dead-man's switch's scripts share (zimbra-firewall): prepended to arm.sh, disarm.sh,
# recover.sh and to every ufw step of a run, never run alone.

# state_dir DIR: the deploy's folder on the host. systemd runs restore.sh from it as root, so it must be root's
# alone: made so when missing, tightened when it is root's but readable by others (as older versions left
# it), refused when anyone but root could write it.
state_dir() {
  umask 077
  mkdir -p "$1" || exit 1
  if [ -L "$1" ] || [ -z "$(find "$1" -maxdepth 0 -type d -user 0 ! -perm /022)" ]; then
    echo "refusing to use $1: it is not root's alone (owner $(stat -c %U "$1"), mode $(stat -c %a "$1"));" \
      "find out who changed it, then chown root:root and chmod 700 it" >&2
    exit 77
  fi
  chmod 700 "$1"
}

# hold_arm DIR TOKEN SECONDS: take the folder's lock (the restore takes it too, so a ufw step and a restore
# never run at the same moment) and go on only while this run's arm, TOKEN, still holds: once the rollback
# fired, nothing more changes the firewall.
hold_arm() {
  exec 9>>"$1/lock"
  if ! flock -w "$3" 9; then
    echo "a rollback of this firewall kept its lock for $3 s: nothing more was changed" >&2
    exit 1
  fi
  [ "$(cat "$1/armed/token" 2>/dev/null)" = "$2" ] && return 0
  if [ "$(cut -d ' ' -f 2 "$1/fired" 2>/dev/null)" = "$2" ]; then
    echo "the rollback fired at $(cut -d ' ' -f 1 "$1/fired"); the firewall is back as it was;" \
      "nothing more was changed" >&2
  else
    echo "this run's rollback is not armed (the firewall changed after this run read it):" \
      "nothing more was changed; run the deploy again" >&2
  fi
  exit 1
}

# timer_gone DIR UNIT: is the arm in DIR/armed left without its timer (the host restarted, or the timer's
# process was killed), so that nothing will ever restore it?
timer_gone() {
  [ "$(cat "$1/armed/boot" 2>/dev/null)" = "$(cat /proc/sys/kernel/random/boot_id)" ] || return 0
  timer=$(cat "$1/armed/timer" 2>/dev/null)
  case $timer in
    systemd) ! systemctl is-active --quiet "$2.timer" && ! systemctl is-active --quiet "$2.service" ;;
    "") return 0 ;;
    *) ! tr '\0' ' ' < "/proc/$timer/cmdline" 2>/dev/null | grep -qF "$1" ;;
  esac
}

# ufw_part [FILE…]: of iptables-save's output, the filter table's ufw chains and built-in policies, as
# iptables-restore --noflush takes them (counters dropped): what ufw owns in the kernel
ufw_part() {
  awk '/^\*/ { filter = ($0 == "*filter") }
    filter && /^:(INPUT|FORWARD|OUTPUT) / { print $1, $2, "[0:0]" }
    filter && /^:ufw6?-/ { print $1, $2, "[0:0]" }
    filter && /^-A ufw6?-/ { print }' "$@"
}

ufw_chain_names() {
  ufw_part "$@" | awk '/^:ufw/ { print $1 }' | sort
}

# same_ufw_chains FAMILY FILE: do FILE (a snapshot of FAMILY's rules) and the kernel now hold the same ufw
# chains, and some (ufw active then and now)? Only then can ufw's part alone be put back: a chain either side
# lacks would stay hooked in, or be missing
same_ufw_chains() {
  [ -n "$(ufw_chain_names "$2")" ] && [ "$(ufw_chain_names "$2")" = "$("$1-save" -t filter | ufw_chain_names)" ]
}

# load_ufw_part FAMILY FILE WAIT: ufw's part of FILE (a snapshot of FAMILY's rules) back in the kernel, in ONE
# --noflush transaction (other programs' rules stay as they are), then compared: status 1 when the load
# failed (the kernel keeps its rules), 2 when the kernel's ufw part differs from FILE's after it
load_ufw_part() {
  { echo "*filter"; ufw_part "$2"; echo COMMIT; } | "$1-restore" -n -w "$3" || return 1
  [ "$(ufw_part "$2")" = "$("$1-save" -t filter | ufw_part)" ] || return 2
}

# firewall_files FIREWALL: the files of that firewall (ufw, firewalld) a snapshot holds, relative to /
firewall_files() {
  case $1 in
    firewalld) echo etc/firewalld ;;
    *) echo etc/ufw etc/default/ufw ;;
  esac
}

# put_back_files TAR FIREWALL: that firewall's files as the snapshot TAR holds them: extracted, and those made
# since removed
put_back_files() {
  tar -C / -xf "$1" || return 1
  tar -tf "$1" | sed 's|/$||' > "$1.list" || return 1
  # shellcheck disable=SC2046 # a list of paths without spaces
  (cd / && find $(firewall_files "$2") ! -type d 2>/dev/null) | grep -vxF -f "$1.list" |
    while read -r made; do rm -f "/$made"; done
}

# reload_firewalld: firewalld's permanent configuration in force again (its reload drops new connections
# while it rebuilds, established ones stay), checked first so that a bad configuration is never loaded
reload_firewalld() {
  firewall-cmd --check-config >/dev/null && firewall-cmd --reload >/dev/null
}
