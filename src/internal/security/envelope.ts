/**
 * The security envelope around every datagram of a secured connection (docs/PROTOCOL.md
 * "Security"). Plain TypeScript, no Effect: `seal` and `open` run once per datagram.
 *
 * | offset | size | field                                                          |
 * | ------ | ---- | -------------------------------------------------------------- |
 * | 0      | 2    | magic "ES" (0x45 0x53)                                         |
 * | 2      | 1    | version (high nibble, 1) and mode (low nibble: 1 encrypt, 2 authenticate) |
 * | 3      | 1    | key id                                                         |
 * | 4      | 12   | nonce: 64-bit random sender prefix ‖ 32-bit counter            |
 * | 16     | 8    | timestamp, ms (the sender's `now`)                             |
 * | 24     | n    | the inner datagram: AES-256-GCM ciphertext, or plaintext       |
 * | 24 + n | 16   | GCM tag over header (AAD) and inner datagram                   |
 *
 * Mode encrypt: header as AAD, inner datagram encrypted. Mode authenticate: GMAC, header and inner
 * datagram both AAD, inner datagram in the clear. The nonce is the header's bytes 4..16 as they
 * are, so sealing allocates one buffer and derives nothing. The AES-GCM itself is gcm.ts's: the
 * native addon when it is built, else node:crypto (same bytes either way).
 */
import { randomBytes } from "node:crypto"
import { readU32 } from "../protocol/wire.js"
import type { EngineSecurity, SecurityMode } from "./config.js"
import { defaultGcm, type Gcm, type GcmKey } from "./gcm.js"
import { connectionSubkey } from "./keys.js"
import { ReplayWindow } from "./replay.js"

export const ENVELOPE_MAGIC_0 = 0x45 // "E"
export const ENVELOPE_MAGIC_1 = 0x53 // "S"
export const ENVELOPE_VERSION = 1
export const ENVELOPE_HEADER_SIZE = 24
export const TAG_SIZE = 16
/** Bytes the envelope adds to a datagram. */
export const ENVELOPE_OVERHEAD = ENVELOPE_HEADER_SIZE + TAG_SIZE

const MODE_ENCRYPT = 1
const MODE_AUTHENTICATE = 2
const TWO_32 = 4294967296

/** The counters the envelope drops datagrams into (a subset of the engine's). */
export interface SecurityStats {
  securityMismatch: number
  unknownKeyIds: number
  authFailures: number
  replaysDropped: number
  staleDropped: number
}

/** Whether `bytes` starts like a security envelope (for a plaintext endpoint to count it). */
export const looksSealed = (bytes: Uint8Array): boolean =>
  bytes.length >= 2 && bytes[0] === ENVELOPE_MAGIC_0 && bytes[1] === ENVELOPE_MAGIC_1

export class SecureChannel {
  readonly mode: SecurityMode
  private readonly modeByte: number
  private readonly encrypt: boolean
  private readonly sealKeyId: number
  private readonly sealKey: GcmKey
  /** Accepted keys by id. */
  private readonly keys: Array<GcmKey | undefined> = new Array(256).fill(undefined)
  private readonly freshnessMs: number
  private readonly replay = new ReplayWindow()
  private readonly randomBytes: (n: number) => Uint8Array
  private prefixHi = 0
  private prefixLo = 0
  private counter = 0
  /** The header is built in a scratch buffer (the backends copy it into the envelope). */
  private readonly header = Buffer.alloc(ENVELOPE_HEADER_SIZE)
  /** The AES-GCM backend ("native" or "node"). */
  readonly backend: Gcm["name"]

  constructor(
    security: EngineSecurity,
    private readonly stats: SecurityStats,
    random: (n: number) => Uint8Array = randomBytes,
    gcm: Gcm = defaultGcm()
  ) {
    if (security.keys.length === 0) throw new Error("SecureChannel: no key")
    this.mode = security.mode
    this.encrypt = security.mode === "encrypt"
    this.modeByte = (ENVELOPE_VERSION << 4) | (this.encrypt ? MODE_ENCRYPT : MODE_AUTHENTICATE)
    this.backend = gcm.name
    for (const k of security.keys) {
      const subkey = connectionSubkey(k.key, security.context)
      this.keys[k.id] = gcm.key(subkey, this.encrypt)
      subkey.fill(0) // both backends keep their own copy
    }
    this.sealKeyId = security.keys[0].id
    this.sealKey = this.keys[this.sealKeyId]!
    this.freshnessMs = security.freshnessMs
    this.randomBytes = random
    this.header[0] = ENVELOPE_MAGIC_0
    this.header[1] = ENVELOPE_MAGIC_1
    this.newPrefix()
  }

  /**
   * A fresh random 64-bit nonce prefix. Drawn per channel (connection) and again whenever the
   * 32-bit counter is used up, so two processes sharing a key only reuse a nonce if they draw the
   * same 64-bit prefix (and overlapping counters).
   */
  private newPrefix(): void {
    const b = this.randomBytes(8)
    this.prefixHi = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0
    this.prefixLo = ((b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7]) >>> 0
    this.counter = 0
  }

  /** The sealed datagram (a new buffer: the inner one may be cached and sent again). */
  seal(inner: Uint8Array, now: number): Uint8Array {
    // The header is the AAD and (bytes 4..16) the nonce: the backend reads both from it.
    const header = this.header
    header[2] = this.modeByte
    header[3] = this.sealKeyId
    header.writeUInt32BE(this.prefixHi, 4)
    header.writeUInt32BE(this.prefixLo, 8)
    header.writeUInt32BE(this.counter, 12)
    const t = now > 0 ? Math.floor(now) : 0
    header.writeUInt32BE(Math.floor(t / TWO_32) >>> 0, 16)
    header.writeUInt32BE(t >>> 0, 20)
    if (this.counter === 0xffffffff) this.newPrefix()
    else this.counter++
    return this.sealKey.seal(header, inner)
  }

  /**
   * The inner datagram of an authentic, fresh, first-seen envelope; otherwise undefined, the
   * reason counted (nothing is counted for this channel's own datagrams, which the engine ignores
   * anyway). In authenticate mode the result is a view into `bytes`.
   */
  open(bytes: Uint8Array, now: number): Uint8Array | undefined {
    const stats = this.stats
    const length = bytes.length
    if (
      length <= ENVELOPE_OVERHEAD ||
      bytes[0] !== ENVELOPE_MAGIC_0 ||
      bytes[1] !== ENVELOPE_MAGIC_1 ||
      bytes[2] !== this.modeByte
    ) {
      stats.securityMismatch++
      return undefined
    }
    const keyId = bytes[3]
    const key = this.keys[keyId]
    if (key === undefined) {
      stats.unknownKeyIds++
      return undefined
    }
    const prefixHi = readU32(bytes, 4)
    const prefixLo = readU32(bytes, 8)
    // Multicast loopback of our own datagrams: skip the crypto (the engine drops them by session).
    if (prefixHi === this.prefixHi && prefixLo === this.prefixLo && keyId === this.sealKeyId) return undefined
    const inner = key.open(bytes)
    if (inner === undefined) {
      stats.authFailures++
      return undefined
    }
    if (this.freshnessMs > 0) {
      const t = readU32(bytes, 16) * TWO_32 + readU32(bytes, 20)
      if (Math.abs(now - t) > this.freshnessMs) {
        stats.staleDropped++
        return undefined
      }
    }
    if (!this.replay.accept(keyId, prefixHi, prefixLo, readU32(bytes, 12))) {
      stats.replaysDropped++
      return undefined
    }
    return inner
  }
}
