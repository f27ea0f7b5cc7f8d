#!/usr/bin/env bash
# Start the services the tests use (RabbitMQ, PostgreSQL, MariaDB) if they
# are not already listening on loopback, and wait until they answer.
set -u

listening() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

wait_port() {
    local port=$1 name=$2 i
    for i in $(seq 1 120); do
        listening "$port" && return 0
        sleep 0.5
    done
    echo "ERROR: $name is not listening on 127.0.0.1:$port" >&2
    return 1
}

if ! listening 5432; then
    echo "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
if ! listening 3306; then
    echo "Starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
if ! listening 5672; then
    echo "Starting RabbitMQ"
    rabbitmq-server -detached
fi
rc=0
wait_port 5432 PostgreSQL || rc=1
wait_port 3306 MariaDB || rc=1
wait_port 5672 RabbitMQ || rc=1
exit $rc
