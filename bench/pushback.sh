#!/usr/bin/env bash
# pushback.sh - delivery against providers that push back: Repute and a private Postfix,
# each emptying the same queue of N messages to simulated Gmail, Microsoft and Yahoo
# (test/provsim, run by bench/provsimd), one after the other in one run on loopback,
# with the results side by side.
#
# Starts, each under a temporary directory and stopped by PID on exit:
#   D  bench/provsimd: the three simulated providers on port 25 of $SIM_GOOGLE,
#      $SIM_MICROSOFT, $SIM_YAHOO (provsim.DefaultProfile's limits × $SCALE, simulated
#      time $TIME_SCALE times faster than the clock) and an authoritative DNS server on
#      $SIM_DNS:53 for gmail.test, outlook.test, hotmail.test and yahoo.test (MX hosts
#      under the providers' real suffixes, served only there), the sender's domain and
#      loopback PTRs. Started fresh for each server: counters and blocks start at zero.
#   R  Repute built from this checkout (hostname mx.$DOMAIN), [dns] resolver at $SIM_DNS,
#      [outbound] source_ips = [$SRC_IP], [shaping] time_scale = $TIME_SCALE, with
#      [warmup] first_use of $SRC_IP on $WARMUP_FIRST_USE (see WARMUP_KEYS); the rest at
#      its defaults.
#   P  Postfix with its own config, queue and data directories: smtpd on
#      127.0.0.1:$PORT_B for injection only, delivery settings at their defaults (MX
#      lookups through a private /etc/resolv.conf naming $SIM_DNS, port 25).
#
# The queue: N messages of SIZE bytes from bench@$DOMAIN, MIX percent to gmail.test,
# outlook.test + hotmail.test (half each) and yahoo.test (default 40:35:25).
#   Repute : stopped, its queue filled by bench/queuefill; t0 = launch of `repute serve`.
#   Postfix: smtpd holds everything it accepts; smtp-source injects the N messages; once
#            they are all on hold, t0; then `postsuper -H ALL` + `postqueue -f`.
# A run ends when no message of the N is queued any more, or at the deadline (DEADLINE
# seconds, by default DEADLINE_FACTOR × the ideal time, within DEADLINE_MIN and
# DEADLINE_MAX). The ideal time is provsim.IdealTime: a perfect sender at every
# provider's rate. Postfix runs on the clock (its retries every 5 minutes are 5 simulated
# hours at TIME_SCALE=60) and is expected to stop at the deadline once blocked.
#
# Prints per server: delivered, bounced, still queued, elapsed, the ratio to the ideal
# time, and the simulators' counters per provider. The result is reported, not asserted:
# the exit status is 0 when both runs took place, non-zero on a harness failure.
#
# Environment (defaults): N=3000 SIZE=4096 MIX=40:35:25 TIME_SCALE=60 SCALE=1
#   DEADLINE= DEADLINE_FACTOR=10 DEADLINE_MIN=60 DEADLINE_MAX=300 (seconds)
#   WARMUP_KEYS=auto (1: always write [warmup], 0: never, auto: only if Repute takes it)
#   WARMUP_FIRST_USE=2025-01-01 SIM_ARGS= (more provsimd flags, e.g. "-block-after -1")
#   SIM_DNS=127.0.2.53 SIM_GOOGLE=127.0.2.31 SIM_MICROSOFT=127.0.2.32 SIM_YAHOO=127.0.2.33
#   SRC_IP=127.0.2.21 PORT_A=24725 (Repute's MX, unused) PORT_B=24726 (Postfix injection)
#   C=20 (smtp-source sessions) DOMAIN=bench.test KEEP=0 (1 = keep the temp dir)
#
# Needs root (port 25 and 53, Postfix), Go, unshare, and the Debian packages postfix
# (smtp-source, postsuper, postqueue) and python3. Never touches /etc/postfix or system
# services; only 127.0.0.0/8 is used.
set -euo pipefail
BENCH=pushback KEPT_LOGS="sim-*.log, sim-*.json, repute/serve.log, repute/data/events.log, postfix/maillog"
. "$(dirname "$0")/lib.sh"

N=${N:-3000} SIZE=${SIZE:-4096} MIX=${MIX:-40:35:25} TIME_SCALE=${TIME_SCALE:-60} SCALE=${SCALE:-1}
DEADLINE=${DEADLINE:-} DEADLINE_FACTOR=${DEADLINE_FACTOR:-10}
DEADLINE_MIN=${DEADLINE_MIN:-60} DEADLINE_MAX=${DEADLINE_MAX:-300}
WARMUP_KEYS=${WARMUP_KEYS:-auto} WARMUP_FIRST_USE=${WARMUP_FIRST_USE:-2025-01-01} SIM_ARGS=${SIM_ARGS:-}
SIM_DNS=${SIM_DNS:-127.0.2.53} SIM_GOOGLE=${SIM_GOOGLE:-127.0.2.31}
SIM_MICROSOFT=${SIM_MICROSOFT:-127.0.2.32} SIM_YAHOO=${SIM_YAHOO:-127.0.2.33} SRC_IP=${SRC_IP:-127.0.2.21}
PORT_A=${PORT_A:-24725} PORT_B=${PORT_B:-24726} C=${C:-20} DOMAIN=${DOMAIN:-bench.test} KEEP=${KEEP:-0}
IP=127.0.0.1
FROM=bench@$DOMAIN
PASSWORD=bench-password
SRC=/usr/sbin/smtp-source PY=/usr/bin/python3

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

# ------------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "run as root (ports 25 and 53, Postfix's master)"
for f in "$SRC" /usr/sbin/postfix /usr/sbin/postsuper /usr/sbin/postqueue "$PY"; do
  [ -x "$f" ] || die "$f missing (apt-get install postfix python3)"
done
command -v go >/dev/null || die "go not on PATH"
command -v unshare >/dev/null || die "unshare missing (util-linux)"
for v in N SIZE C DEADLINE_FACTOR DEADLINE_MIN DEADLINE_MAX; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[ -z "$DEADLINE" ] || [[ $DEADLINE =~ ^[1-9][0-9]*$ ]] || die "DEADLINE must be a positive integer (seconds)"
[[ $MIX =~ ^([0-9]+):([0-9]+):([0-9]+)$ ]] || die "MIX must be GMAIL:MICROSOFT:YAHOO percentages"
PCT=("${BASH_REMATCH[@]:1}")
[ $((PCT[0] + PCT[1] + PCT[2])) = 100 ] || die "MIX must add up to 100"
for v in TIME_SCALE SCALE; do
  [[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$v must be a number"
done
case $WARMUP_KEYS in 0 | 1 | auto) ;; *) die "WARMUP_KEYS must be 0, 1 or auto" ;; esac
for a in "$SIM_DNS" "$SIM_GOOGLE" "$SIM_MICROSOFT" "$SIM_YAHOO" "$SRC_IP"; do
  [[ $a =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$a is not in 127.0.0.0/8: loopback only"
done
for p in "$PORT_A" "$PORT_B"; do
  port_free "$p" || die "$IP:$p is already in use"
done

# The messages per recipient domain, and per provider.
N_GMAIL=$((N * PCT[0] / 100))
N_MS=$((N * PCT[1] / 100))
N_OUTLOOK=$((N_MS - N_MS / 2)) N_HOTMAIL=$((N_MS / 2))
N_YAHOO=$((N - N_GMAIL - N_MS))
LOADS=("rcpt@gmail.test $N_GMAIL" "rcpt@outlook.test $N_OUTLOOK" "rcpt@hotmail.test $N_HOTMAIL" "rcpt@yahoo.test $N_YAHOO")
RCPT_RE='@(gmail|outlook|hotmail|yahoo)\.test>'

WORK=$(mktemp -d /tmp/repute-bench-push.XXXXXX)
chmod 755 "$WORK"
PIDS=()   # bench_cleanup stops these; provsimd is SIMPID, restarted between runs
RPID=
SIMPID=
PF=$WORK/postfix

stop_sim() {
  [ -n "$SIMPID" ] || return 0
  kill -TERM "$SIMPID" 2>/dev/null || true
  wait_gone "$SIMPID"
  SIMPID=
}
pushback_cleanup() {
  local rc=$?
  set +e
  stop_sim
  (exit $rc)
  bench_cleanup
}
trap pushback_cleanup EXIT
trap 'exit 130' INT TERM

echo "nameserver $SIM_DNS" > "$WORK/resolv.conf"
PRIVATE_DNS=(unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' _ "$WORK/resolv.conf")

# ------------------------------------------------------------------ building
log "building repute, queuefill and provsimd from $ROOT"
(cd "$ROOT" && go build -o "$WORK/repute-bin" ./cmd/repute && go build -o "$WORK/queuefill" ./bench/queuefill &&
  go build -o "$WORK/provsimd" ./bench/provsimd)

# shellcheck disable=SC2206 # SIM_ARGS is a list of flags
SIM_FLAGS=(-time-scale "$TIME_SCALE" -scale "$SCALE" -dns "$SIM_DNS:53" -google "$SIM_GOOGLE:25"
  -microsoft "$SIM_MICROSOFT:25" -yahoo "$SIM_YAHOO:25" -sender "$DOMAIN" -sender-ips "$SRC_IP" $SIM_ARGS)

IDEAL_JSON=$("$WORK/provsimd" "${SIM_FLAGS[@]}" -ideal "google=$N_GMAIL,microsoft=$N_MS,yahoo=$N_YAHOO")
IDEAL=$("$PY" -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["seconds"])' "$IDEAL_JSON")
if [ -z "$DEADLINE" ]; then
  DEADLINE=$(awk -v i="$IDEAL" -v f="$DEADLINE_FACTOR" -v lo="$DEADLINE_MIN" -v hi="$DEADLINE_MAX" \
    'BEGIN { d = int(i * f + 0.999); if (d < lo) d = lo; if (d > hi) d = hi; print d }')
fi

# start_sim NAME: a fresh provsimd writing $WORK/sim-NAME.json (once it listens; on
# SIGUSR1; on exit) and logging to $WORK/sim-NAME.log.
start_sim() {
  local json=$WORK/sim-$1.json i
  rm -f "$json"
  setsid "$WORK/provsimd" "${SIM_FLAGS[@]}" -counters "$json" -v </dev/null >"$WORK/sim-$1.log" 2>&1 &
  SIMPID=$!
  for i in $(seq 1 300); do
    [ -s "$json" ] && return 0
    kill -0 "$SIMPID" 2>/dev/null || break
    sleep 0.1
  done
  die "provsimd did not start: $(tail -n 3 "$WORK/sim-$1.log" | tr '\n' ' ')"
}

# ------------------------------------------------------------------ the message
MSG=$WORK/message.eml
"$PY" - "$MSG" "$FROM" "$SIZE" <<'PYEOF'
import sys
path, sender, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
head = "From: <%s>\r\nTo: undisclosed-recipients:;\r\nSubject: pushback benchmark\r\n\r\n" % sender
line = "a line of filler text to make the message the size of ordinary mail.....\r\n"
body = (line * (size // len(line) + 1))[:max(0, size - len(head) - 2)]
open(path, "w", newline="").write(head + body + "\r\n")
PYEOF

# -------------------------------------------------------------------- Repute
mkdir -p "$WORK/repute"
RCFG=$WORK/repute/repute.toml
repute_config() { # WITH_WARMUP(0|1)
  repute_head "$IP:$PORT_A" "" "$SIM_DNS:53"
  cat <<CFG

[outbound]
source_ips = ["$SRC_IP"]

[shaping]
time_scale = $TIME_SCALE
CFG
  if [ "$1" = 1 ]; then
    cat <<CFG

[warmup]
enabled = true
first_use = { "$SRC_IP" = $WARMUP_FIRST_USE }
CFG
  fi
}
R() { "$WORK/repute-bin" "$@" --config "$RCFG"; }
WARMUP=0
if [ "$WARMUP_KEYS" != 0 ]; then
  repute_config 1 > "$RCFG"
  if err=$(R config check 2>&1 >/dev/null); then
    WARMUP=1
  elif [ "$WARMUP_KEYS" = 1 ]; then
    die "repute refuses the [warmup] keys: $err"
  else
    log "this repute refuses [warmup] ($(echo "$err" | head -n 1)); running without it"
  fi
fi
[ "$WARMUP" = 1 ] || repute_config 0 > "$RCFG"
R config check >/dev/null
R domain add "$DOMAIN" >/dev/null
echo "$PASSWORD" | R user add "$FROM" --password-stdin >/dev/null
EVENTS=$WORK/repute/data/events.log

r_queued() {
  R queue summary --json | "$PY" -c 'import json,sys; print(sum(d["total"] for d in json.load(sys.stdin)))'
}
r_events() { local n; n=$(grep -c "\"event\":\"$1\"" "$EVENTS" 2>/dev/null) || true; echo "${n:-0}"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'; }

# Results, by server: RES_<key>_<server>.
declare -A RES

run_repute() {
  local load t0 t1 end rcpt n
  for load in "${LOADS[@]}"; do
    read -r rcpt n <<< "$load"
    [ "$n" -gt 0 ] || continue
    "$WORK/queuefill" -db "$WORK/repute/data/repute.db" -from "$FROM" -to "$rcpt" -n "$n" < "$MSG" ||
      die "queuefill for $rcpt failed"
  done
  n=$(r_queued)
  [ "$n" = "$N" ] || die "repute's queue holds $n entries after filling $N"
  log "repute: $N entries queued; deadline ${DEADLINE}s"
  start_sim repute
  t0=$(mono)
  setsid "${PRIVATE_DNS[@]}" "$WORK/repute-bin" serve --config "$RCFG" </dev/null >>"$WORK/repute/serve.log" 2>&1 &
  RPID=$!
  end=$(awk -v t="$t0" -v d="$DEADLINE" 'BEGIN { print t + d }')
  RES[end_repute]=deadline
  while awk -v n="$(mono)" -v e="$end" 'BEGIN { exit !(n < e) }'; do
    kill -0 "$RPID" 2>/dev/null || die "repute serve exited: $(tail -n 3 "$WORK/repute/serve.log" | tr '\n' ' ')"
    if [ "$(R queue summary --json | tr -d ' \n')" = "[]" ]; then RES[end_repute]=empty; break; fi
    sleep 0.5
  done
  t1=$(mono)
  kill -TERM "$RPID"; wait_gone "$RPID"; RPID=
  stop_sim
  RES[elapsed_repute]=$(secs "$t0" "$t1")
  RES[delivered_repute]=$(r_events delivered)
  RES[bounced_repute]=$(r_events bounced)
  RES[queued_repute]=$(r_queued)
  RES[deferred_repute]=$(( $(r_events deferred) + $(r_events throttled) ))
}

# -------------------------------------------------------------------- Postfix
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chown postfix "$PF/data"
{ postfix_main_cf_base "$PF" "$DOMAIN"; cat <<CFG
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

p_count() { # files in the given queues
  local dirs=() q
  for q in "$@"; do dirs+=("$PF/spool/$q"); done
  find "${dirs[@]}" -type f 2>/dev/null | wc -l
}
# p_left: recipients of the benchmark's messages still queued (bounce notices to the
# sender, which cannot be delivered, are not counted).
p_left() {
  postqueue -c "$PF/etc" -j 2>/dev/null | "$PY" -c '
import json, sys
n = 0
for line in sys.stdin:
    m = json.loads(line)
    if m.get("sender") == sys.argv[1]:
        n += len(m.get("recipients", []))
print(n)' "$FROM"
}
p_log() { local n; n=$(grep -E "status=$1" "$PF/maillog" 2>/dev/null | grep -cE "to=<[^>]*$RCPT_RE") || true; echo "${n:-0}"; }

run_postfix() {
  local load t0 t1 end rcpt n
  "${PRIVATE_DNS[@]}" postfix -c "$PF/etc" start >/dev/null 2>&1
  wait_port "$PORT_B"
  log "postfix master pid $(tr -d ' ' < "$PF/spool/pid/master.pid") ($(postconf -d -h mail_version)); injecting $N messages"
  for load in "${LOADS[@]}"; do
    read -r rcpt n <<< "$load"
    [ "$n" -gt 0 ] || continue
    "$SRC" -s "$C" -l "$SIZE" -m "$n" -f "$FROM" -t "$rcpt" -M "client.$DOMAIN" "$IP:$PORT_B" >>"$WORK/source.log" 2>&1 ||
      die "smtp-source into postfix failed: $(tail -n 3 "$WORK/source.log" | tr '\n' ' ')"
  done
  end=$((SECONDS + 180))
  while [ "$(p_count hold)" -lt "$N" ]; do
    [ $SECONDS -lt $end ] || die "postfix: $(p_count hold) of $N on hold after 180 s"
    sleep 0.2
  done
  log "postfix: $N messages on hold; deadline ${DEADLINE}s"
  start_sim postfix
  t0=$(mono)
  postsuper -c "$PF/etc" -H ALL 2>/dev/null
  postqueue -c "$PF/etc" -f
  end=$(awk -v t="$t0" -v d="$DEADLINE" 'BEGIN { print t + d }')
  RES[end_postfix]=deadline
  while awk -v n="$(mono)" -v e="$end" 'BEGIN { exit !(n < e) }'; do
    if [ "$(p_left)" = 0 ]; then RES[end_postfix]=empty; break; fi
    sleep 1
  done
  t1=$(mono)
  stop_sim
  sleep 1.5   # postlogd writes the last lines
  RES[elapsed_postfix]=$(secs "$t0" "$t1")
  RES[delivered_postfix]=$(p_log sent)
  RES[bounced_postfix]=$(p_log bounced)
  RES[queued_postfix]=$(p_left)
  RES[deferred_postfix]=$(p_log deferred)
}

# -------------------------------------------------------------------- runs
log "N=$N (gmail.test $N_GMAIL, outlook.test $N_OUTLOOK, hotmail.test $N_HOTMAIL, yahoo.test $N_YAHOO)" \
  "SIZE=$SIZE TIME_SCALE=$TIME_SCALE SCALE=$SCALE warm-up keys $WARMUP; ideal ${IDEAL}s"
run_repute
run_postfix

# ------------------------------------------------------------------- report
echo
"$PY" - "$WORK/sim-repute.json" "$WORK/sim-postfix.json" <<PYEOF
import json, sys
sims = [json.load(open(p)) for p in sys.argv[1:3]]
ideal = $IDEAL
res = {
    "delivered": ("${RES[delivered_repute]}", "${RES[delivered_postfix]}"),
    "bounced": ("${RES[bounced_repute]}", "${RES[bounced_postfix]}"),
    "still queued": ("${RES[queued_repute]}", "${RES[queued_postfix]}"),
    "deferral log lines": ("${RES[deferred_repute]}", "${RES[deferred_postfix]}"),
}
elapsed = (float("${RES[elapsed_repute]}"), float("${RES[elapsed_postfix]}"))
ended = ("${RES[end_repute]}", "${RES[end_postfix]}")
print("pushback: $N msgs x $SIZE B (gmail.test $N_GMAIL, outlook.test $N_OUTLOOK, hotmail.test $N_HOTMAIL, yahoo.test $N_YAHOO)")
print("  time scale $TIME_SCALE, limits x$SCALE, ideal %.2f s, deadline ${DEADLINE} s; repute [warmup] keys: %s"
      % (ideal, "yes" if "$WARMUP" == "1" else "no"))
row = lambda k, a, b: print("  %-30s %18s %18s" % (k, a, b))
row("", "repute", "postfix")
for k, (a, b) in res.items():
    row(k, a, b)
row("elapsed (s)", *["%.1f%s" % (e, "" if x == "empty" else " (deadline)") for e, x in zip(elapsed, ended)])
row("ratio to ideal", *[("%.1f" % (e / ideal) if ideal > 0 else "n/a") + ("" if x == "empty" else "+")
                         for e, x in zip(elapsed, ended)])
keys = [("accepted", "accepted"), ("connections", "connections"), ("deferrals", "deferrals"),
        ("  rate", "deferred_rate"), ("  connections", "deferred_connections"),
        ("blocks triggered", "blocks_triggered"), ("block replies", "block_replies"),
        ("transactions after block", "transactions_after_block"),
        ("connections after block", "connections_after_block")]
for i, prov in enumerate(sims[0]["providers"]):
    name = prov["provider"]
    p = prov["profile"]
    block = ("never blocks" if p["block_after"] < 0 else "block after %d deferrals/%s for %s"
             % (p["block_after"], p["block_window"], p["block_for"]))
    print("  %s (%s; %g/min, burst %d, %d connections, %s)"
          % (name, " ".join(prov["domains"]), p["rate_per_minute"], p["burst"], p["max_connections"], block))
    for label, k in keys:
        row("  " + label, *[s["providers"][i]["total"][k] for s in sims])
print("  (deadline: the queue was not empty then, the ratio is a lower bound; counters of the")
print("  simulators in sim-repute.json and sim-postfix.json; simulated time runs $TIME_SCALE x the clock,")
print("  Postfix retries on the clock)")
PYEOF
