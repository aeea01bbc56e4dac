# bench/lib.sh - shell functions shared by the benchmark scripts (sourced, not run).

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# postfix_master_cf FILE LISTEN: a master.cf with Debian's services, no chroot, and one
# smtpd listening on LISTEN (ADDR:PORT), for a private Postfix under a temp directory.
postfix_master_cf() {
  { echo "$2 inet n - n - - smtpd"; cat "$LIB_DIR/../test/postfix/master.cf"; } > "$1"
}

# postfix_main_cf_base DIR DOMAIN: the main.cf settings every private benchmark Postfix
# shares (its own queue and data directories under DIR, loopback only, no local
# delivery); the caller appends what its benchmark needs.
postfix_main_cf_base() {
  cat <<CFG
compatibility_level = 3.6
queue_directory = $1/spool
data_directory = $1/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.$2
mydomain = $2
myorigin = \$mydomain
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
CFG
}

# Messages and waiting. The sourcing script sets BENCH (its name), IP, WORK, PF, PIDS,
# KEEP and KEPT_LOGS; RPID (a repute process to stop first) is optional.
# repute_head SMTP_ADDR IMAP_ADDR DNS_ADDR: the start of a benchmark's Repute configuration
# (name, data directory, listeners, resolver); the caller appends its own tables.
repute_head() {
  cat <<CFG
hostname = "mx.$DOMAIN"
data_dir = "$WORK/repute/data"

[listen]
smtp = "$1"
submission = ""
submissions = ""
imap = "$2"
imaps = ""
http = ""
https = ""

[dns]
resolver = "$3"

[check]
interval = "0s"
CFG
}

die() { echo "$BENCH: $*" >&2; exit 1; }
log() { echo "$BENCH: $*" >&2; }
port_free() { ! (exec 3<>"/dev/tcp/$IP/$1") 2>/dev/null; }
wait_port() { # port
  local i
  for i in $(seq 1 300); do
    (exec 3<>"/dev/tcp/$IP/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listening on $IP:$1"
}
wait_gone() { # pid: up to 30 s, then SIGKILL
  local i
  for i in $(seq 1 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
mono() { local up _; read -r up _ < /proc/uptime; echo "$up"; }   # monotonic, 10 ms

# bench_cleanup (the EXIT trap): stops repute, the private Postfix and every daemon in
# PIDS (in reverse order), then removes WORK unless KEEP=1 or the run failed.
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${RPID:-}" ]; then kill -TERM "$RPID" 2>/dev/null || true; wait_gone "$RPID"; fi
  if [ -f "$PF/spool/pid/master.pid" ]; then
    local mp; mp=$(tr -d ' ' < "$PF/spool/pid/master.pid")
    if [ -n "$mp" ] && kill -0 "$mp" 2>/dev/null; then
      postfix -c "$PF/etc" stop >/dev/null 2>&1 || kill "$mp" 2>/dev/null || true
      wait_gone "$mp"
    fi
  fi
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    wait_gone "${PIDS[i]}"
  done
  if [ "$KEEP" = 1 ] || [ $rc != 0 ]; then
    log "kept $WORK (logs: $KEPT_LOGS)"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}

# Results: medians (FAIL and n/a runs left out) and ratios.
median() { printf '%s\n' "$@" | grep -v -e FAIL -e n/a | sort -n | awk '{ a[NR] = $1 } END {
  if (NR == 0) { print "FAIL"; exit }
  if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "FAIL" || b == "FAIL" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
# round_ratios XS YS: each round's ratio XS[i]/YS[i]. Their median is the least disturbed by
# the machine's other load drifting over the run: a round's servers run back to back.
round_ratios() { local -n xs=$1 ys=$2; local i out=(); for i in "${!xs[@]}"; do out+=("$(ratio "${xs[$i]}" "${ys[$i]}")"); done; echo "${out[*]}"; }
