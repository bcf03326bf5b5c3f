#!/usr/bin/env bash
# Local Apache Kafka (KRaft, jars from Maven Central) and redis-server on 127.0.0.1, no Docker needed.
#
#   deploy/stack.sh up [--brokers 1|3] [--redis-cluster] [--no-kafka]
#                                        start (idempotent: a running stack is left as it is);
#                                        --redis-cluster: a 3-primary, 3-replica Redis Cluster
#                                        instead of the single redis-server; --no-kafka: Redis only
#   deploy/stack.sh down                 stop everything this script started
#   deploy/stack.sh down --purge         stop it at once (SIGKILL) and remove its data
#   deploy/stack.sh status               show what runs
#   deploy/stack.sh env                  print KAFKA_BOOTSTRAP_SERVERS / REDIS_URL exports
#   deploy/stack.sh jars                 only fetch (and cache) the broker jars
#
# Environment (defaults chosen not to collide with a developer's own 9092/6379):
#   REWARDS_KAFKA_PORT   first broker's client port      (19092; broker i listens on +2i)
#   REWARDS_REDIS_PORT   redis-server port               (16379)
#   REWARDS_REDIS_CLUSTER_PORT  first cluster node's port (17000; nodes on +0..+5, bus +10000)
#   REWARDS_STACK_DIR    data, logs and pid files        (~/.local/state/rewards-stack)
#   REWARDS_CACHE_DIR    cached broker jars              (~/.cache/rewards)
#   KAFKA_VERSION        must match deploy/kafka/pom.xml (3.9.1)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
KAFKA_PORT="${REWARDS_KAFKA_PORT:-19092}"
REDIS_PORT="${REWARDS_REDIS_PORT:-16379}"
CLUSTER_PORT="${REWARDS_REDIS_CLUSTER_PORT:-17000}"
CLUSTER_NODES=6
STACK_DIR="${REWARDS_STACK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/rewards-stack}"
CACHE_DIR="${REWARDS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rewards}"
LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
HEAP="${REWARDS_KAFKA_HEAP:-512m}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_bin() {
  local j="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$j" >/dev/null || die "java not found (Java 17+ is needed: apt-get install openjdk-17-jre-headless)"
  local v
  v=$("$j" -version 2>&1 | awk -F'"' '/version/ {print $2}' | cut -d. -f1)
  (( v >= 17 )) || die "Java $v found, 17+ needed"
  echo "$j"
}

fetch_jars() {
  if [[ -f "$LIBS/.complete" ]]; then return; fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -f "$HERE/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete"
}

broker_props() { # $1 node id, $2 number of brokers
  local id=$1 n=$2 voters="" i rf=1 isr=1
  for ((i = 0; i < n; i++)); do
    voters+="${voters:+,}$((i + 1))@127.0.0.1:$((KAFKA_PORT + 2 * i + 1))"
  done
  if ((n >= 3)); then rf=3; isr=2; fi
  cat <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((KAFKA_PORT + 2 * (id - 1))),CONTROLLER://127.0.0.1:$((KAFKA_PORT + 2 * (id - 1) + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$((KAFKA_PORT + 2 * (id - 1)))
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$STACK_DIR/kafka-$id/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=268435456
message.max.bytes=1048588
EOF
}

log4j_props() {
  cat <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$1
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
}

start_broker() { # $1 node id, $2 number of brokers, $3 cluster id
  local id=$1 n=$2 cid=$3 dir="$STACK_DIR/kafka-$1" java
  java=$(java_bin)
  if alive "$dir/pid"; then log "kafka node $id already running (pid $(cat "$dir/pid"))"; return; fi
  mkdir -p "$dir/data"
  broker_props "$id" "$n" >"$dir/server.properties"
  log4j_props "$dir/server.log" >"$dir/log4j.properties"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    "$java" -cp "$LIBS/*" -Dlog4j.configuration="file:$dir/log4j.properties" kafka.tools.StorageTool \
      format --cluster-id="$cid" -c "$dir/server.properties" --ignore-formatted >"$dir/format.log" 2>&1 ||
      { cat "$dir/format.log" >&2; die "formatting kafka node $id failed"; }
  fi
  : >"$dir/server.log"
  nohup "$java" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$LIBS/*" \
    kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  log "kafka node $id starting on 127.0.0.1:$((KAFKA_PORT + 2 * (id - 1))) (pid $!)"
}

wait_broker() { # $1 node id
  local dir="$STACK_DIR/kafka-$1" i
  for ((i = 0; i < 240; i++)); do
    if grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null &&
      port_open "$((KAFKA_PORT + 2 * ($1 - 1)))"; then
      return
    fi
    alive "$dir/pid" || { tail -n 40 "$dir/server.log" "$dir/stdout.log" >&2; die "kafka node $1 exited"; }
    sleep 0.5
  done
  die "kafka node $1 not ready after 120 s (see $dir/server.log)"
}

start_redis() {
  local dir="$STACK_DIR/redis"
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  mkdir -p "$dir"
  if alive "$dir/pid"; then log "redis already running (pid $(cat "$dir/pid"))"; return; fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$dir" \
    --pidfile "$dir/pid" --logfile "$dir/redis.log" --save "" --appendonly yes \
    --appendfsync everysec >/dev/null
  local i
  for ((i = 0; i < 100; i++)); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && { log "redis ready on 127.0.0.1:$REDIS_PORT"; return; }
    sleep 0.1
  done
  die "redis not ready (see $dir/redis.log)"
}

start_redis_node() { # $1 port; a cluster node, its files in $STACK_DIR/redis-cluster/<port>
  local dir="$STACK_DIR/redis-cluster/$1"
  mkdir -p "$dir"
  alive "$dir/pid" && return
  redis-server --bind 127.0.0.1 --port "$1" --daemonize yes --dir "$dir" \
    --pidfile "$dir/pid" --logfile "$dir/redis.log" --save "" --appendonly yes \
    --appendfsync everysec --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 >/dev/null
}

replicas_in_sync() { # replicas whose link to their primary is up (a failover needs one)
  local i n=0
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    redis-cli -p $((CLUSTER_PORT + i)) info replication 2>/dev/null | grep -q 'master_link_status:up' && n=$((n + 1))
  done
  echo "$n"
}

cluster_ok() { redis-cli -p "$CLUSTER_PORT" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }

start_redis_cluster() { # 3 primaries with a replica each, on loopback, from the same binary
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  local i j port nodes=() dir="$STACK_DIR/redis-cluster"
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    port=$((CLUSTER_PORT + i))
    start_redis_node "$port"
    nodes+=("127.0.0.1:$port")
  done
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    port=$((CLUSTER_PORT + i))
    for ((j = 0; j < 100; j++)); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
  if [[ ! -f "$dir/created" ]]; then
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
      || die "redis-cli --cluster create failed (see $dir/create.log)"
    touch "$dir/created"
  fi
  for ((i = 0; i < 300; i++)); do
    cluster_ok && (($(replicas_in_sync) == CLUSTER_NODES / 2)) && { log "redis cluster ready on 127.0.0.1:$CLUSTER_PORT-$((CLUSTER_PORT + CLUSTER_NODES - 1))"; return; }
    sleep 0.1
  done
  die "redis cluster not ready (see $dir/*/redis.log)"
}

redis_url() { # the URL a worker is given; redis+cluster:// selects cluster mode (every node named:
  # a client that starts while one is down asks the next)
  if [[ "$(cat "$STACK_DIR/redis-mode" 2>/dev/null)" == cluster ]]; then
    local i nodes=""
    for ((i = 0; i < CLUSTER_NODES; i++)); do nodes+="${nodes:+,}127.0.0.1:$((CLUSTER_PORT + i))"; done
    echo "redis+cluster://$nodes/0"
  else
    echo "redis://127.0.0.1:$REDIS_PORT/0"
  fi
}

new_cluster_id() { # like Kafka's Uuid.randomUuid(): url-safe base64, never starting with "-"
  python3 -c 'import base64,uuid
while (c := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(c)'
}

cmd_up() {
  local n=1 mode=single kafka=1
  while (($#)); do
    case "$1" in
      --brokers) n="$2"; shift 2 ;;
      --redis-cluster) mode=cluster; shift ;;
      --no-kafka) kafka=0; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ "$n" == 1 || "$n" == 3 ]] || die "--brokers takes 1 or 3"
  if [[ -f "$STACK_DIR/brokers" && "$(cat "$STACK_DIR/brokers")" != "$n" ]]; then
    die "a $(cat "$STACK_DIR/brokers")-broker stack lives in $STACK_DIR: run 'down --purge' first"
  fi
  if [[ -f "$STACK_DIR/redis-mode" && "$(cat "$STACK_DIR/redis-mode")" != "$mode" ]]; then
    die "a stack with $(cat "$STACK_DIR/redis-mode") Redis lives in $STACK_DIR: run 'down --purge' first"
  fi
  ((kafka)) && fetch_jars
  mkdir -p "$STACK_DIR"
  echo "$n" >"$STACK_DIR/brokers"
  echo "$mode" >"$STACK_DIR/redis-mode"
  if ((!kafka)); then
    if [[ "$mode" == cluster ]]; then start_redis_cluster; else start_redis; fi
    return
  fi
  [[ -f "$STACK_DIR/cluster-id" ]] || new_cluster_id >"$STACK_DIR/cluster-id"
  local cid i
  cid=$(cat "$STACK_DIR/cluster-id")
  for ((i = 1; i <= n; i++)); do start_broker "$i" "$n" "$cid"; done
  if [[ "$mode" == cluster ]]; then start_redis_cluster; else start_redis; fi
  for ((i = 1; i <= n; i++)); do wait_broker "$i"; done
  log "kafka ready: $(bootstrap)"
}

bootstrap() {
  local n=1 i out=""
  [[ -f "$STACK_DIR/brokers" ]] && n=$(cat "$STACK_DIR/brokers")
  for ((i = 0; i < n; i++)); do out+="${out:+,}127.0.0.1:$((KAFKA_PORT + 2 * i))"; done
  echo "$out"
}

stop_pid() { # $1 pid file, $2 name, $3 "now": SIGKILL at once (the data is thrown away anyway)
  alive "$1" || { rm -f "$1"; return; }
  local pid i
  pid=$(cat "$1")
  if [[ "${3:-}" != now ]]; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  kill -9 "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$1"
  log "stopped $2"
}

cmd_down() { # --purge: stop without a clean shutdown (a 3-broker KRaft quorum takes ~30 s to stop
  # in turn) and remove the data
  local d how=""
  [[ "${1:-}" == "--purge" ]] && how=now
  for d in "$STACK_DIR"/kafka-*; do [[ -d "$d" ]] && stop_pid "$d/pid" "kafka ${d##*/}" "$how"; done
  [[ -d "$STACK_DIR/redis" ]] && stop_pid "$STACK_DIR/redis/pid" redis "$how"
  for d in "$STACK_DIR"/redis-cluster/*/; do
    [[ -f "$d/pid" ]] && stop_pid "$d/pid" "redis node ${d%/}" "$how"
  done
  if [[ -n "$how" ]]; then rm -rf "$STACK_DIR"; log "removed $STACK_DIR"; fi
}

cmd_status() {
  local d
  for d in "$STACK_DIR"/kafka-* "$STACK_DIR/redis" "$STACK_DIR"/redis-cluster/*/; do
    d="${d%/}"
    [[ -d "$d" ]] || continue
    if alive "$d/pid"; then echo "${d##*/}: running (pid $(cat "$d/pid"))"; else echo "${d##*/}: stopped"; fi
  done
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  env) echo "export KAFKA_BOOTSTRAP_SERVERS=$(bootstrap)"; echo "export REDIS_URL=$(redis_url)" ;;
  jars) fetch_jars; echo "$LIBS" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
