#!/usr/bin/env bash
# Prove the README's setup on a really fresh machine: a minimal Debian 12 root (debootstrap
# minbase, then only python3, git and ca-certificates), a fresh clone of this repository's
# committed HEAD, the README's apt-get lines for the app and the tests, then the README's two
# commands exactly as written, as an ordinary user:
#
#   python3 dev.py app    on a real X server (Xvfb, no QT_QPA_PLATFORM): waits for the window,
#                         takes a screenshot, then runs the app's self-test on that display
#   python3 dev.py test   the whole suite
#
# and, as root in a second fresh clone, `CI=true bash .ci/run` (which installs its own list and
# builds the bundle). Prints each step's time. Needs root, debootstrap, Xvfb, xdotool, and
# ImageMagick's `import` on this machine; the X server runs here, outside the root, so that
# nothing X-related is installed inside it that could hide a missing library.
#
#   sudo tools/fresh-debian.sh [--keep] [--out DIR] [--mirror URL]
#
# --keep leaves the root (its path is printed) instead of deleting it; --out (default
# ./fresh-debian-out) receives the logs and the screenshot. The app runs in a network
# namespace with only loopback (the start screen looks for chats on the LAN); pip reaches the
# package index the way this machine does: its pip configuration, PIP_* variables and CA
# certificates are copied into the root, and local folders that configuration names
# (find-links, file:// indexes) are mounted read-only.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
KEEP=0
OUT=$PWD/fresh-debian-out
MIRROR=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
  case $1 in
    --keep) KEEP=1 ;;
    --out) OUT=$(realpath -m "$2"); shift ;;
    --mirror) MIRROR=$2; shift ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "fresh-debian: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
for tool in debootstrap Xvfb xdotool import unshare git python3; do
  command -v "$tool" >/dev/null || { echo "fresh-debian: needs $tool on this machine" >&2; exit 2; }
done

mkdir -p "$OUT"
ROOT=$(mktemp -d /var/tmp/fresh-debian.XXXXXX)
chmod 755 "$ROOT" # it becomes /, which everyone must be able to enter
LOG=$OUT/steps.log
: >"$LOG"
MOUNTS=()
XVFB_PID=
TIMES=()

cleanup() {
  local status=$?
  [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null
  # Processes the steps left in the root (the app, a chromium) would keep mounts busy.
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$ROOT" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -R "${MOUNTS[i]}" 2>/dev/null || umount -lR "${MOUNTS[i]}" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ]; then
    echo "fresh-debian: kept the root in $ROOT"
  elif ! grep -qs " $ROOT/" /proc/mounts; then
    rm -rf --one-file-system "$ROOT"
  else
    echo "fresh-debian: something is still mounted under $ROOT; not deleting it" >&2
  fi
  exit "$status"
}
trap cleanup EXIT INT TERM

bind() { # bind SOURCE [ro]: mount a folder of this machine at the same path inside the root
  mkdir -p "$ROOT$1"
  mount --rbind "$1" "$ROOT$1"
  mount --make-rslave "$ROOT$1"
  MOUNTS+=("$ROOT$1")
  if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$ROOT$1"; fi
}

step() { # step NAME COMMAND...: run, log, time; stop everything if it fails
  local name=$1 started ended status=0
  shift
  echo "=== $name" | tee -a "$LOG"
  started=$(date +%s.%N)
  "$@" >>"$LOG" 2>&1 || status=$?
  ended=$(date +%s.%N)
  TIMES+=("$(printf '%-58s %7.1f s  %s' "$name" "$(awk "BEGIN {print $ended - $started}")" \
    "$([ $status = 0 ] && echo ok || echo "FAILED ($status)")")")
  if [ $status != 0 ]; then
    tail -n 60 "$LOG"
    table
    echo "fresh-debian: FAILED at: $name (log: $LOG)"
    exit 1
  fi
}

table() {
  printf '\n%-58s %9s\n' "step" "time"
  printf '%s\n' "${TIMES[@]}"
}

in_root() { # in_root USER COMMAND: a login-like shell in the root, clean environment
  local user=$1 home=/root
  local path=/usr/local/bin:/usr/bin:/bin
  [ "$user" = root ] && path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  [ "$user" = root ] || home=/home/$user
  # pivot_root in a mount namespace of its own rather than a plain chroot: in a chroot the
  # kernel refuses user namespaces, which some tests use (unshare --map-root-user).
  # shellcheck disable=SC2016,SC2086  # $0/$@ are the inner shell's; PIP_ENV is words
  unshare --mount --propagation private -- sh -c 'mount --rbind "$0" "$0" && cd "$0" &&
    mkdir -p .old-root && pivot_root . .old-root && umount -l /.old-root && rmdir /.old-root &&
    exec chroot "$@"' "$ROOT" --userspec="$user:$user" . /usr/bin/env -i HOME="$home" \
    USER="$user" LANG=C.UTF-8 PATH=$path TERM=dumb $PIP_ENV /bin/bash -c "cd ~ && $2"
}

# ---- the root -----------------------------------------------------------------------------

step "debootstrap bookworm (minbase)" \
  debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR"

prepare_root() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # The README's apt-get lines are run as written; a person answers apt's question with Enter.
  echo 'APT::Get::Assume-Yes "true";' >"$ROOT/etc/apt/apt.conf.d/90fresh-debian-yes"
  mount -t proc proc "$ROOT/proc" && MOUNTS+=("$ROOT/proc")
  mount -t sysfs sys "$ROOT/sys" && MOUNTS+=("$ROOT/sys")
  bind /dev
  chmod 1777 "$ROOT/tmp"
  # The pip configuration of this machine, and what it names on disk.
  local f dir
  for f in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip"; do
    [ -e "$f" ] || continue
    mkdir -p "$ROOT$(dirname "$f")"
    cp -a "$f" "$ROOT$f"
  done
  for dir in $( (cat /etc/pip.conf /etc/xdg/pip/* "$HOME"/.config/pip/* "$HOME"/.pip/* 2>/dev/null
    env | sed -n 's/^PIP_[A-Z_]*=//p') | tr ' =' '\n\n' | sed -n 's|^\(file://\)\{0,1\}\(/[^ ]*\)$|\2|p' |
    sort -u); do
    case $dir in /etc/* | /dev* | /proc* | /sys* | /root* | /home*) continue ;; esac
    # A file:// index's pages (.../simple) link to files beside it: mount its parent.
    [ "$(basename "$dir")" = simple ] && dir=$(dirname "$dir")
    if [ -d "$dir" ] && ! grep -qs " $ROOT$dir " /proc/mounts; then bind "$dir" ro; fi
  done
  # CA certificates of this machine (an intercepting proxy's, for pip and apt over https).
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  if [ -d /usr/local/share/ca-certificates ]; then
    cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
  fi
}
step "prepare the root (mounts, pip config, CA certificates)" prepare_root
PIP_ENV=$(env | grep '^PIP_' | tr '\n' ' ' || true)

step "apt-get install python3 git ca-certificates (the base)" \
  in_root root "apt-get update -qq && apt-get install -qq --no-install-recommends python3 git ca-certificates sudo && update-ca-certificates"

step "a user, and two fresh clones of $(git -C "$REPO" rev-parse --short HEAD)" bash -c "
  chroot '$ROOT' useradd --create-home --shell /bin/bash dev &&
  mkdir -p '$ROOT/home/dev/.config' &&
  if [ -d '$HOME/.config/pip' ]; then cp -a '$HOME/.config/pip' '$ROOT/home/dev/.config/'; fi &&
  git clone -q --no-local '$REPO' '$ROOT/home/dev/desktop-chat' &&
  git clone -q --no-local '$REPO' '$ROOT/root/desktop-chat' &&
  chroot '$ROOT' chown -R dev:dev /home/dev"

# ---- the README ---------------------------------------------------------------------------

# The apt-get lines for the app and the tests, exactly as the README shows them (continuation
# lines joined); sudo is there because the root is a fresh Debian with only root.
README_APT=$(python3 - "$ROOT/home/dev/desktop-chat/README.md" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read().replace("\\\n", " ")
lines = [" ".join(l.split()) for l in text.splitlines() if l.strip().startswith("sudo apt-get install")]
print("\n".join(lines[:2]))
EOF
)
echo "$README_APT" | sed 's/^/README: /' | tee -a "$LOG"
[ "$(echo "$README_APT" | wc -l)" = 2 ] || { echo "fresh-debian: expected two apt-get lines in the README" >&2; exit 1; }
step "README: apt-get install (the app's and the tests' lists)" \
  in_root root "apt-get update -qq && $(echo "$README_APT" | sed 's/$/ \&\&/' | tr '\n' ' ') true"

# `python3 dev.py app` twice: first for its setup (with the network; --version stops before the
# window), then exactly as written, with only loopback, on a real X server.
step "python3 dev.py app --version (first run: creates .venv)" \
  in_root dev "cd desktop-chat && python3 dev.py app --version"

start_x() {
  local fd_file=$OUT/.display
  Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$fd_file" >>"$LOG" 2>&1 &
  XVFB_PID=$!
  for _ in $(seq 100); do [ -s "$fd_file" ] && break; sleep 0.1; done
  DISPLAY_NUMBER=$(cat "$fd_file")
  rm -f "$fd_file"
  bind /tmp/.X11-unix
}
step "Xvfb on this machine (its socket mounted into the root)" start_x
export DISPLAY=:$DISPLAY_NUMBER

APP_PID=
start_app() {
  setsid unshare --net sh -c "ip link set lo up && exec chroot --userspec=dev:dev '$ROOT' \
    /usr/bin/env -i HOME=/home/dev USER=dev LANG=C.UTF-8 PATH=/usr/bin:/bin DISPLAY=$DISPLAY \
    /bin/bash -c 'cd ~/desktop-chat && exec python3 dev.py app'" >"$OUT/app.log" 2>&1 &
  APP_PID=$!
  timeout 120 xdotool search --sync --onlyvisible --name '.+' >/dev/null
}
step "python3 dev.py app: until its window is on the X screen" start_app

shoot() {
  sleep 2 # the window is mapped; give it a moment to paint before the picture
  import -display "$DISPLAY" -window root "$OUT/app-xcb.png"
  xdotool search --onlyvisible --name '.+' getwindowname %@
  kill -TERM -- "-$APP_PID"
  wait "$APP_PID" || true
  cat "$OUT/app.log"
  ! grep -qi "could not load the qt platform plugin\|cannot load its" "$OUT/app.log"
}
step "screenshot ($OUT/app-xcb.png), then close the app" shoot

step "the app's self-test on the X server (xcb)" bash -c "
  unshare --net sh -c \"ip link set lo up && exec chroot --userspec=dev:dev '$ROOT' \
    /usr/bin/env -i HOME=/home/dev LANG=C.UTF-8 PATH=/usr/bin:/bin DISPLAY=$DISPLAY \
    /bin/bash -c 'cd ~/desktop-chat && .venv/bin/python -m desktop_chat.launcher --self-test'\" |
    tee '$OUT/selftest.log' && grep -q 'on Qt xcb' '$OUT/selftest.log'"
kill "$XVFB_PID" && XVFB_PID=

results() { # the pytest summary lines of the step named $1
  awk -v name="=== $1" '$0 == name { on = 1; next } /^=== / { on = 0 } on' "$LOG" | grep -E '^(=+ .*(passed|failed|error).* =+|SKIPPED|ERROR|FAILED)'
}

step "python3 dev.py test" in_root dev "cd desktop-chat && python3 dev.py test"
results "python3 dev.py test"

# ---- CI -----------------------------------------------------------------------------------

step "CI=true bash .ci/run (as root, another fresh clone)" \
  in_root root "cd desktop-chat && CI=true bash .ci/run"
results "CI=true bash .ci/run (as root, another fresh clone)"

table
echo "fresh-debian: all steps passed (log: $LOG, screenshot: $OUT/app-xcb.png)"
