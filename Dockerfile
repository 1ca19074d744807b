# syntax=docker/dockerfile:1
# The streamheal gateway image. The same image runs the orchestrator (store=etcd) with the
# command `node dist/workers/orchestrator/main.js`. `cdk deploy` builds it (infra/, for ARM64 by
# default: on an x86 machine that needs Docker buildx with QEMU, see docs/deploy.md).
#
#   build    compilers + every dependency: the native probe addon (node-gyp) and dist/ (tsc)
#   deps     production dependencies only (npm ci --omit=dev), no install scripts
#   runtime  Node.js 24, non-root, nothing but node_modules, dist/ and the addon
#
# test/infra/dockerfile.test.ts replays these steps without a Docker engine and starts the
# image's command from the resulting layout.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# node-gyp compiles against the headers installed with this Node; nothing is downloaded.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY binding.gyp tsconfig.json tsconfig.build.json ./
COPY shared ./shared
COPY workers ./workers
COPY functions ./functions
# The package's install script falls back to "no kernel probes" when the compile fails; an
# image must not ship without them, so loading the addon is checked here.
RUN npm run install \
 && node -e "const a = require('./build/Release/streamheal_probes.node'); if (a.supported !== true) { console.error('kernel probe addon unsupported'); process.exit(1); }"
# tsc emits no .proto files; the gRPC code loads them from beside its compiled modules.
RUN npm run build \
 && find shared workers functions -name '*.proto' -exec cp --parents {} dist/ \;

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    STREAMHEAL_HOST=0.0.0.0 \
    STREAMHEAL_PORT=8080
WORKDIR /app
# Everything stays owned by root: the process (user node) can read it, not change it.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist/shared ./dist/shared
COPY --from=build /app/dist/workers ./dist/workers
COPY --from=build /app/dist/functions ./dist/functions
COPY --from=build /app/build/Release/streamheal_probes.node ./build/Release/streamheal_probes.node
USER node
# 8080: HTTP (WebSocket, SSE, publish, metrics, health); 9090: gRPC control.
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
CMD ["node", "dist/workers/gateway/main.js"]
