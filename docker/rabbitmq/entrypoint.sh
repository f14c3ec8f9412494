#!/bin/sh
# Start RabbitMQ from Debian's package the way the official image starts: the account,
# vhost and Erlang cookie from the environment, every /etc/rabbitmq/conf.d/*.conf applied,
# logs on the console. All of it goes into one config file made at each start.
set -eu
conf=/tmp/rabbitmq.conf
{
  echo "# made by rabbitmq-entrypoint at container start"
  echo "log.console = true"
  echo "log.console.level = info"
  echo "log.file = false"
  echo "loopback_users.guest = true"
  if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
    echo "default_user = ${RABBITMQ_DEFAULT_USER}"
    echo "default_pass = ${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS is not set}"
    echo "default_user_tags.administrator = true"
  fi
  echo "default_vhost = ${RABBITMQ_DEFAULT_VHOST:-/}"
  for part in /etc/rabbitmq/conf.d/*.conf; do
    if [ -f "$part" ]; then echo "# $part"; cat "$part"; echo; fi
  done
} > "$conf"
export RABBITMQ_CONFIG_FILE="$conf"
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
  cookie="$HOME/.erlang.cookie"
  [ -f "$cookie" ] && chmod 600 "$cookie"
  printf '%s' "$RABBITMQ_ERLANG_COOKIE" > "$cookie"
  chmod 400 "$cookie"
  unset RABBITMQ_ERLANG_COOKIE
fi
exec "$@"
