// Builds the native UDP addon with the node-gyp bundled in npm, against the headers of the node
// that runs this script (e.g. /usr/include/node) when it has them, so nothing is downloaded.
// `npm run build:native:udp`; exits non-zero when the build fails (the library then uses node:dgram).
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
if (process.platform !== "linux") {
  console.log("native/udp: Linux only, skipped (node:dgram is used)")
  process.exit(0)
}
const prefix = resolve(dirname(process.execPath), "..")
const nodedir = existsSync(join(prefix, "include", "node", "node_api.h")) ? prefix : process.env.npm_config_nodedir
const candidates = [
  process.env.npm_execpath &&
    join(dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js")
].filter(Boolean)
const gyp = candidates.find((p) => existsSync(p))
if (!gyp) {
  console.error("native/udp: node-gyp not found (looked in npm's node_modules)")
  process.exit(1)
}
const args = [gyp, "rebuild", "-C", here, ...(nodedir ? [`--nodedir=${nodedir}`] : [])]
const r = spawnSync(process.execPath, args, { stdio: "inherit" })
process.exit(r.status ?? 1)
