#!/usr/bin/env bash
# Side-by-side benchmark on Cyrus IMAP: quixysync (one or two binaries) against mbsync.
#
#   bench/cyrus.sh [options]
#
# One run: starts a private Cyrus (3.x, Debian's cyrus-common + imapd) on 127.0.0.1, a free
# port, plain IMAP, in a throwaway directory under /dev/shm, with one account per tool (qs,
# qs2, mb); loads the same deterministic corpus into each over IMAP (untimed); then per tool
# an initial pull (scenario a, timed once), and R reps of b (no-op), c (server changes) and,
# if asked, d (local changes), the tools alternating run by run. After every timed run the
# account and the Maildir must hold the same messages with the same flags. Prints a markdown table per scenario and
# writes bench/results/cyrus-n<N>-m<M>-<tag>.{md,jsonl}. Stops Cyrus by its PID at the end.
# Same configuration as internal/cyrustest (altnamespace, unixhierarchysep, immediate
# delete/expunge). See bench/README.md, "Cyrus".
#
# Options:
#   --n N            messages in the corpus (default 2000)
#   --folders M      folders, INBOX among them (default 10)
#   --profile P      small (0.6-3 KB messages) | normal (2-200 KB, N/500 of 1-5 MB) (default small)
#   --k K            messages per kind of change in c (default 100)
#   --reps R         timed runs per scenario and tool (default 5)
#   --scenarios L    comma list of a,b,c,d (default a,b,c; without a the initial pull is untimed;
#                    d: local changes, K new files, K flag renames, K deletions in the Maildir)
#   --only L         comma list of mbsync, quixysync, quixysync2 (default: all configured)
#   --qs-bin PATH    quixysync binary (default: CGO_ENABLED=0 go build -o bench/out/quixysync .)
#   --qs-bin2 PATH   a second quixysync binary, column quixysync2 (e.g. before a change)
#   --mb-compress yes|no  mbsync's COMPRESS=DEFLATE, which Cyrus offers: yes (mbsync's default)
#                    or no (DisableExtension COMPRESS=DEFLATE); quixysync never compresses (default yes)
#   --tag NAME       results file suffix (default <date>-<time>)
#   --state DIR      Maildirs, configs, logs (default /tmp/qscyrusbench)
#   --loopfs yes|no  put DIR on a loop-mounted journaled ext4 image, as compare.sh does
#                    (default yes: this VM's root ext4 has no journal)
#   --settle S       pause before each timed run (default 1.1; see README)
#   --timeout S      kill a timed run after S seconds (default 1800)
#   --keep           leave DIR's Maildirs and logs (the server is always removed)
# Environment:
#   MBSYNC           mbsync binary (default: mbsync on PATH)
# Exit status: 0 all runs succeeded and verified, 1 a run failed or did not verify, 2 usage.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")

N=2000 M=10 PROFILE=small K=100 REPS=5 SCEN=a,b,c ONLY="" QS_BIN="" QS_BIN2="" TAG="" MB_COMPRESS=yes
STATE=/tmp/qscyrusbench LOOPFS=yes SETTLE=1.1 TIMEOUT=1800 KEEP=0
CY_BIN=/usr/lib/cyrus/bin
CY_IMAPD_DIRS="$CY_BIN /var/tmp/qscyrus-imapd/usr/lib/cyrus/bin"
INSTALL_HINT="as root: apt-get install -y --no-install-recommends cyrus-common sasl2-bin isync && apt-get download cyrus-imapd && dpkg -x cyrus-imapd_*.deb /var/tmp/qscyrus-imapd"

die() { echo "cyrus.sh: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)" 2; }

while (($#)); do
    case $1 in
        -h|--help) usage; exit 0;;
        --keep) KEEP=1; shift; continue;;
    esac
    need_arg "$@"
    case $1 in
        --n) N=$2;; --folders) M=$2;; --profile) PROFILE=$2;; --k) K=$2;; --reps) REPS=$2;;
        --scenarios) SCEN=$2;; --only) ONLY=$2;; --qs-bin) QS_BIN=$2;; --qs-bin2) QS_BIN2=$2;; --mb-compress) MB_COMPRESS=$2;;
        --tag) TAG=$2;; --state) STATE=$2;; --loopfs) LOOPFS=$2;; --settle) SETTLE=$2;; --timeout) TIMEOUT=$2;;
        *) die "unknown option $1 (see --help)" 2;;
    esac
    shift 2
done
for v in "--n:$N" "--folders:$M" "--k:$K" "--reps:$REPS" "--timeout:$TIMEOUT"; do
    [[ ${v#*:} =~ ^[1-9][0-9]*$ ]] || die "${v%%:*} must be a whole number > 0, not '${v#*:}'" 2
done
[[ $PROFILE =~ ^(small|normal)$ ]] || die "--profile must be small or normal" 2
[[ $SCEN =~ ^[abcd](,[abcd])*$ ]] || die "--scenarios is a comma list of a b c d, not '$SCEN'" 2
[[ $LOOPFS =~ ^(yes|no)$ ]] || die "--loopfs must be yes or no" 2
[[ $MB_COMPRESS =~ ^(yes|no)$ ]] || die "--mb-compress must be yes or no" 2
((2 * K <= N)) || die "--k must be at most half of --n" 2
TAG=${TAG:-$(date +%Y%m%d-%H%M%S)}
[[ $TAG =~ ^[A-Za-z0-9._-]+$ ]] || die "--tag may hold letters, digits, . _ - only" 2
[[ $(id -u) == 0 ]] || die "needs root: Cyrus drops to the cyrus user, which must own its files"

# Tools: all configured ones, or --only's.
TOOLS=quixysync; [[ -n $QS_BIN2 ]] && TOOLS+=,quixysync2; TOOLS+=,mbsync
if [[ -n $ONLY ]]; then
    for t in ${ONLY//,/ }; do
        [[ $t =~ ^(mbsync|quixysync|quixysync2)$ ]] || die "--only takes mbsync, quixysync, quixysync2" 2
        [[ $t != quixysync2 || -n $QS_BIN2 ]] || die "--only quixysync2 needs --qs-bin2" 2
    done
    TOOLS=$ONLY
fi

# --- packages and binaries ------------------------------------------------------------------
CY_IMAPD=""
for d in $CY_IMAPD_DIRS; do [[ -x $d/imapd ]] && { CY_IMAPD=$d/imapd; break; }; done
if [[ -z $CY_IMAPD || ! -x $CY_BIN/master ]] || ! command -v saslpasswd2 >/dev/null \
    || { [[ $TOOLS == *mbsync* ]] && ! command -v mbsync >/dev/null; }; then
    [[ -z ${CI:-} && -z ${GITHUB_ACTIONS:-} ]] || die "Cyrus or isync missing; the benchmark installs nothing under CI"
    log "installing cyrus-common sasl2-bin isync; unpacking imapd from cyrus-imapd"
    made_policy=0   # Debian's postinst would start the system-wide Cyrus; policy-rc.d forbids it
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cyrus-common sasl2-bin isync >/dev/null
    if [[ ! -x $CY_BIN/imapd && ! -x /var/tmp/qscyrus-imapd/usr/lib/cyrus/bin/imapd ]]; then
        dl=$(mktemp -d)
        (cd "$dl" && apt-get download cyrus-imapd >/dev/null && dpkg -x cyrus-imapd_*.deb /var/tmp/qscyrus-imapd) \
            || die "could not unpack imapd: $INSTALL_HINT"
        rm -rf "$dl"
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    CY_IMAPD=""
    for d in $CY_IMAPD_DIRS; do [[ -x $d/imapd ]] && { CY_IMAPD=$d/imapd; break; }; done
    [[ -n $CY_IMAPD ]] || die "no imapd: $INSTALL_HINT"
fi
id cyrus >/dev/null 2>&1 || die "no cyrus user: $INSTALL_HINT"

command -v go >/dev/null || die "go is needed to build bench/cmd/benchexec"
EXEC_BIN=$BENCH_DIR/out/benchexec
(cd "$REPO" && go build -o "$EXEC_BIN" ./bench/cmd/benchexec) || die "go build ./bench/cmd/benchexec failed"
if [[ $TOOLS == *quixysync* && -z $QS_BIN ]]; then
    QS_BIN=$BENCH_DIR/out/quixysync
    log "building $QS_BIN"
    (cd "$REPO" && CGO_ENABLED=0 go build -o "$QS_BIN" .) || die "go build failed; pass --qs-bin"
fi
for v in QS_BIN QS_BIN2; do
    [[ -z ${!v} ]] && continue
    p=$(command -v "${!v}") || die "${!v} not found"
    printf -v "$v" %s "$(realpath "$p")"
done

# --- one run at a time; cleanup whatever happens -------------------------------------------
STATE=$(realpath -m "$STATE")
mkdir -p "$(dirname "$STATE")"
exec 9>"$STATE.lock"
flock -n 9 || die "another cyrus.sh is using $STATE"

CY_DIR="" MASTER_PID="" IMG="" DEV="" MOUNTED=0
stop_cyrus() {
    [[ -n $MASTER_PID ]] || return 0
    local i
    kill -TERM -- "-$MASTER_PID" 2>/dev/null || true   # master and its imapds: its own process group
    for i in $(seq 1 100); do kill -0 -- "-$MASTER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 -- "-$MASTER_PID" 2>/dev/null; then
        log "cyrus master $MASTER_PID did not stop within 10 s; killing its group"
        kill -KILL -- "-$MASTER_PID" 2>/dev/null || true
    fi
    MASTER_PID=""
}
cleanup() {
    local rc=$?
    stop_cyrus
    [[ -z $CY_DIR ]] || rm -rf "$CY_DIR"
    ((KEEP)) || rm -rf "$STATE/local" "$STATE/work"
    if ((MOUNTED)); then
        if ((KEEP)); then
            log "kept $STATE mounted from $DEV ($IMG); umount $STATE && losetup -d $DEV && rm $IMG"
        else
            umount "$STATE" && losetup -d "$DEV" && rmdir "$STATE" 2>/dev/null
            rm -f "$IMG"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- state dir: a journaled ext4 in a sparse loop image, removed at the end ------------------
if [[ $LOOPFS == yes ]]; then
    mountpoint -q "$STATE" && die "$STATE is a mount point already (a --keep run?); umount it first"
    [[ ! -e $STATE || -z $(ls -A "$STATE") ]] || die "$STATE exists and is not empty; remove it or use --state"
    mkdir -p "$STATE"
    IMG=/var/tmp/qscyrusbench-$$.img
    truncate -s 16G "$IMG"
    mkfs.ext4 -q -F -L qscyrusbench "$IMG" || die "mkfs.ext4 $IMG failed"
    DEV=$(losetup -f --show --direct-io=on "$IMG") || die "no free loop device; use --loopfs no"
    mount "$DEV" "$STATE" || { losetup -d "$DEV"; die "mount $DEV $STATE failed"; }
    MOUNTED=1
else
    mkdir -p "$STATE"
fi
STATE_FS="$(findmnt -n -o FSTYPE --target "$STATE") on $(findmnt -n -o SOURCE --target "$STATE")"
mkdir -p "$STATE/local" "$STATE/work"

# --- Cyrus (as internal/cyrustest writes it) -----------------------------------------------
CY_DIR=$(mktemp -d /dev/shm/qscyrusbench-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN=admin$$ ADMIN_PASS=pw-$RANDOM$RANDOM$RANDOM PASS=bench-pw
LIB=$CY_DIR/lib
mkdir -p "$CY_DIR/spool" "$LIB"/{db,proc,socket,lock,log,msg,ptclient,quota,sieve,user,sync}
chmod 755 "$CY_DIR"
cat >"$CY_DIR/imapd.conf" <<CONF
configdirectory: $LIB
partition-default: $CY_DIR/spool
sievedir: $LIB/sieve
servername: cyrustest
admins: $ADMIN
unixhierarchysep: yes
altnamespace: yes
virtdomains: off
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $CY_DIR/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
lmtpsocket: $LIB/socket/lmtp
idlesocket: $LIB/socket/idle
notifysocket: $LIB/socket/notify
autocreate_quota: -1
delete_mode: immediate
expunge_mode: immediate
CONF
cat >"$CY_DIR/cyrus.conf" <<CONF
START {
  recover cmd="$CY_BIN/ctl_cyrusdb -C $CY_DIR/imapd.conf -r"
}
SERVICES {
  imap cmd="$CY_IMAPD -C $CY_DIR/imapd.conf" listen="127.0.0.1:$PORT" prefork=4 maxchild=32
}
EVENTS {
}
DAEMON {
}
CONF
for u in "$ADMIN:$ADMIN_PASS" "qs:$PASS" "qs2:$PASS" "mb:$PASS"; do
    printf '%s' "${u#*:}" | saslpasswd2 -p -c -f "$CY_DIR/sasldb2" -u cyrustest "${u%%:*}"
done
chown -R cyrus:"$(id -gn cyrus)" "$CY_DIR"
# master in the foreground, in a process group of its own (setsid), detached from our stdio
setsid "$CY_BIN/master" -C "$CY_DIR/imapd.conf" -M "$CY_DIR/cyrus.conf" -p "$CY_DIR/master.pid" \
    </dev/null >"$CY_DIR/master.log" 2>&1 &
MASTER_PID=$!
for _ in $(seq 1 200); do
    kill -0 "$MASTER_PID" 2>/dev/null || { tail -20 "$CY_DIR/master.log" >&2; MASTER_PID=""; die "cyrus master exited"; }
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { tail -20 "$CY_DIR/master.log" >&2; die "no listener on $PORT"; }
[[ $(cat "/proc/$MASTER_PID/comm") == master ]] || die "pid $MASTER_PID is not the cyrus master"
log "cyrus master pid $MASTER_PID on 127.0.0.1:$PORT, dir $CY_DIR; Maildirs on $STATE ($STATE_FS)"

set +e
python3 "$BENCH_DIR/lib/cyrusbench.py" --port "$PORT" --admin "$ADMIN" --admin-pass "$ADMIN_PASS" --password "$PASS" \
    --master-pid "$MASTER_PID" --server-dir "$(stat -f -c %T "$CY_DIR") ($CY_DIR)" \
    --state "$STATE" --state-fs "$STATE_FS" --n "$N" --folders "$M" --profile "$PROFILE" --k "$K" --reps "$REPS" \
    --scenarios "$SCEN" --tools "$TOOLS" --qs-bin "$QS_BIN" --qs-bin2 "$QS_BIN2" --exec-bin "$EXEC_BIN" --mb-compress "$MB_COMPRESS" \
    --settle "$SETTLE" --timeout "$TIMEOUT" --results "$BENCH_DIR/results" --tag "$TAG"
rc=$?
set -e
exit $rc
