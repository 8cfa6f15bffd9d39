#!/bin/sh
# A fake barman for unit tests. Called as the exporter calls barman:
#   fake-barman.sh -c STATE_DIR -f json COMMAND ARGS...
# The "config file" is a directory holding the answers:
#   list-backups.json / check.json / replication-status.json / show-servers.json /
#   version.json / show-backup-SERVER-ID.json                      stdout of each command
#   list-backups.rc / check.rc / replication-status.rc / show-backup.rc                  exit status (default 0)
#   check.gate                                                    check waits until this file exists
# Every invocation is appended to STATE_DIR/invocations, one line of arguments.
state=$2
shift 4
echo "$*" >> "$state/invocations"
case "$1" in
  list-backups) answer=list-backups ;;
  replication-status) answer=replication-status ;;
  show-servers) answer=show-servers ;;
  --version) answer=version ;;
  check)
    answer=check
    if [ -e "$state/check.gate.wanted" ]; then
      while [ ! -e "$state/check.gate" ]; do sleep 0.02; done
    fi
    ;;
  show-backup) answer="show-backup-$2-$3" ;;
  *) echo "fake barman: unknown command $1" >&2; exit 2 ;;
esac
if [ -e "$state/$answer.json" ]; then cat "$state/$answer.json"; else echo '{"_ERROR": ["no answer prepared"]}'; exit 1; fi
if [ -e "$state/$answer.rc" ] || [ -e "$state/$1.rc" ]; then exit "$(cat "$state/$answer.rc" 2>/dev/null || cat "$state/$1.rc")"; fi
exit 0
