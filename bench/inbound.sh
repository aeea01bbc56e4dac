#!/usr/bin/env bash
# inbound.sh - inbound SMTP acceptance rate: Repute against a private Postfix, with
# smtp-sink as the ceiling of the harness itself, in one run on loopback.
#
# Starts, each under a temporary directory and stopped by PID on exit:
#   A  Repute built from this checkout: MX on 127.0.0.1:$PORT_A, domain $DOMAIN, user
#      bench@$DOMAIN, data in the temp dir (IMAP on $PORT_IMAP, only to count what it stored)
#   B  Postfix with its own config_directory, queue_directory and data_directory: smtpd on
#      127.0.0.1:$PORT_B, every local part of $DOMAIN delivered into one Maildir by
#      virtual(8); Postfix defaults otherwise (cleanup fsyncs the queue file before 250;
#      in_flow_delay 1s)
#   S  smtp-sink on 127.0.0.1:$PORT_SINK: accepts and discards (how fast the load
#      generator and loopback can go)
# and drives each with Postfix's smtp-source, one connection per message:
#   smtp-source -s $C -l $SIZE -m $N -f load@load.test -t bench@$DOMAIN -M load.test -C 5
# in the order A B S, $ROUNDS times. A run's rate is N / (time until smtp-source exits),
# on the monotonic clock. Prints every run, the medians, and for Repute/Postfix and
# Repute/smtp-sink both the median of the per-round ratios and the ratio of medians.
# Afterwards it checks that Repute stored (IMAP STATUS) and Postfix delivered (Maildir)
# every message.
#
# Environment (defaults): N=5000 C=50 SIZE=4096 ROUNDS=3
#   PORT_A=24525 PORT_IMAP=24143 PORT_B=24526 PORT_SINK=24527 PORT_DNS=24553
#   DOMAIN=bench.test  KEEP=0 (1 = keep the temp dir)  PAUSE=2 (seconds between runs)
#   SENDER_CHECKS=true (Repute's iprev/SPF/DKIM/ARC/DMARC on inbound mail; false = off)
#
# Needs root (Postfix), Go, and the Debian packages postfix (smtp-source, smtp-sink) and
# python3. Never touches /etc/postfix or system services; only 127.0.0.1 is used. The
# servers resolve names through a stub on 127.0.0.1 (dnsstub.py) and run with a private
# /etc/resolv.conf that points at loopback.
set -euo pipefail
BENCH=inbound KEPT_LOGS="repute/serve.log, postfix/maillog"
. "$(dirname "$0")/lib.sh"

N=${N:-5000} C=${C:-50} SIZE=${SIZE:-4096} ROUNDS=${ROUNDS:-3}
PORT_A=${PORT_A:-24525} PORT_IMAP=${PORT_IMAP:-24143} PORT_B=${PORT_B:-24526}
PORT_SINK=${PORT_SINK:-24527} PORT_DNS=${PORT_DNS:-24553}
DOMAIN=${DOMAIN:-bench.test} KEEP=${KEEP:-0} PAUSE=${PAUSE:-2}
IP=127.0.0.1
FROM=load@load.test TO=bench@$DOMAIN HELO=load.test
PASSWORD=bench-password
SRC=/usr/sbin/smtp-source SINK=/usr/sbin/smtp-sink PY=/usr/bin/python3

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)


# ------------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "run as root (Postfix's master and smtpd need it)"
for f in "$SRC" "$SINK" /usr/sbin/postfix "$PY"; do
  [ -x "$f" ] || die "$f missing (apt-get install postfix python3)"
done
command -v go >/dev/null || die "go not on PATH"
command -v unshare >/dev/null || die "unshare missing (util-linux)"
for v in N C SIZE ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
for p in "$PORT_A" "$PORT_IMAP" "$PORT_B" "$PORT_SINK"; do
  port_free "$p" || die "$IP:$p is already in use"
done

WORK=$(mktemp -d /tmp/repute-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()   # daemons we started, stopped in reverse order
PF=$WORK/postfix

trap bench_cleanup EXIT
trap 'exit 130' INT TERM


# Daemons see a resolv.conf that names loopback only.
# (unshare and sh exec, so a background job's $! is the daemon's own PID)
echo "nameserver 127.0.0.1" > "$WORK/resolv.conf"
PRIVATE_DNS=(unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' _ "$WORK/resolv.conf")

# ------------------------------------------------------------------ DNS stub
setsid "$PY" "$HERE/dnsstub.py" "$IP" "$PORT_DNS" "${FROM#*@}" </dev/null >"$WORK/dnsstub.log" 2>&1 &
PIDS+=($!)

# ------------------------------------------------------------------- Repute
log "building repute from $ROOT"
(cd "$ROOT" && go build -o "$WORK/repute-bin" ./cmd/repute)
mkdir -p "$WORK/repute"
RCFG=$WORK/repute/repute.toml
{ repute_head "$IP:$PORT_A" "$IP:$PORT_IMAP" "$IP:$PORT_DNS"; cat <<CFG

[smtp]
# smtp-source comes from one address: allow all its sessions, and their stragglers
max_connections_per_ip = $((C * 4 + 100))
# SENDER_CHECKS=false measures the SMTP engine and store alone (Postfix checks nothing here)
sender_checks = ${SENDER_CHECKS:-true}
CFG
} > "$RCFG"
R() { "$WORK/repute-bin" "$@" --config "$RCFG"; }
R config check >/dev/null
R domain add "$DOMAIN" >/dev/null
echo "$PASSWORD" | R user add "$TO" --password-stdin >/dev/null
setsid "${PRIVATE_DNS[@]}" "$WORK/repute-bin" serve --config "$RCFG" </dev/null >"$WORK/repute/serve.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT_A"
wait_port "$PORT_IMAP"
log "repute pid ${PIDS[-1]} on $IP:$PORT_A"

# ------------------------------------------------------------------ Postfix
mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$PF/mail"
chown postfix "$PF/data"
chown nobody:nogroup "$PF/mail"
{ postfix_main_cf_base "$PF" "$DOMAIN"; cat <<CFG
# every local part of $DOMAIN goes into one Maildir, written and fsynced by virtual(8)
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_banner = \$myhostname ESMTP
biff = no
append_dot_mydomain = no
smtputf8_enable = yes
# no syslog needed: postlogd(8) writes the log here (outside /var, hence the prefix)
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
CFG
} > "$PF/etc/main.cf"
postfix_master_cf "$PF/etc/master.cf" "$IP:$PORT_B"
postfix -c "$PF/etc" set-permissions >/dev/null 2>&1 || true
postfix -c "$PF/etc" check
"${PRIVATE_DNS[@]}" postfix -c "$PF/etc" start >/dev/null 2>&1
wait_port "$PORT_B"
log "postfix master pid $(tr -d ' ' < "$PF/spool/pid/master.pid") on $IP:$PORT_B ($(postconf -d -h mail_version))"

# ---------------------------------------------------------------- smtp-sink
setsid "$SINK" -u nobody "$IP:$PORT_SINK" 512 </dev/null >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT_SINK"

# -------------------------------------------------------------------- runs

pf_delivered() { find "$PF/mail/inbox/new" -type f 2>/dev/null | wc -l; }

# run PORT: prints msgs/s, or FAIL
run() {
  local t0 t1 rc=0
  t0=$(mono)
  "$SRC" -s "$C" -l "$SIZE" -m "$N" -f "$FROM" -t "$TO" -M "$HELO" -C 5 "$IP:$1" \
    >"$WORK/source-$1.log" 2>&1 || rc=$?
  t1=$(mono)
  if [ $rc != 0 ]; then
    log "smtp-source against port $1 failed (rc $rc): $(tail -n 3 "$WORK/source-$1.log" | tr '\n' ' ')"
    echo FAIL
    return
  fi
  awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { d = b - a; if (d <= 0) d = 0.01; printf "%.1f\n", n / d }'
}

# Postfix delivers after it acknowledges: wait until the Maildir caught up, so that its
# delivery does not compete with the next run.
pf_wait() { # expected-count
  local end=$((SECONDS + 600))
  while [ "$(pf_delivered)" -lt "$1" ]; do
    [ $SECONDS -lt $end ] || { log "postfix delivered $(pf_delivered) of $1 after 600 s"; return 0; }
    sleep 0.5
  done
}

declare -a RA RB RS
failed=0
log "N=$N C=$C SIZE=$SIZE ROUNDS=$ROUNDS; order A B S per round"
for r in $(seq 1 "$ROUNDS"); do
  a=$(run "$PORT_A");    sleep "$PAUSE"
  b=$(run "$PORT_B");    pf_wait $((r * N)); sleep "$PAUSE"
  s=$(run "$PORT_SINK"); [ "$r" = "$ROUNDS" ] || sleep "$PAUSE"
  printf 'round %d: repute %s  postfix %s  smtp-sink %s  msgs/s\n' "$r" "$a" "$b" "$s"
  for x in "$a" "$b" "$s"; do [ "$x" != FAIL ] || failed=1; done
  RA+=("$a") RB+=("$b") RS+=("$s")
done

ma=$(median "${RA[@]}") mb=$(median "${RB[@]}") ms=$(median "${RS[@]}")
rps=$(round_ratios RA RB) rss=$(round_ratios RA RS)

# ------------------------------------------------------------ what was kept
expect=$((ROUNDS * N))
stored=$("$PY" - "$IP" "$PORT_IMAP" "$TO" "$PASSWORD" <<'PYEOF'
import imaplib, re, ssl, sys
host, port, user, pw = sys.argv[1:5]
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the server's self-signed certificate
m = imaplib.IMAP4(host, int(port))
m.starttls(ssl_context=ctx)
m.login(user, pw)
typ, data = m.status("INBOX", "(MESSAGES)")
print(re.search(rb"MESSAGES (\d+)", data[0]).group(1).decode())
m.logout()
PYEOF
) || stored="?"
pf_wait "$expect"
delivered=$(pf_delivered)

echo
echo "inbound SMTP, $N msgs x ${SIZE} B, $C concurrent sessions, one connection per message, $ROUNDS rounds"
printf '  %-10s %10s msgs/s (runs: %s)\n' repute "$ma" "${RA[*]}" postfix "$mb" "${RB[*]}" smtp-sink "$ms" "${RS[*]}"
echo "  repute/postfix   $(median $rps) median of per-round ratios ($rps); $(ratio "$ma" "$mb") ratio of medians"
echo "  repute/smtp-sink $(median $rss) median of per-round ratios ($rss); $(ratio "$ma" "$ms") ratio of medians"
echo "  stored: repute $stored/$expect (IMAP STATUS INBOX), postfix $delivered/$expect (Maildir)"
[ "$stored" = "$expect" ] || { log "repute stored $stored messages, expected $expect"; failed=1; }
[ "$delivered" = "$expect" ] || { log "postfix delivered $delivered messages, expected $expect"; failed=1; }
exit $failed
