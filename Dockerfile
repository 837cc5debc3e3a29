# The agent-platform control plane. Build it with `make platform-image`
# (scripts/build-platform-image.sh): that script stages the compiled code and the production
# node_modules under .images/platform-app/ on the host, which is all this build reads (see
# .dockerignore), and builds FROM a local base image, so no registry is ever contacted.
#
# NODE_BASE: agent-platform/node-base:<node version> from `scripts/build-images.sh
# platform-base` (Node.js and its shared libraries on an empty root, no shell). Another base
# with node on PATH and the same glibc as the staging host also works.
ARG NODE_BASE=agent-platform/node-base:20

# Stage 1: check the host-built tree against this image's own node and libraries, so a
# native addon or an import that does not resolve fails the build, not the first start.
# Exec-form RUN only: the base has no shell.
FROM ${NODE_BASE} AS build
# Dependencies before code: they change far less often, so their layers stay cached.
WORKDIR /app
COPY .images/platform-app/node_modules/ /app/node_modules/
RUN ["node", "-e", "const Database = require('better-sqlite3'); if (new Database(':memory:').prepare('select 41 + 1 as n').get().n !== 42) process.exit(1)"]
COPY .images/platform-app/package.json /app/
COPY .images/platform-app/bin/ /app/bin/
COPY .images/platform-app/dist/ /app/dist/
RUN ["node", "bin/agent-platform.js", "--help"]
RUN ["node", "-e", "require('fs').mkdirSync('/var/lib/agent-platform', { recursive: true })"]

# Stage 2: the runtime. Code owned by root and read-only to the process; its only writable
# place is the data directory (a volume), so `docker run --read-only --tmpfs /tmp` works.
FROM ${NODE_BASE}
LABEL org.opencontainers.image.title="agent-platform" \
      org.opencontainers.image.description="Control plane that runs AI agents as locked-down containers" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /app/node_modules /app/node_modules
COPY --from=build /app/package.json /app/package.json
COPY --from=build /app/bin /app/bin
COPY --from=build /app/dist /app/dist
COPY --from=build --chown=10001:10001 /var/lib/agent-platform /var/lib/agent-platform
WORKDIR /app
# 0.0.0.0: inside its own network namespace the platform must listen on every interface to
# be reachable through a published port. Publish it on loopback only
# (`-p 127.0.0.1:8080:8080`) unless a TLS proxy sits in front.
# The egress firewall edits the host's iptables; from a container it could only reach the
# container's own, so it is off here (see docs/deploy.md for allowlist egress).
ENV NODE_ENV=production \
    AGENT_PLATFORM_HOST=0.0.0.0 \
    AGENT_PLATFORM_PORT=8080 \
    AGENT_PLATFORM_DATA_DIR=/var/lib/agent-platform \
    AGENT_PLATFORM_EGRESS_FIREWALL=false
USER 10001:10001
VOLUME ["/var/lib/agent-platform"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.AGENT_PLATFORM_PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/agent-platform.js"]
CMD ["serve"]
