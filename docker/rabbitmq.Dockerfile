# rabbitmq.Dockerfile — RabbitMQ from Debian's packages, the broker of docker/compose.yml's
# `rabbitmq` profile (messaging.backend = rabbitmq).
#
# Built from debian:12-slim rather than pulled as rabbitmq:3, so the profile runs where only
# Debian's package mirror is reachable (as on the project's machines, where `make check-container`
# runs it). The environment follows the official image's names: RABBITMQ_DEFAULT_USER and
# RABBITMQ_DEFAULT_PASS create the first user on an empty data directory (RabbitMQ itself reads
# them). No plugin is enabled (no management UI). For a throwaway local broker only: the data lives
# in the volume, the password in the compose file.
FROM debian:12-slim

# The package's maintainer scripts would try to start the service during the build: refused here.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && printf 'listeners.tcp.default = 5672\n' >/etc/rabbitmq/rabbitmq.conf \
 && echo '[].' >/etc/rabbitmq/enabled_plugins

# A fixed node name: the data directory is named after it, and a container's host name changes
# every time it is created. Logs go to stdout (podman logs / docker logs).
ENV RABBITMQ_NODENAME=rabbit@localhost \
    RABBITMQ_LOGS=- \
    HOME=/var/lib/rabbitmq
# Podman and Docker copy this directory's owner (rabbitmq) into a new named volume; the Erlang
# cookie is created there on the first start.
VOLUME /var/lib/rabbitmq
USER rabbitmq
WORKDIR /var/lib/rabbitmq
EXPOSE 5672
# The AMQP listener opens only once the node has booted; a TCP connect is enough, and cheap (every
# rabbitmq-diagnostics call starts an Erlang VM).
HEALTHCHECK --interval=2s --timeout=3s --retries=60 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5672"]
# The package's server script, not /usr/sbin/rabbitmq-server (a wrapper that sends the logs to a
# file and does not pass SIGTERM on): it traps SIGTERM and stops the node cleanly.
ENTRYPOINT ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
