#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (tests use the real one); start one if not.
set -euo pipefail
port=${REDIS_PORT:-6379}
ping() { (exec 3<>/dev/tcp/127.0.0.1/"$port" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
ping && exit 0
if ! command -v redis-server >/dev/null; then
  echo "[redis] installing Debian's redis-server" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi
fi
echo "[redis] starting redis-server on 127.0.0.1:$port" >&2
dir=$(mktemp -d)
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log"
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "[redis] redis-server did not answer on port $port" >&2
exit 1
