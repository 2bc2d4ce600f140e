"""The shell that ``SSHHost`` runs on the device (POSIX ``sh``; every user value arrives as a
positional argument, never spliced into the script)."""

from __future__ import annotations

KILL_AFTER_S = 5  # device side: seconds between TERM and KILL
TIMED_OUT = (124, 137)  # GNU timeout's exit codes for "timed out" and "had to KILL"

# Runs on the device as `sh -c WRAPPER edgeforge-run PIDFILE SECS ARGV...`: the user's argv
# arrives as "$@" (never re-parsed by a shell), in a fresh process group whose id is $!.
WRAPPER = f"""\
pidfile=$1; secs=$2; shift 2
if timeout --version >/dev/null 2>&1; then
  timeout --signal=TERM --kill-after={KILL_AFTER_S} "$secs" "$@" &
elif command -v setsid >/dev/null 2>&1; then
  setsid "$@" &
else
  "$@" &
fi
pid=$!
echo "$pid" > "$pidfile"
wait "$pid"; rc=$?
case $rc in 124|137) kill -s KILL -- "-$pid" 2>/dev/null;; esac
rm -f "$pidfile"
exit "$rc"
"""
# Kills what the wrapper above started: TERM to its process group, then KILL after 1 s.
KILLER = """\
pid=$(cat "$1" 2>/dev/null) || exit 0
rm -f "$1"
kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid" 2>/dev/null || exit 0
sleep 1
kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null
exit 0
"""


# sha256 of "$1" on the device: OpenSSL's when it works, coreutils' otherwise. With "$2" and
# "$3": the file is then renamed to "$3" only if its hash is "$2" (one round trip, not two).
SHA256 = """\
[ -f "$1" ] || exit 2
if command -v openssl >/dev/null 2>&1 && h=$(openssl dgst -sha256 -r "$1" 2>/dev/null); then :
else h=$(sha256sum "$1") || exit 1; fi
h=${h%% *}; h=${h#\\\\}
echo "$h"
if [ -n "$3" ] && [ "$h" = "$2" ]; then mv -f -- "$1" "$3" || exit 3; fi
"""
