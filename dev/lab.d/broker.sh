# The lab's Kafka-protocol broker: Tansu with in-memory storage, its own process on loopback.
# In-memory means a broker restart forgets every topic; tests that restart the broker must say so.

broker_pid() { [ -f "$LAB_DIR/broker/tansu.pid" ] && cat "$LAB_DIR/broker/tansu.pid"; }

broker_running() {
    local pid
    pid=$(broker_pid) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

broker_up() {
    mkdir -p "$LAB_DIR/broker"
    if broker_running; then return 0; fi
    port_open "$LAB_BROKER_PORT" && die "port $LAB_BROKER_PORT is taken by another process; set LAB_BROKER_PORT"
    log "starting the broker on 127.0.0.1:$LAB_BROKER_PORT"
    setsid "$TANSU_BIN" broker \
        --cluster-id "replicator-lab-$LAB_NAME" \
        --listener-url "tcp://127.0.0.1:$LAB_BROKER_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$LAB_BROKER_PORT" \
        --storage-engine "memory://tansu/" \
        </dev/null >"$LAB_DIR/broker/tansu.log" 2>&1 &
    echo $! > "$LAB_DIR/broker/tansu.pid"
    wait_for 30 "the broker to listen on $LAB_BROKER_PORT" port_open "$LAB_BROKER_PORT"
}

broker_down() {
    local pid
    broker_running || { rm -f "$LAB_DIR/broker/tansu.pid"; return 0; }
    pid=$(broker_pid)
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$LAB_DIR/broker/tansu.pid"
    return 0
}
