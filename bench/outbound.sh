#!/usr/bin/env bash
# outbound.sh - outbound delivery rate: Repute against a private Postfix, each emptying the
# same queue of N messages of SIZE bytes into smtp-sink, in one run on loopback.
#
# Starts, each under a temporary directory and stopped by PID on exit:
#   S  smtp-sink on 127.0.0.1:$PORT_SINK (accepts and discards; both servers deliver here)
#   R  Repute built from this checkout (hostname mx.$DOMAIN, sender bench@$DOMAIN), queue
#      settings at their defaults (concurrency 20); started only for its delivery runs
#   P  Postfix with its own config_directory, queue_directory and data_directory: smtpd on
#      127.0.0.1:$PORT_B for injection only, relayhost [127.0.0.1]:$PORT_SINK, delivery
#      settings at their defaults (default_destination_concurrency_limit 20)
#
# A run measures one server emptying a full queue. First the queue is filled without any
# delivery happening, then the clock starts, and it stops when the queue is empty:
#   Repute : the server is stopped; N queue rows are committed (FILL=store, the default:
#            bench/queuefill writes them through the store's own Accept, many at once;
#            FILL=sendmail: N × `repute sendmail -f bench@$DOMAIN sink@sink.test`, which
#            also DKIM-signs each message and takes minutes for large N); t0 = launch of
#            `repute serve`; t1 = first `repute queue summary --json` that prints [].
#   Postfix: smtpd holds everything it accepts (check_recipient_access static:HOLD);
#            smtp-source injects N messages; once N are in the hold queue, t0; then
#            `postsuper -H ALL` + `postqueue -f` (release, deliver now); t1 = first moment
#            incoming, active, deferred, hold and maildrop are all empty.
# Rate = N / (t1 - t0), on the monotonic clock, polled every 0.2 s (Repute's figure
# includes its start-up; Postfix's, the release of N held files). Runs alternate R P, ROUNDS
# times. Prints every run, the medians, the median of the per-round ratios Repute/Postfix
# and the ratio of medians, and checks after each run that every message was delivered
# (events.log "delivered" lines; Postfix's "status=sent" lines).
#
# Routing: ROUTE=relay (default) sends Repute's mail through [outbound] relay =
# 127.0.0.1:$PORT_SINK with relay_tls = "none" (smtp-sink has no STARTTLS), like Postfix's
# relayhost with its default smtp_tls_security_level; ROUTE=mx makes Repute look up sink.test
# through dnsstub.py (no MX record: the implicit MX, A 127.0.0.1) and connect to
# [outbound] remote_port = $PORT_SINK, its full MX path.
#
# Environment (defaults): N=20000 SIZE=4096 ROUNDS=3 C=20 INJECT_PAR=4 ROUTE=relay FILL=store
#   PORT_A=24625 (Repute MX, unused but for readiness) PORT_B=24626 (Postfix injection)
#   PORT_SINK=24627 PORT_DNS=24653 DOMAIN=bench.test KEEP=0 (1 = keep the temp dir)
#   PAUSE=2 (seconds between runs) RUN_TIMEOUT=900 (seconds one run may take)
#
# Needs root (Postfix), Go, and the Debian packages postfix (smtp-source, smtp-sink,
# postsuper, postqueue) and python3. Never touches /etc/postfix or system services; only
# 127.0.0.1 is used, and the daemons get a private /etc/resolv.conf naming loopback.
set -euo pipefail
BENCH=outbound KEPT_LOGS="repute/serve.log, repute/data/events.log, postfix/maillog"
. "$(dirname "$0")/lib.sh"

N=${N:-20000} SIZE=${SIZE:-4096} ROUNDS=${ROUNDS:-3} C=${C:-20} INJECT_PAR=${INJECT_PAR:-4}
ROUTE=${ROUTE:-relay} FILL=${FILL:-store}
PORT_A=${PORT_A:-24625} PORT_B=${PORT_B:-24626} PORT_SINK=${PORT_SINK:-24627}
PORT_DNS=${PORT_DNS:-24653} DOMAIN=${DOMAIN:-bench.test} KEEP=${KEEP:-0} PAUSE=${PAUSE:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
IP=127.0.0.1
FROM=bench@$DOMAIN TO=sink@sink.test
PASSWORD=bench-password
SRC=/usr/sbin/smtp-source SINK=/usr/sbin/smtp-sink PY=/usr/bin/python3

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)


# ------------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "run as root (Postfix's master needs it)"
for f in "$SRC" "$SINK" /usr/sbin/postfix /usr/sbin/postsuper /usr/sbin/postqueue "$PY"; do
  [ -x "$f" ] || die "$f missing (apt-get install postfix python3)"
done
command -v go >/dev/null || die "go not on PATH"
command -v unshare >/dev/null || die "unshare missing (util-linux)"
for v in N SIZE ROUNDS C INJECT_PAR; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
case $ROUTE in relay | mx) ;; *) die "ROUTE must be relay or mx" ;; esac
case $FILL in store | sendmail) ;; *) die "FILL must be store or sendmail" ;; esac
for p in "$PORT_A" "$PORT_B" "$PORT_SINK"; do
  port_free "$p" || die "$IP:$p is already in use"
done

WORK=$(mktemp -d /tmp/repute-bench-out.XXXXXX)
chmod 755 "$WORK"
PIDS=()   # long-lived daemons we started, stopped in reverse order
RPID=     # the running `repute serve`, if any
PF=$WORK/postfix

trap bench_cleanup EXIT
trap 'exit 130' INT TERM



echo "nameserver 127.0.0.1" > "$WORK/resolv.conf"
PRIVATE_DNS=(unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' _ "$WORK/resolv.conf")

# ------------------------------------------------------------------ the message
# One SIZE-byte message (headers included), no Message-ID: each injection gets its own.
MSG=$WORK/message.eml
"$PY" - "$MSG" "$FROM" "$TO" "$SIZE" <<'PYEOF'
import sys
path, sender, rcpt, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
head = "From: <%s>\r\nTo: <%s>\r\nSubject: outbound benchmark\r\n\r\n" % (sender, rcpt)
line = "a line of filler text to make the message the size of ordinary mail.....\r\n"
body = (line * (size // len(line) + 1))[:max(0, size - len(head) - 2)]
open(path, "w", newline="").write(head + body + "\r\n")
PYEOF

# --------------------------------------------------------- DNS stub, smtp-sink
setsid "$PY" "$HERE/dnsstub.py" "$IP" "$PORT_DNS" sink.test </dev/null >"$WORK/dnsstub.log" 2>&1 &
PIDS+=($!)
setsid "$SINK" -u nobody "$IP:$PORT_SINK" 512 </dev/null >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT_SINK"

# ------------------------------------------------------------------- Repute
log "building repute from $ROOT"
(cd "$ROOT" && go build -o "$WORK/repute-bin" ./cmd/repute && go build -o "$WORK/queuefill" ./bench/queuefill)
mkdir -p "$WORK/repute"
RCFG=$WORK/repute/repute.toml
if [ "$ROUTE" = relay ]; then
  # smtp-sink offers no STARTTLS, and neither does Postfix's relayhost use TLS by default
  OUTBOUND="relay = \"$IP:$PORT_SINK\"
relay_tls = \"none\""
else
  OUTBOUND="remote_port = $PORT_SINK"
fi
{ repute_head "$IP:$PORT_A" "" "$IP:$PORT_DNS"; cat <<CFG

[outbound]
$OUTBOUND
CFG
} > "$RCFG"
R() { "$WORK/repute-bin" "$@" --config "$RCFG"; }
R config check >/dev/null
R domain add "$DOMAIN" >/dev/null
echo "$PASSWORD" | R user add "$FROM" --password-stdin >/dev/null
EVENTS=$WORK/repute/data/events.log

r_queued() { # entries in Repute's queue
  R queue summary --json | "$PY" -c 'import json,sys; print(sum(d["total"] for d in json.load(sys.stdin)))'
}
r_delivered() { local n; n=$(grep -c '"event":"delivered"' "$EVENTS" 2>/dev/null) || true; echo "${n:-0}"; }

r_inject() {
  if [ "$FILL" = store ]; then
    "$WORK/queuefill" -db "$WORK/repute/data/repute.db" -from "$FROM" -to "$TO" -n "$N" < "$MSG"
    return
  fi
  export RBIN=$WORK/repute-bin RCFG MSG FROM TO
  seq 1 "$N" | xargs -n 200 -P "$INJECT_PAR" bash -c \
    'for _ in "$@"; do "$RBIN" sendmail -f "$FROM" "$TO" --config "$RCFG" < "$MSG" || exit 255; done' _
}

rate() { awk -v n="$N" -v a="$1" -v b="$2" 'BEGIN { d = b - a; if (d <= 0) d = 0.01; printf "%.1f\n", n / d }'; }

# run_repute: sets RESULT to msgs/s, or FAIL. (Not run in a subshell: RPID must reach
# the cleanup.)
run_repute() {
  local before t0 t1 q end
  RESULT=FAIL
  before=$(r_delivered)
  local i0; i0=$(mono)
  r_inject || { log "repute sendmail failed"; return; }
  q=$(r_queued)
  log "repute: $q entries queued ($FILL) in $(awk -v a="$i0" -v b="$(mono)" 'BEGIN { printf "%.1f", b - a }') s"
  [ "$q" = "$N" ] || { log "repute queue holds $q entries after injecting $N"; return; }
  t0=$(mono)
  setsid "${PRIVATE_DNS[@]}" "$WORK/repute-bin" serve --config "$RCFG" </dev/null >>"$WORK/repute/serve.log" 2>&1 &
  RPID=$!
  end=$((SECONDS + RUN_TIMEOUT))
  while [ "$(R queue summary --json | tr -d ' \n')" != "[]" ]; do
    if [ $SECONDS -ge $end ] || ! kill -0 "$RPID" 2>/dev/null; then
      log "repute: queue not empty after ${RUN_TIMEOUT}s or server gone ($(r_queued) left)"
      return
    fi
    sleep 0.2
  done
  t1=$(mono)
  kill -TERM "$RPID"; wait_gone "$RPID"; RPID=
  sleep 0.5   # the event log is flushed on shutdown
  local got=$(( $(r_delivered) - before ))
  if [ "$got" != "$N" ]; then log "repute: $got delivered events for $N messages"; return; fi
  RESULT=$(rate "$t0" "$t1")
}

# ------------------------------------------------------------------ Postfix
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chown postfix "$PF/data"
{ postfix_main_cf_base "$PF" "$DOMAIN"; cat <<CFG
relayhost = [$IP]:$PORT_SINK
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# everything accepted goes on hold: the queue fills without any delivery
smtpd_recipient_restrictions = check_recipient_access static:HOLD
smtpd_banner = \$myhostname ESMTP
biff = no
append_dot_mydomain = no
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
CFG
} > "$PF/etc/main.cf"
postfix_master_cf "$PF/etc/master.cf" "$IP:$PORT_B"
postfix -c "$PF/etc" check
"${PRIVATE_DNS[@]}" postfix -c "$PF/etc" start >/dev/null 2>&1
wait_port "$PORT_B"
log "postfix master pid $(tr -d ' ' < "$PF/spool/pid/master.pid") on $IP:$PORT_B ($(postconf -d -h mail_version)), relayhost [$IP]:$PORT_SINK"

p_count() { # files in the given queues
  local dirs=() q
  for q in "$@"; do dirs+=("$PF/spool/$q"); done
  find "${dirs[@]}" -type f 2>/dev/null | wc -l
}
p_sent() { local n; n=$(grep -c 'status=sent' "$PF/maillog" 2>/dev/null) || true; echo "${n:-0}"; }

# run_postfix: sets RESULT to msgs/s, or FAIL.
run_postfix() {
  local before t0 t1 end
  RESULT=FAIL
  before=$(p_sent)
  local i0; i0=$(mono)
  if ! "$SRC" -s "$C" -l "$SIZE" -m "$N" -f "$FROM" -t "$TO" -M "client.$DOMAIN" "$IP:$PORT_B" \
      >"$WORK/source.log" 2>&1; then
    log "smtp-source into postfix failed: $(tail -n 3 "$WORK/source.log" | tr '\n' ' ')"
    return
  fi
  end=$((SECONDS + 120))
  while [ "$(p_count hold)" -lt "$N" ]; do
    [ $SECONDS -lt $end ] || { log "postfix: $(p_count hold) of $N on hold after 120 s"; return; }
    sleep 0.2
  done
  log "postfix: $N messages on hold in $(awk -v a="$i0" -v b="$(mono)" 'BEGIN { printf "%.1f", b - a }') s"
  t0=$(mono)
  postsuper -c "$PF/etc" -H ALL 2>/dev/null
  postqueue -c "$PF/etc" -f
  end=$((SECONDS + RUN_TIMEOUT))
  while [ "$(p_count incoming active deferred hold maildrop)" != 0 ]; do
    [ $SECONDS -lt $end ] || { log "postfix: queue not empty after ${RUN_TIMEOUT}s"; return; }
    sleep 0.2
  done
  t1=$(mono)
  sleep 1.5   # postlogd writes the last lines
  local got=$(( $(p_sent) - before ))
  if [ "$got" != "$N" ]; then log "postfix: $got status=sent lines for $N messages"; return; fi
  RESULT=$(rate "$t0" "$t1")
}

# -------------------------------------------------------------------- runs
declare -a RA RB
failed=0
log "N=$N SIZE=$SIZE ROUNDS=$ROUNDS ROUTE=$ROUTE FILL=$FILL; order repute, postfix per round"
for r in $(seq 1 "$ROUNDS"); do
  run_repute;  a=$RESULT; sleep "$PAUSE"
  run_postfix; b=$RESULT; [ "$r" = "$ROUNDS" ] || sleep "$PAUSE"
  printf 'round %d: repute %s  postfix %s  msgs/s\n' "$r" "$a" "$b"
  for x in "$a" "$b"; do [ "$x" != FAIL ] || failed=1; done
  RA+=("$a") RB+=("$b")
done

ma=$(median "${RA[@]}") mb=$(median "${RB[@]}")
read -ra rr <<< "$(round_ratios RA RB)"

echo
echo "outbound delivery into smtp-sink, $N msgs x ${SIZE} B per run, $ROUNDS rounds, ROUTE=$ROUTE"
printf '  %-8s %10s msgs/s (runs: %s)\n' repute "$ma" "${RA[*]}" postfix "$mb" "${RB[*]}"
echo "  repute/postfix $(median "${rr[@]}") median of per-round ratios (${rr[*]}); $(ratio "$ma" "$mb") ratio of medians"
exit $failed
