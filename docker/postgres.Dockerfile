# postgres.Dockerfile — PostgreSQL 15 from Debian's packages, the database of docker/compose.yml.
#
# Built from debian:12-slim rather than pulled as postgres:15, so compose.yml runs where only
# Debian's package mirror is reachable (as on the project's machines, where `make check-container`
# runs it). The environment follows the official image's names: POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB; PGPORT moves the port (5432) for a shared host network. For a throwaway local
# database only: the data lives in the volume, the password in the compose file.
FROM debian:12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data

COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    PGPORT=5432
# Podman and Docker copy this directory's owner into a new named volume, so initdb may write it.
VOLUME /var/lib/postgresql/data
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=2s --timeout=3s --retries=30 \
  CMD ["sh", "-c", "pg_isready -q -h 127.0.0.1 -p \"$PGPORT\" -U \"${POSTGRES_USER:-postgres}\""]
# SIGINT: PostgreSQL's "fast" shutdown (SIGTERM would wait for every client to leave).
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
