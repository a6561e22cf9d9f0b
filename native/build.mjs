// Builds the optional native addons with the node-gyp that npm bundles, against the running node's
// own headers (node_api.h, uv.h and its bundled OpenSSL's), so no header download and no network:
//   npm run build:native            both: the AES-GCM accelerator (native/) and the UDP backend (native/udp/)
//   node native/build.mjs udp       only native/udp (gcm: only native/)
// Nothing runs this on install, so a missing compiler never breaks `npm ci`; without an addon the
// library uses node:crypto / node:dgram. Exits non-zero if any requested build failed.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const addons = { gcm: here, udp: join(here, "udp") }
const wanted = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(addons)
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
  console.warn(`build:native: ${nodedir}/include/node has no OpenSSL headers; the gcm build will fail`)
let failed = 0
for (const name of wanted) {
  const dir = addons[name]
  if (dir === undefined) {
    console.error(`build:native: unknown addon ${name} (${Object.keys(addons).join(", ")})`)
    failed++
    continue
  }
  if (name === "udp" && process.platform !== "linux") {
    console.log("build:native: udp is Linux only, skipped (node:dgram is used)")
    continue
  }
  const r = spawnSync(
    process.execPath,
    [gyp, "rebuild", "--directory", dir, ...(nodedir ? [`--nodedir=${nodedir}`] : [])],
    {
      stdio: "inherit"
    }
  )
  if (r.status !== 0) {
    console.error(`build:native: ${name} failed (the library falls back to node's own implementation)`)
    failed++
  }
}
process.exit(failed > 0 ? 1 : 0)
