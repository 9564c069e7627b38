#!/bin/sh
# The dead-man's switch firing (zimbra-firewall): no new SSH connection confirmed the change in time,
# so ufw goes back to the snapshot arm.sh took, and the next run reports it from rollbacks.log.
#   /bin/sh STATE_DIR/restore.sh STATE_DIR SECONDS
state=$1 seconds=$2
d=$state/restoring
# claiming the snapshot by renaming it: whichever of restore and disarm renames first decides
mv "$state/armed" "$d" 2>/dev/null || exit 0
tar -C / -xf "$d/snapshot.tar"
# `enable` on an active ufw leaves the kernel's rules as they are: `reload` loads the restored files
if [ "$(cat "$d/was")" = active ]; then ufw --force enable && ufw reload; else ufw --force disable; fi
echo "$(date -u +%FT%TZ) restored the ufw rules and policies of $(cat "$d/since"): no new SSH connection" \
  "from the controller confirmed the change within $seconds s" >> "$state/rollbacks.log"
rm -rf "$d"
