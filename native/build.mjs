// Builds the optional AES-GCM accelerator (native/distributor_gcm.c) with the node-gyp that npm
// bundles, against the running node's own headers (node_api.h and its bundled OpenSSL's), so no
// header download and no network: `npm run build:native`. Nothing runs this on install, so a
// missing compiler never breaks `npm ci`; without the build the library uses node:crypto.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const gyp =
  process.env.npm_config_node_gyp ??
  join(
    dirname(process.env.npm_execpath ?? join(dirname(process.execPath), "../lib/node_modules/npm/bin/npm-cli.js")),
    "../node_modules/node-gyp/bin/node-gyp.js"
  )
// The headers installed with this node (e.g. /usr/include/node for /usr/bin/node) unless npm names a nodedir.
const prefix = resolve(dirname(process.execPath), "..")
const nodedir =
  process.env.npm_config_nodedir || (existsSync(join(prefix, "include/node/node_api.h")) ? prefix : undefined)
if (nodedir === undefined) console.warn("build:native: no local node headers; node-gyp will try to download them")
else if (!existsSync(join(nodedir, "include/node/openssl/evp.h")))
  console.warn(`build:native: ${nodedir}/include/node has no OpenSSL headers; the build will fail`)
const r = spawnSync(
  process.execPath,
  [gyp, "rebuild", "--directory", here, ...(nodedir ? [`--nodedir=${nodedir}`] : [])],
  {
    stdio: "inherit"
  }
)
process.exit(r.status ?? 1)
