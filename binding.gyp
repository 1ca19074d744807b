{
  # Kernel TCP probes (workers/gateway/probes): a plain Node-API addon, no node-addon-api.
  # Built by `npm ci` through node-gyp; off Linux it compiles to a stub that reports
  # { supported: false }, and kernelProbe.ts degrades to "unknown" when it is missing.
  "targets": [
    {
      "target_name": "streamheal_probes",
      "sources": ["workers/gateway/probes/native/tcp_probe.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=gnu11"] }
    }
  ]
}
