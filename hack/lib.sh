# shellcheck shell=bash
# Shared helpers for the hack/ scripts. Source it; it sets strict mode.
set -euo pipefail

NODESTAMP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NODESTAMP_ROOT
FRONTEND_IMAGE=${FRONTEND_IMAGE:-nodestamp/frontend:dev}
export FRONTEND_IMAGE

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# The running script's header (the comment block under the #! line) without the '# ': its usage.
usage_text() { awk 'NR == 1 {next} /^# shellcheck/ {exit} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; }

# The Debian mirror this machine already uses, read from its apt sources (never hard-coded).
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ && !/security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find a Debian mirror in /etc/apt/sources.list{,.d}"
  printf '%s\n' "${uri%/}"
}

apt_updated=
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "${p%%/*}" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Engines ---------------------------------------------------------------------------------
# Two Docker engines can live on one machine (hack/setup engine installs both):
#   current  the default: Debian unstable's docker.io/docker-cli, containerd, docker-buildx, with
#            the system's runc; dockerd on the default socket.
#   min      the oldest supported engine: Debian 13's docker.io 26.1.5 (BuildKit 0.13), docker-cli
#            and docker-buildx 0.13.1, and its containerd 1.7, unpacked under $ENGINE_MIN_ROOT
#            (never installed with dpkg) and run as a second dockerd with its own containerd,
#            data root, bridge and socket.
# NODESTAMP_ENGINE selects one for every hack script and engine test; selecting `min` exports
# DOCKER_HOST, DOCKER_CONFIG (its cli-plugins hold buildx 0.13.1) and puts its docker CLI first
# on PATH, so a plain `docker` reaches it.
NODESTAMP_ENGINE=${NODESTAMP_ENGINE:-current}
ENGINE_MIN_ROOT=/opt/nodestamp/engine-min
ENGINE_MIN_RUN=/run/nodestamp-min
ENGINE_MIN_DATA=/var/lib/nodestamp-min
export NODESTAMP_ENGINE ENGINE_MIN_ROOT

# Exports the client environment of the engine named $1 (default: $NODESTAMP_ENGINE).
use_engine() {
  local engine=${1:-$NODESTAMP_ENGINE}
  case "$engine" in
    current)
      # Leave a DOCKER_HOST of the user's alone; drop only what selecting `min` set.
      if [ "${DOCKER_HOST:-}" = "unix://$ENGINE_MIN_RUN/docker.sock" ]; then
        unset DOCKER_HOST DOCKER_CONFIG
        PATH=$(printf '%s' ":$PATH:" | sed "s#:$ENGINE_MIN_ROOT/bin:#:#g; s#^:##; s#:\$##")
        export PATH
      fi
      ;;
    min)
      export DOCKER_HOST="unix://$ENGINE_MIN_RUN/docker.sock"
      export DOCKER_CONFIG="$ENGINE_MIN_ROOT/config"
      case ":$PATH:" in *":$ENGINE_MIN_ROOT/bin:"*) ;; *) PATH="$ENGINE_MIN_ROOT/bin:$PATH" ;; esac
      export PATH
      ;;
    *) die "unknown NODESTAMP_ENGINE '$engine' (accepted: current, min)" ;;
  esac
  NODESTAMP_ENGINE=$engine
  export NODESTAMP_ENGINE
}
use_engine
