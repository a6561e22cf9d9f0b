/**
 * AES-256-GCM of the security envelope (envelope.ts), two backends behind one interface:
 *
 * - `native`: the optional addon in native/ (`npm run build:native`), one EVP context per key,
 *   keyed once, re-IVed per datagram; one N-API call per seal and per open.
 * - `node`: node:crypto, a `createCipheriv`/`createDecipheriv` per datagram (node:crypto cannot
 *   re-IV a GCM context): ~5-15 µs per datagram per side, most of a 1 KiB datagram's cost.
 *
 * Both produce the same bytes (docs/PROTOCOL.md "Security"); the addon is only a faster way to
 * compute them. It is loaded once, on the first secured channel, and checked against node:crypto
 * before use; anything wrong (not built, another ABI, `DISTRIBUTOR_NATIVE=0`) means `node`.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto"
import { createRequire } from "node:module"
import { findAddon, nativeDisabled } from "../addon.js"
import { slabAllocator } from "../slab.js"

const ALGORITHM = "aes-256-gcm"
/** Kept in step with envelope.ts (importing it would be circular). */
const HEADER = 24
const TAG = 16

export interface GcmKey {
  /**
   * The envelope `header ‖ body ‖ tag` in a new buffer: `header` (24 bytes, its bytes 4..16 the
   * nonce) is the AAD; the body is `inner` encrypted, or `inner` as it is (authenticate: GMAC over
   * header then inner).
   */
  seal(header: Buffer, inner: Uint8Array): Uint8Array
  /**
   * The inner datagram of the envelope `bytes` (longer than header + tag) if its tag checks out,
   * else undefined. Authenticate: a view into `bytes`. Encrypt: a new buffer (node:crypto), or
   * `bytes`' ciphertext decrypted in place (native; `bytes` is the receiver's own, see
   * Transport.DatagramHandler, and garbage after a failed open).
   */
  open(bytes: Uint8Array): Uint8Array | undefined
}

export interface Gcm {
  readonly name: "native" | "node"
  /** A key's state, for one mode (encrypt, or authenticate). */
  key(raw: Uint8Array, encrypt: boolean): GcmKey
}

// ---- node:crypto -------------------------------------------------------------------------------

class NodeKey implements GcmKey {
  private readonly key: KeyObject
  /** Scratch buffers (createCipheriv and setAAD copy what they are given; cheaper than views). */
  private readonly iv = Buffer.alloc(12)
  private readonly tag = Buffer.alloc(TAG)
  private readonly openHeader = Buffer.alloc(HEADER)

  constructor(
    raw: Uint8Array,
    private readonly encrypt: boolean
  ) {
    this.key = createSecretKey(raw)
  }

  seal(header: Buffer, inner: Uint8Array): Uint8Array {
    const n = inner.length
    const iv = this.iv
    for (let i = 0; i < 12; i++) iv[i] = header[4 + i]
    const out = Buffer.allocUnsafe(HEADER + n + TAG)
    out.set(header, 0)
    const cipher = createCipheriv(ALGORITHM, this.key, iv)
    cipher.setAAD(header)
    if (this.encrypt) {
      const ct = cipher.update(inner)
      const last = cipher.final()
      out.set(ct, HEADER)
      if (last.length > 0) out.set(last, HEADER + ct.length)
    } else {
      // GMAC: the inner datagram is more AAD, copied to the wire as it is.
      cipher.setAAD(inner)
      cipher.final()
      out.set(inner, HEADER)
    }
    out.set(cipher.getAuthTag(), HEADER + n)
    return out
  }

  open(bytes: Uint8Array): Uint8Array | undefined {
    const end = bytes.length - TAG
    const iv = this.iv
    for (let i = 0; i < 12; i++) iv[i] = bytes[4 + i]
    const tag = this.tag
    for (let i = 0; i < TAG; i++) tag[i] = bytes[end + i]
    try {
      const decipher = createDecipheriv(ALGORITHM, this.key, iv)
      decipher.setAuthTag(tag)
      if (this.encrypt) {
        const header = this.openHeader
        for (let i = 0; i < HEADER; i++) header[i] = bytes[i]
        decipher.setAAD(header)
        const inner = decipher.update(bytes.subarray(HEADER, end))
        decipher.final()
        return inner
      }
      decipher.setAAD(bytes.subarray(0, end))
      decipher.final()
      return bytes.subarray(HEADER, end)
    } catch {
      return undefined
    }
  }
}

export const nodeGcm: Gcm = { name: "node", key: (raw, encrypt) => new NodeKey(raw, encrypt) }

// ---- the native addon --------------------------------------------------------------------------

/** native/distributor_gcm.c. Calls return 1 (ok), 0 (tag mismatch), < 0 (bad arguments, OpenSSL error). */
interface Addon {
  newKey(key: Uint8Array): object | undefined
  sealEncrypt(key: object, out: Uint8Array, inner: Uint8Array): number
  sealAuthenticate(key: object, out: Uint8Array, inner: Uint8Array): number
  openEncrypt(key: object, bytes: Uint8Array, out: Uint8Array): number
  openAuthenticate(key: object, bytes: Uint8Array): number
}

/**
 * Sealed datagrams come from 64 KiB slabs (a pooled Buffer per datagram cost ~0.3 µs of the seal);
 * a slab lives until the last of its datagrams has been sent (the retransmission cache keeps the
 * inner datagrams, not these).
 */
const sealedBytes = slabAllocator(65_536)

class NativeKey implements GcmKey {
  constructor(
    private readonly addon: Addon,
    private readonly handle: object,
    private readonly encrypt: boolean
  ) {}

  seal(header: Buffer, inner: Uint8Array): Uint8Array {
    const out = sealedBytes(HEADER + inner.length + TAG)
    out.set(header, 0)
    const s = this.encrypt
      ? this.addon.sealEncrypt(this.handle, out, inner)
      : this.addon.sealAuthenticate(this.handle, out, inner)
    // Only a bug (a wrong length) or OpenSSL failing gets here: never send an unsealed buffer.
    if (s !== 1) throw new Error(`distributor_gcm: seal failed (${s})`)
    return out
  }

  open(bytes: Uint8Array): Uint8Array | undefined {
    const end = bytes.length - TAG
    if (!this.encrypt)
      return this.addon.openAuthenticate(this.handle, bytes) === 1 ? bytes.subarray(HEADER, end) : undefined
    // Decrypted in place: the received datagram is the endpoint's own (every transport hands each
    // receiver its own copy, Transport.DatagramHandler), and a buffer per datagram cost ~1 µs of a
    // 1 KiB subscriber's ~6. A datagram that fails is garbage afterwards, and dropped anyway.
    const inner = bytes.subarray(HEADER, end)
    return this.addon.openEncrypt(this.handle, bytes, inner) === 1 ? inner : undefined
  }
}

const nativeOf = (addon: Addon): Gcm => ({
  name: "native",
  key: (raw, encrypt) => {
    const handle = addon.newKey(raw)
    // A key OpenSSL refused is a key node:crypto would have to handle (it never happens in practice).
    return handle === undefined ? nodeGcm.key(raw, encrypt) : new NativeKey(addon, handle, encrypt)
  }
})

export const ADDON_FILE = "native/build/Release/distributor_gcm.node"

/** The same envelope sealed and opened by both backends, both modes: the addon must agree exactly. */
const agrees = (native: Gcm): string | undefined => {
  const raw = Buffer.alloc(32, 0x5a)
  const header = Buffer.alloc(HEADER, 0x33)
  const inner = Buffer.alloc(100, 0xc4)
  for (const encrypt of [true, false]) {
    const a = native.key(raw, encrypt).seal(header, inner)
    const b = nodeGcm.key(raw, encrypt).seal(header, inner)
    if (!Buffer.from(a).equals(Buffer.from(b))) return "sealed bytes differ from node:crypto's"
    const opened = native.key(raw, encrypt).open(b)
    if (opened === undefined || !Buffer.from(opened).equals(inner)) return "cannot open node:crypto's envelope"
    b[HEADER] ^= 1
    if (native.key(raw, encrypt).open(b) !== undefined) return "opened a forged envelope"
  }
  return undefined
}

let selected: { gcm: Gcm; native: Gcm | undefined; reason: string } | undefined

const load = (): NonNullable<typeof selected> => {
  if (nativeDisabled()) return { gcm: nodeGcm, native: undefined, reason: "DISTRIBUTOR_NATIVE=0" }
  // `DISTRIBUTOR_NATIVE_PATH` names the file outright; else the package's own build (addon.ts).
  const path = process.env.DISTRIBUTOR_NATIVE_PATH || findAddon(ADDON_FILE)
  if (path === undefined) return { gcm: nodeGcm, native: undefined, reason: "addon not built (npm run build:native)" }
  try {
    const native = nativeOf(createRequire(import.meta.url)(path) as Addon)
    const wrong = agrees(native)
    if (wrong !== undefined) return { gcm: nodeGcm, native: undefined, reason: `${path}: ${wrong}` }
    return { gcm: native, native, reason: path }
  } catch (err) {
    return { gcm: nodeGcm, native: undefined, reason: `${path}: ${err instanceof Error ? err.message : String(err)}` }
  }
}

/** The backend secured channels use: the addon if it loads and agrees with node:crypto, else node:crypto. */
export const defaultGcm = (): Gcm => (selected ??= load()).gcm

/** The addon's backend (undefined if it did not load), and why the default is what it is. */
export const gcmBackends = (): { readonly native: Gcm | undefined; readonly reason: string } => (selected ??= load())
