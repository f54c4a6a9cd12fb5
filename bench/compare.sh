#!/usr/bin/env bash
# Side-by-side benchmark: quixysync against mbsync (isync) on a private Dovecot.
#
#   bench/compare.sh [options]
#
# One run: starts a private Dovecot on 127.0.0.1, builds (once, cached) a deterministic
# corpus, installs it into one account per tool, then runs every scenario on both tools
# alternately, verifying after each timed run that the account and the Maildir hold the
# same messages and flags. Prints a markdown table; writes bench/results/<tag>.{md,jsonl}.
# Stops the server (by the PID in its master.pid) when done. See bench/README.md.
#
# Options:
#   --n N            messages in the corpus (default 2000)
#   --folders M      folders (default 10)
#   --profile P      normal | small (default: small at --n >= 100000, else normal)
#   --k K            messages per kind of change in c, d, e (default 100)
#   --reps R         timed runs per scenario and tool (default 3)
#   --scenarios L    comma list of a,b,c,d,e,f,g (default all; b,c,d at --n >= 100000)
#                      a initial pull into an empty Maildir
#                      b no-op resync
#                      c server changes: K new, K flag changes, K deletions (over IMAP)
#                      d local changes: K new files, K flag renames, K deletions
#                      e pull-only after c-like changes, push-only after d-like changes
#                      f initial push of a full Maildir into an empty account
#                      g one large message (--big MB) pulled, then one pushed: peak RSS
#   --big MB         size of scenario g's message (default 100)
#   --tls T          none | starttls | imaps (default none)
#   --trust T        how the tools trust the server's certificate: file (each tool's config
#                    names it: ca_file, CertificateFile) or system (no such setting; the tools
#                    run with SSL_CERT_FILE naming the system's CA bundle plus the server's
#                    certificate, as a server with a public CA is trusted) (default file)
#   --login L        fast | secure: Dovecot's imap-login in high-performance mode (long-lived,
#                    pre-started processes, as large installations run it) or in its default
#                    high-security mode (a new process per connection) (default fast)
#   --only TOOL      mbsync | quixysync (default: both)
#   --tag NAME       results file name (default <date>-n<N>-m<M>-<tls>)
#   --port P         plain/STARTTLS port (default: a free one); --tls-port P likewise
#   --state DIR      server, corpus and Maildirs (default /tmp/quixybench)
#   --loopfs yes|no  put DIR on a loop-mounted journaled ext4 image (default yes as root)
#   --server-fs F    own | shared: with --loopfs yes, the server's mail, indexes and logs on
#                    a loop-mounted image of their own, as a real server's are on its own
#                    machine, or on the tools' file system, where a tool's syncfs or fsync
#                    also writes out what the server has just written (default own)
#   --keep           leave the server's and the tools' mail in DIR after the run
#   --no-floors      do not probe the server's part of b and c (see README, "Floors")
#   --dirty MB       before each timed run, write MB of another program's data (not synced) on
#                    the tools' file system, as a download in progress would (default 0)
#   --settle S       pause before each timed run (default 1.1; see README)
#   --timeout S      kill a timed run after S seconds (default 3600)
#   --rtt MS         put a delay proxy (bench/cmd/delayproxy) between the tools and Dovecot
#                    adding MS of round trip, as to a remote server (default 0: none)
# Environment:
#   QS_BIN           quixysync binary (default: CGO_ENABLED=0 go build -o bench/out/quixysync .,
#                    static as the README installs it)
#   QS_BIN2          a second quixysync build, run as tool quixysync2 on its own account in
#                    the same reps (A/B of two builds; its own table under the main one)
#   QS_ARGS          extra arguments for quixysync sync/pull/push (e.g. --force)
#   QS_CONNECTIONS   connections = N for the quixysync IMAP store (default: its own, 4)
#   QS_CONNECTIONS2  the same for QS_BIN2's runs (an A/B of one build's settings: QS_BIN2
#                    may name the same binary as QS_BIN)
#   BENCH_MAIL_USER  owner of the server's mail when run as root (default nobody)
# Exit status: 0 all runs succeeded and verified, 1 a run failed or did not verify, 2 usage.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")

N=2000 M=10 PROFILE="" K=100 BIG=100 REPS=3 SCEN="" TLS=none TRUST=file LOGIN_MODE=fast ONLY="" TAG="" PORT="" TLSPORT=""
STATE=/tmp/quixybench LOOPFS="" SERVERFS=own SERVER_MOUNTED=0 KEEP=0 SETTLE=1.1 TIMEOUT=3600 SEED=1 MOUNTED_HERE=0 RTT=0 PROXY_PIDS="" FLOORS=1 DIRTY=0

die() { echo "compare.sh: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)" 2; }
while (($#)); do
    case $1 in
        -h|--help) usage; exit 0;;
        --keep) KEEP=1; shift; continue;;
        --no-floors) FLOORS=0; shift; continue;;
    esac
    need_arg "$@"
    case $1 in
        --n) N=$2;; --folders) M=$2;; --profile) PROFILE=$2;; --k) K=$2;; --big) BIG=$2;; --reps) REPS=$2;;
        --scenarios) SCEN=$2;; --tls) TLS=$2;; --trust) TRUST=$2;; --login) LOGIN_MODE=$2;; --only) ONLY=$2;; --tag) TAG=$2;;
        --port) PORT=$2;; --tls-port) TLSPORT=$2;; --state) STATE=$2;; --loopfs) LOOPFS=$2;; --server-fs) SERVERFS=$2;;
        --settle) SETTLE=$2;; --timeout) TIMEOUT=$2;; --seed) SEED=$2;; --rtt) RTT=$2;; --dirty) DIRTY=$2;;
        *) die "unknown option $1 (see --help)" 2;;
    esac
    shift 2
done

isnum() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number, not '$2'" 2; }
isnum --n "$N"; isnum --folders "$M"; isnum --k "$K"; isnum --reps "$REPS"; isnum --seed "$SEED"; isnum --rtt "$RTT"; isnum --dirty "$DIRTY"
((N > 0 && M > 0 && REPS > 0)) || die "--n, --folders and --reps must be > 0" 2
[[ -z $PORT ]] || isnum --port "$PORT"
[[ -z $TLSPORT ]] || isnum --tls-port "$TLSPORT"
[[ $TLS =~ ^(none|starttls|imaps)$ ]] || die "--tls must be none, starttls or imaps" 2
[[ $LOGIN_MODE =~ ^(fast|secure)$ ]] || die "--login must be fast or secure" 2
[[ $TRUST =~ ^(file|system)$ ]] || die "--trust must be file or system" 2
PROFILE=${PROFILE:-$( ((N >= 100000)) && echo small || echo normal)}
[[ $PROFILE =~ ^(normal|small)$ ]] || die "--profile must be normal or small" 2
SCEN=${SCEN:-$( ((N >= 100000)) && echo b,c,d || echo a,b,c,d,e,f,g)}
[[ $SCEN =~ ^[a-g](,[a-g])*$ ]] || die "--scenarios is a comma list of a b c d e f g, not '$SCEN'" 2
[[ $BIG =~ ^[1-9][0-9]*$ ]] || die "--big is a size in MB, not '$BIG'" 2
case $ONLY in
    "") TOOLS=mbsync,quixysync;;
    mbsync|quixysync) TOOLS=$ONLY;;
    *) die "--only must be mbsync or quixysync" 2;;
esac
STATE=$(realpath -m "$STATE")
TAG=${TAG:-$(date +%Y%m%d-%H%M%S)-n$N-m$M-$TLS}
[[ $TAG =~ ^[A-Za-z0-9._-]+$ ]] || die "--tag may hold letters, digits, . _ - only" 2

ROOT=0; [[ $(id -u) == 0 ]] && ROOT=1
LOOPFS=${LOOPFS:-$( ((ROOT)) && echo yes || echo no)}
[[ $LOOPFS =~ ^(yes|no)$ ]] || die "--loopfs must be yes or no" 2
[[ $LOOPFS == no ]] || ((ROOT)) || die "--loopfs yes needs root" 2
[[ $SERVERFS =~ ^(own|shared)$ ]] || die "--server-fs must be own or shared" 2
[[ $LOOPFS == yes ]] || SERVERFS=shared

# --- packages: Dovecot and isync, never from CI --------------------------------------
install_pkgs() {
    local need=()
    command -v dovecot >/dev/null && command -v doveadm >/dev/null || need+=(dovecot-imapd)
    command -v openssl >/dev/null || need+=(openssl)
    [[ $TOOLS != *mbsync* ]] || command -v mbsync >/dev/null || need+=(isync)
    ((${#need[@]})) || return 0
    if [[ -n ${CI:-} || -n ${GITHUB_ACTIONS:-} ]]; then
        die "missing ${need[*]}; the benchmark does not install packages under CI"
    fi
    ((ROOT)) || die "missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root"
    log "installing ${need[*]}"
    # Debian's postinst would start the system-wide Dovecot on 143/993; policy-rc.d forbids it.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    return 0
}
install_pkgs

# --- binaries: the exec helper that measures a run, and quixysync -----------------------
command -v go >/dev/null || die "go is needed to build bench/cmd/benchexec"
EXEC_BIN=$BENCH_DIR/out/benchexec
(cd "$REPO" && go build -o "$EXEC_BIN" ./bench/cmd/benchexec) || die "go build ./bench/cmd/benchexec failed"
PROXY_BIN=$BENCH_DIR/out/delayproxy
if ((RTT > 0)); then
    (cd "$REPO" && go build -o "$PROXY_BIN" ./bench/cmd/delayproxy) || die "go build ./bench/cmd/delayproxy failed"
fi
if [[ $TOOLS == *quixysync* ]]; then
    if [[ -z ${QS_BIN:-} ]]; then
        QS_BIN=$BENCH_DIR/out/quixysync
        log "building $QS_BIN"
        # As the README installs it: static (it starts 4-6 ms sooner).
        (cd "$REPO" && CGO_ENABLED=0 go build -o "$QS_BIN" .) || die "go build failed; set QS_BIN or use --only mbsync"
    fi
    QS_BIN=$(command -v "$QS_BIN") || die "QS_BIN ${QS_BIN} not found"
    QS_BIN=$(realpath "$QS_BIN")
fi
# QS_BIN2: a second quixysync build, run as a third tool on its own account in the same
# reps (an A/B of two builds against the same changes).
if [[ -n ${QS_BIN2:-} && $TOOLS == *quixysync* ]]; then
    QS_BIN2=$(command -v "$QS_BIN2") || die "QS_BIN2 ${QS_BIN2} not found"
    QS_BIN2=$(realpath "$QS_BIN2")
    TOOLS+=,quixysync2
fi

# --- one run at a time per state dir --------------------------------------------------
mkdir -p "$(dirname "$STATE")"
exec 9>"$STATE.lock"
flock -n 9 || die "another compare.sh is using $STATE"

cleanup() {
    local rc=$?
    local p
    for p in $PROXY_PIDS; do kill "$p" 2>/dev/null && while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
    [[ -z ${CONF:-} ]] || stop_dovecot
    if ((!KEEP)) && [[ -n ${MAIL:-} ]]; then
        rm -rf "$MAIL" "$STATE/local" "$STATE/work"
        # On the tools' file system the server's directory would be in the way of
        # a later run with --server-fs own (it is made again in a moment).
        [[ $SERVERFS == own ]] || rm -rf "$DOVE"
    fi
    ((SERVER_MOUNTED)) && detach_image "$STATE/dovecot"
    ((MOUNTED_HERE)) && detach_image "$STATE"
    exit $rc
}
detach_image() { # mount point: trim it and, unless --keep, unmount it and free its loop device
    fstrim "$1" 2>/dev/null || true   # hand freed blocks back: the image stays small
    ((KEEP)) && return 0
    local dev; dev=$(findmnt -n -o SOURCE --target "$1")
    umount "$1" && losetup -d "$dev" && rmdir "$1" 2>/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- state dir: optionally a journaled ext4 in a loop-mounted sparse image --------------
IMG=/var/tmp/quixybench-$(printf %s "$STATE" | md5sum | cut -c1-8).img
attach_image() { # image, mount point, size: mounts it unless it is; 0 if it is ours to clean up
    local img=$1 dir=$2 dev
    if mountpoint -q "$dir"; then
        [[ -n $(losetup -j "$img") ]]   # left mounted by an earlier run with --keep
        return
    fi
    [[ ! -e $dir || -z $(ls -A "$dir") ]] || die "$dir exists and is not our mount; remove it, or use --loopfs no (or --server-fs shared)"
    [[ -z $(losetup -j "$img") ]] || die "$img is attached already ($(losetup -j "$img")); is another run using it?"
    mkdir -p "$dir"
    if [[ ! -f $img ]]; then
        truncate -s "$3" "$img"   # sparse: holds only what is stored
        mkfs.ext4 -q -F -L quixybench "$img" || die "mkfs.ext4 $img failed"
    fi
    dev=$(losetup -f --show --direct-io=on "$img") || die "no free loop device; use --loopfs no"
    mount "$dev" "$dir" || { losetup -d "$dev"; die "mount $dev $dir failed"; }
}
if [[ $LOOPFS == yes ]]; then
    attach_image "$IMG" "$STATE" 12G && MOUNTED_HERE=1
    chmod 755 "$STATE"
    if [[ $SERVERFS == own ]]; then
        attach_image "${IMG%.img}-server.img" "$STATE/dovecot" 8G && SERVER_MOUNTED=1
        chmod 755 "$STATE/dovecot"
    fi
else
    mkdir -p "$STATE"; chmod 755 "$STATE"
fi
SRC=$(findmnt -n -o SOURCE --target "$STATE")
FSTYPE=$(findmnt -n -o FSTYPE --target "$STATE")
NOJOURNAL=0
[[ $FSTYPE == ext4 && $(cat "/sys/fs/ext4/$(basename "$SRC")/journal_task" 2>/dev/null) == "<none>" ]] && NOJOURNAL=1
STATE_FS="$FSTYPE on $SRC"
((NOJOURNAL)) && STATE_FS+=" (no journal)"
if [[ $SERVERFS == own ]]; then
    STATE_FS+="; server on its own $(findmnt -n -o FSTYPE --target "$STATE/dovecot") on $(findmnt -n -o SOURCE --target "$STATE/dovecot")"
else
    STATE_FS+="; server on the same file system"
fi

# --- Dovecot ----------------------------------------------------------------------------
DOVE=$STATE/dovecot CONF=$STATE/dovecot/dovecot.conf MAIL=$STATE/dovecot/mail
CERT=$DOVE/ssl/cert.pem KEY=$DOVE/ssl/key.pem PIDFILE=$DOVE/run/master.pid
if ((ROOT)); then
    MAIL_USER=${BENCH_MAIL_USER:-nobody}
    # Dovecot refuses uid 0 for mail; its internal users come with dovecot-core.
    INTERNAL=dovecot INTERNAL_GROUP=dovecot LOGIN=dovenull
else
    MAIL_USER=$(id -un) INTERNAL=$(id -un) INTERNAL_GROUP=$(id -gn) LOGIN=$(id -un)
fi
MUID=$(id -u "$MAIL_USER") || die "no user $MAIL_USER (BENCH_MAIL_USER)"
MGID=$(id -g "$MAIL_USER")

dove_pid() {  # our master only: pid from our master.pid, a dovecot running our config
    [[ -s $PIDFILE ]] || return 1
    local p; p=$(cat "$PIDFILE")
    [[ $p =~ ^[0-9]+$ && -d /proc/$p ]] || return 1
    grep -q dovecot "/proc/$p/comm" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF "$CONF" || return 1
    echo "$p"
}

stop_dovecot() {
    local p i
    p=$(dove_pid) || return 0
    kill "$p"
    for i in $(seq 1 100); do [[ -d /proc/$p ]] || return 0; sleep 0.1; done
    log "dovecot pid $p did not stop"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

write_conf() {
    mkdir -p "$DOVE"/{run,state,log,ssl,home} "$MAIL"
    chmod 755 "$DOVE" "$DOVE/home" "$DOVE/mail"
    chown "$MUID:$MGID" "$MAIL"
    if [[ ! -s $CERT ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout "$KEY" -out "$CERT" \
            -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null \
            || die "openssl could not make a certificate"
        chmod 600 "$KEY"; chmod 644 "$CERT"
    fi
    : >"$DOVE/users"
    local u
    for u in mbsync mbsync-push quixysync quixysync-push quixysync2 quixysync2-push; do   # password = user name
        mkdir -p "$DOVE/home/$u"; chown "$MUID:$MGID" "$DOVE/home/$u"
        echo "$u:{PLAIN}$u:$MUID:$MGID::$DOVE/home/$u::" >>"$DOVE/users"
    done
    chmod 644 "$DOVE/users"
    local chroot="" login=""
    ((ROOT)) || chroot="chroot ="
    # High-performance mode (Dovecot's documentation recommends it for busy servers): the
    # login processes are started in advance and serve many connections, so a client's
    # greeting comes in well under a millisecond instead of after a process start (16-30 ms
    # on the benchmark VM), which both tools would otherwise pay on every run.
    [[ $LOGIN_MODE == secure ]] || login=$'service_count = 0\n  process_min_avail = 2'
    cat >"$CONF" <<CONF
# generated by bench/compare.sh: private benchmark instance, loopback only
base_dir = $DOVE/run
state_dir = $DOVE/state
log_path = $DOVE/log/dovecot.log
instance_name = quixybench
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
ssl = yes
ssl_cert = <$CERT
ssl_key = <$KEY
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $MUID
last_valid_uid = $MUID
first_valid_gid = $MGID
default_internal_user = $INTERNAL
default_internal_group = $INTERNAL_GROUP
default_login_user = $LOGIN
# INBOX is the root maildir, "a/b" is the directory a/b; LAYOUT=fs allows "." in names.
mail_location = maildir:$MAIL/%u:LAYOUT=fs
namespace inbox {
  inbox = yes
  separator = /
  prefix =
}
mail_fsync = optimized
# Answer STATUS/SELECT from the index as production servers do; otherwise every STATUS
# re-reads cur/ (75 ms at 100 000 messages) and the server is what gets measured. The
# mail only ever changes over IMAP or before 'doveadm force-resync', so the index is true.
maildir_very_dirty_syncs = yes
mail_max_userip_connections = 64
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DOVE/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $DOVE/users
}
service imap-login {
  $chroot
  $login
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $TLSPORT
    ssl = yes
  }
}
# One process per connection: the master reaps it, so the server's CPU per run can be
# read from the master's cutime/cstime.
service imap {
  service_count = 1
}
service anvil {
  $chroot
}
service imap-hibernate {
  $chroot
}
CONF
}


stop_dovecot   # a leftover of an interrupted run on this state dir
PORT=${PORT:-$(free_port)}
TLSPORT=${TLSPORT:-$(free_port)}
[[ $PORT != "$TLSPORT" ]] || TLSPORT=$(free_port)
write_conf
dovecot -c "$CONF" </dev/null >/dev/null 2>&1 || { tail -20 "$DOVE/log/dovecot.log" >&2; die "dovecot did not start"; }
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
DPID=$(dove_pid) || { tail -20 "$DOVE/log/dovecot.log" >&2; die "dovecot did not start"; }
log "dovecot pid $DPID on 127.0.0.1:$PORT (imaps $TLSPORT), state $STATE ($STATE_FS)"

# With --rtt, the tools reach Dovecot through one delay proxy per port (RTT/2 each way).
TOOL_PORT=$PORT TOOL_TLSPORT=$TLSPORT
start_proxy() { # target port; sets PROXY_PORT (not a $(...): its PID must reach cleanup)
    local out="$STATE/dovecot/proxy-$1.out"
    PROXY_PORT=$(free_port)
    setsid "$PROXY_BIN" -listen "127.0.0.1:$PROXY_PORT" -to "127.0.0.1:$1" -delay "$((RTT * 500))us" </dev/null >"$out" 2>&1 &
    PROXY_PIDS="$PROXY_PIDS $!"
    for _ in $(seq 1 100); do grep -q ready "$out" 2>/dev/null && break; sleep 0.05; done
    grep -q ready "$out" || die "delay proxy did not start: $(cat "$out")"
}
if ((RTT > 0)); then
    start_proxy "$PORT"; TOOL_PORT=$PROXY_PORT
    start_proxy "$TLSPORT"; TOOL_TLSPORT=$PROXY_PORT
    log "delay proxies: $TOOL_PORT → $PORT, $TOOL_TLSPORT → $TLSPORT, round trip +${RTT} ms"
fi

set +e
python3 "$BENCH_DIR/lib/compare.py" --state "$STATE" --conf "$CONF" --mail "$MAIL" --dove-pid "$DPID" \
    --mail-uid "$MUID" --mail-gid "$MGID" --port "$PORT" --tlsport "$TLSPORT" --cafile "$CERT" \
    --tool-port "$TOOL_PORT" --tool-tlsport "$TOOL_TLSPORT" --rtt "$RTT" \
    --tls "$TLS" --trust "$TRUST" --login "$LOGIN_MODE" --n "$N" --folders "$M" --profile "$PROFILE" --seed "$SEED" --k "$K" --big "$BIG" --reps "$REPS" \
    --scenarios "$SCEN" --tools "$TOOLS" --exec-bin "$EXEC_BIN" --qs-bin "${QS_BIN:-}" --qs-bin2 "${QS_BIN2:-}" --qs-args "${QS_ARGS:-}" --tag "$TAG" \
    --results "$BENCH_DIR/results" --settle "$SETTLE" --timeout "$TIMEOUT" \
    --nojournal "$NOJOURNAL" --state-fs "$STATE_FS" --floors "$FLOORS" --dirty "$DIRTY"
rc=$?
set -e
log "results: $BENCH_DIR/results/$TAG.md and .jsonl"
exit $rc
