#!/bin/sh
# Build and run the deployment with the project's files; the Makefile's `wheelhouse`,
# `images`, `up` and `down` targets call this. Runs from the repository root.
#
#   docker/images.sh wheelhouse        every locked wheel (requirements/worker.txt and
#                                      server.txt, torch's CPU build included) into
#                                      docker/wheelhouse/, fetched by the host's pip
#   docker/images.sh images            the worker and server images (and RabbitMQ's when
#                                      the official one cannot be pulled)
#   docker/images.sh env               docker/.env from .env.example with fresh secrets,
#                                      when there is none
#   docker/images.sh compose ARGS...   docker compose with the project's files and env
#
# Settings (environment): BASE_IMAGE (python:3.11-slim-bookworm), RABBITMQ_IMAGE
# (rabbitmq:3.13-management), SPEECH_IMAGE_TAG (latest), SPEECH_ENV_FILE (docker/.env),
# SPEECH_PROJECT (speech: the compose project), CLUSTER (1: the three-node override),
# SPEECH_CACHE (/var/cache/speech-platform: wheels and Debian base images, by lock hash).
#
# Behind a firewall: where BASE_IMAGE or RABBITMQ_IMAGE can be neither found locally nor
# pulled, an equivalent is made from Debian packages with mmdebstrap and `docker import`
# (needs the Debian mirror, as apt-get does) and cached as an image named after its
# package list's hash.
set -eu

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-}
OFFICIAL_RABBITMQ=rabbitmq:3.13-management
TAG=${SPEECH_IMAGE_TAG:-latest}
ENV_FILE=${SPEECH_ENV_FILE:-docker/.env}
PROJECT=${SPEECH_PROJECT:-speech}
CACHE=${SPEECH_CACHE:-/var/cache/speech-platform}
PYTHON=${PYTHON:-python3}
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates,libsndfile1,libgomp1
RABBITMQ_PACKAGES=rabbitmq-server,ca-certificates

say() { echo "images: $*" >&2; }
now() { date +%s; }
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

wheelhouse() {
  key=$(hash_of requirements/worker.txt requirements/server.txt)
  cached="$CACHE/wheelhouse/$key"
  if [ ! -f "$cached/.complete" ]; then
    start=$(now)
    say "downloading the locked wheels into $cached"
    rm -rf "$cached.partial" && mkdir -p "$cached.partial"
    # `pip wheel` rather than `pip download`: a locked package published only as an sdist
    # (webrtcvad) becomes a wheel here, so the image needs no compiler.
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$cached.partial" \
      -r requirements/worker.txt -r requirements/server.txt
    touch "$cached.partial/.complete"
    rm -rf "$cached" && mv "$cached.partial" "$cached"
    say "wheelhouse made in $(($(now) - start)) s"
  fi
  rm -rf docker/wheelhouse && mkdir -p docker/wheelhouse
  # Hard links where the cache shares the file system (no copy), a copy otherwise.
  cp -al "$cached"/*.whl docker/wheelhouse/ 2>/dev/null || cp -a "$cached"/*.whl docker/wheelhouse/
  say "docker/wheelhouse: $(ls docker/wheelhouse | wc -l) wheels (lock $key)"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# An image made from Debian packages: mmdebstrap into a tarball (cached), docker import.
debian_image() {  # name packages -> prints the image reference
  key=$(echo "$SUITE $2" | sha256sum | cut -c1-12)
  ref="$1:$SUITE-$key"
  if ! have_image "$ref"; then
    command -v mmdebstrap >/dev/null || {
      say "mmdebstrap is missing (Debian: apt-get install mmdebstrap)"; exit 1; }
    tarball="$CACHE/debian/$1-$SUITE-$key.tar"
    if [ ! -f "$tarball" ]; then
      start=$(now)
      mkdir -p "$CACHE/debian"
      say "making $ref with mmdebstrap ($2)"
      partial="${tarball%.tar}.partial.tar"  # mmdebstrap picks its format by the name
      rm -rf "$partial"
      mmdebstrap --quiet --variant=minbase --include="$2" "$SUITE" "$partial" >&2
      mv "$partial" "$tarball"
      say "$tarball made in $(($(now) - start)) s"
    fi
    docker import --change 'CMD ["/bin/bash"]' "$tarball" "$ref" >/dev/null
  fi
  echo "$ref"
}

base_image() {  # prints the base image reference to build on
  if have_image "$BASE_IMAGE" || docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "$BASE_IMAGE"
  else
    say "$BASE_IMAGE cannot be pulled: a Debian $SUITE equivalent instead"
    debian_image speech-platform-base "$BASE_PACKAGES"
  fi
}

rabbitmq_ref() {  # the broker image compose runs
  if [ -n "$RABBITMQ_IMAGE" ]; then echo "$RABBITMQ_IMAGE"
  elif have_image "$OFFICIAL_RABBITMQ"; then echo "$OFFICIAL_RABBITMQ"
  else echo "speech-platform-rabbitmq:$TAG"; fi
}

rabbitmq_image() {
  wanted=${RABBITMQ_IMAGE:-$OFFICIAL_RABBITMQ}
  if have_image "$wanted" || docker pull -q "$wanted" >/dev/null 2>&1; then
    say "RabbitMQ: $wanted"
    return
  fi
  say "$wanted cannot be pulled: RabbitMQ from Debian's package instead"
  base=$(debian_image speech-platform-rabbitmq-base "$RABBITMQ_PACKAGES")
  build speech-platform-rabbitmq -f docker/rabbitmq/Dockerfile \
    --build-arg RABBITMQ_BASE="$base" docker/rabbitmq
}

build() {  # name docker-build-args... (tagged name:TAG)
  name=$1 && shift
  start=$(now)
  docker build -q -t "$name:$TAG" "$@" >/dev/null
  size=$(docker image inspect -f '{{.Size}}' "$name:$TAG")
  say "$name:$TAG built in $(($(now) - start)) s, $((size / 1000000)) MB"
}

images() {
  wheelhouse
  base=$(base_image)
  say "base image: $base"
  for target in worker server; do
    name=speech-platform && [ "$target" = server ] && name=speech-platform-server
    build "$name" -f docker/Dockerfile --target "$target" \
      --build-arg BASE_IMAGE="$base" --build-arg PLUGINS="${SPEECH_PLUGINS:-}" .
  done
  rabbitmq_image
}

env_file() {
  [ -f "$ENV_FILE" ] && return
  say "making $ENV_FILE from docker/.env.example with fresh secrets"
  umask 077
  while IFS= read -r line; do
    case "$line" in
      *=change-me*) echo "${line%%=*}=$(secret "${line%%=*}")" ;;
      SPEECH_*_PORT*=*) echo "${line%%=*}=$(host_port "${line%%=*}" "${line#*=}")" ;;
      *) echo "$line" ;;
    esac
  done < docker/.env.example > "$ENV_FILE"
}

host_port() {  # name default: the default, or a free port when this host already uses it
  "$PYTHON" - "$1" "$2" <<'PY'
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
with socket.socket() as probe:
    taken = probe.connect_ex(("127.0.0.1", port)) == 0
if taken:
    with socket.socket() as free:
        free.bind(("", 0))
        chosen = free.getsockname()[1]
    print(f"images: port {port} is in use on this host: {name}={chosen}", file=sys.stderr)
    port = chosen
print(port)
PY
}

secret() {  # letters and digits only: passwords go into URLs
  value=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
  case "$1" in FLOWER_BASIC_AUTH) echo "ops:$value" ;; *) echo "$value" ;; esac
}

compose() {
  env_file
  # docker/.env may name the broker image; otherwise the one `make images` made ready.
  RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-$(sed -n 's/^RABBITMQ_IMAGE=//p' "$ENV_FILE" | tail -1)}
  RABBITMQ_IMAGE=$(rabbitmq_ref) SPEECH_IMAGE_TAG=$TAG
  export RABBITMQ_IMAGE SPEECH_IMAGE_TAG
  [ "${CLUSTER:-0}" = 1 ] && set -- -f docker/docker-compose.cluster.yml "$@"
  set -- -p "$PROJECT" --env-file "$ENV_FILE" -f docker/docker-compose.yml "$@"
  if docker compose version >/dev/null 2>&1; then exec docker compose "$@"; fi
  exec docker-compose "$@"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  wheelhouse) wheelhouse ;;
  images) images ;;
  env) env_file ;;
  compose) compose "$@" ;;
  *) echo "usage: docker/images.sh wheelhouse|images|env|compose ARGS..." >&2; exit 2 ;;
esac
