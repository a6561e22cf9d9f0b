/**
 * The security envelope's per-datagram cost in isolation (bench/README.md "Security (issue 11)"):
 * node:crypto's AES-256-GCM calls in a bare loop, next to `SecureChannel.seal`/`open` on each
 * backend (node:crypto, and the native addon when it is built: `npm run build:native`), CPU time
 * per datagram (`process.cpuUsage`), cases interleaved, min and median over the rounds.
 *
 *   npx tsx bench/crypto.bench.ts [size=1024] [datagrams per round=50000] [rounds=9]
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from "node:crypto"
import type { EngineSecurity } from "../src/internal/security/config.js"
import { SecureChannel } from "../src/internal/security/envelope.js"
import { type Gcm, gcmBackends, nodeGcm } from "../src/internal/security/gcm.js"

const size = Number(process.argv[2] ?? 1024)
const n = Number(process.argv[3] ?? 50_000)
const rounds = Number(process.argv[4] ?? 9)

const security: EngineSecurity = {
  mode: "encrypt",
  keys: [{ id: 1, key: randomBytes(32) }],
  freshnessMs: 300_000,
  context: "239.255.0.1:7000"
}
const stats = () => ({ securityMismatch: 0, unknownKeyIds: 0, authFailures: 0, replaysDropped: 0, staleDropped: 0 })
const native = gcmBackends().native
if (native === undefined) console.log(`no native rows: ${gcmBackends().reason}`)
const backends: Array<Gcm> = native === undefined ? [nodeGcm] : [nodeGcm, native]
const sealer = new SecureChannel(security, stats(), undefined, nodeGcm)
const inner = randomBytes(size)
const sealed: Array<Uint8Array> = []
for (let i = 0; i < n; i++) sealed.push(sealer.seal(inner, 1e12))

const key = randomBytes(32)
const keyObject = createSecretKey(key)
const iv = Buffer.alloc(12)
const aad = Buffer.alloc(24)
/** The decrypt case's nonce (the encrypt cases count in `iv`). */
const iv0 = Buffer.alloc(12)
const c0 = createCipheriv("aes-256-gcm", keyObject, iv0)
c0.setAAD(aad)
const ct = c0.update(inner)
c0.final()
const tag = c0.getAuthTag()
let sink = 0
/** The native cases' header (the node cases' `aad` stays all zero: the decrypt case's AAD). */
const nativeHeader = Buffer.alloc(24)

const encrypt = (k: typeof key | typeof keyObject, withData: boolean, out: boolean) => () => {
  for (let i = 0; i < n; i++) {
    iv.writeUInt32BE(i, 8)
    const c = createCipheriv("aes-256-gcm", k, iv)
    c.setAAD(aad)
    if (!out) {
      if (withData) c.update(inner)
      c.final()
      sink += c.getAuthTag()[0]
      continue
    }
    // What seal adds around the calls: one output buffer, header, ciphertext and tag copied in.
    const o = Buffer.allocUnsafe(24 + size + 16)
    o.set(aad, 0)
    o.set(c.update(inner), 24)
    c.final()
    o.set(c.getAuthTag(), 24 + size)
    sink += o[5]
  }
}

const cases: Record<string, () => void> = {
  "createCipheriv only": () => {
    for (let i = 0; i < n; i++) sink += createCipheriv("aes-256-gcm", key, iv) ? 1 : 0
  },
  "encrypt, no data (create+AAD+final+tag)": encrypt(key, false, false),
  "encrypt (raw key)": encrypt(key, true, false),
  "encrypt (KeyObject)": encrypt(keyObject, true, false),
  "encrypt + seal's buffer and copies": encrypt(key, true, true),
  "decrypt (KeyObject)": () => {
    for (let i = 0; i < n; i++) {
      const d = createDecipheriv("aes-256-gcm", keyObject, iv0)
      d.setAAD(aad)
      d.setAuthTag(tag)
      sink += d.update(ct)[0]
      d.final()
    }
  },
  ...(native === undefined
    ? {}
    : {
        "native key: seal (encrypt)": () => {
          const k = native.key(key, true)
          for (let i = 0; i < n; i++) {
            nativeHeader.writeUInt32BE(i, 12)
            sink += k.seal(nativeHeader, inner)[30]
          }
        },
        "native key: open (one envelope, decrypt)": () => {
          const k = native.key(key, true)
          const env = k.seal(nativeHeader, inner)
          for (let i = 0; i < n; i++) sink += k.open(env)?.[0] ?? 0
        }
      })
}
for (const gcm of backends) {
  const mode = security.mode
  cases[`SecureChannel.seal, ${gcm.name}`] = () => {
    const ch = new SecureChannel(security, stats(), undefined, gcm)
    for (let i = 0; i < n; i++) sink += ch.seal(inner, 1e12)[5]
  }
  cases[`SecureChannel.open, ${gcm.name} (${n} distinct)`] = () => {
    const opener = new SecureChannel({ ...security, mode }, stats(), undefined, gcm)
    for (let i = 0; i < n; i++) sink += opener.open(sealed[i], 1e12)?.[0] ?? 0
  }
}
for (const gcm of backends) {
  // Authenticate mode (GMAC): sealed by node:crypto once, opened by each backend.
  const auth: EngineSecurity = { ...security, mode: "authenticate" }
  const authSealed: Array<Uint8Array> = []
  const s = new SecureChannel(auth, stats(), undefined, nodeGcm)
  for (let i = 0; i < n; i++) authSealed.push(s.seal(inner, 1e12))
  cases[`SecureChannel.seal, authenticate, ${gcm.name}`] = () => {
    const ch = new SecureChannel(auth, stats(), undefined, gcm)
    for (let i = 0; i < n; i++) sink += ch.seal(inner, 1e12)[5]
  }
  cases[`SecureChannel.open, authenticate, ${gcm.name}`] = () => {
    const opener = new SecureChannel(auth, stats(), undefined, gcm)
    for (let i = 0; i < n; i++) sink += opener.open(authSealed[i], 1e12)?.[0] ?? 0
  }
}

const cpuPer = (f: () => void): number => {
  const t = process.cpuUsage()
  f()
  const d = process.cpuUsage(t)
  return (d.user + d.system) / n
}
const results = new Map<string, Array<number>>()
for (let r = 0; r < rounds; r++)
  for (const [name, f] of Object.entries(cases)) results.set(name, [...(results.get(name) ?? []), cpuPer(f)])
console.log(`${size} B, ${n} datagrams × ${rounds} rounds, CPU µs per datagram (min / median)`)
for (const [name, xs] of results) {
  const s = xs.slice().sort((a, b) => a - b)
  console.log(`${name.padEnd(48)} ${s[0].toFixed(2).padStart(6)} / ${s[s.length >> 1].toFixed(2).padStart(6)}`)
}
if (sink === 0.5) console.log(sink) // keeps the results used
