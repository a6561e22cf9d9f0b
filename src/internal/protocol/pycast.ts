/**
 * The pycast wire format (docs/PROTOCOL.md "pycast dialect"): a pure codec of its six packet
 * types, plus the helpers its fields need (application id hash, byte-reversed IPv4 addresses,
 * strings counted in characters). No engine logic: `pycastDialect.ts` translates these packets to
 * and from the engine's own packet model.
 *
 * Layout facts (from pycast's source and captures of its own test programs, test/fixtures/pycast):
 * - big-endian; a 20-byte header: u16 version 0x0100 (only the major byte is checked), u8 type,
 *   u8 flags, u32 host address, u32 sender id, u32 sender start time (unix seconds), u32 app id;
 * - IPv4 addresses are written byte-reversed (a.b.c.d → d c b a) wherever they appear;
 * - a string is u8 present + u16 length in CHARACTERS (Python's `len`) + UTF-8; bytes are u8
 *   present + u32 length + data.
 *
 * `decodePycast` never throws; `encodePycast(decodePycast(d))` gives back `d` byte for byte for
 * every datagram pycast sends (tested on the captures). Encoders throw `RangeError` on values the
 * format cannot carry (sequence numbers beyond u32, strings over 65 535 characters).
 */
import { type DecodeFailure, type DecodeFailureReason, decodedUpdate, type PackedUpdate } from "./packets.js"
import { readU16, readU32, writeU16, writeU32 } from "./wire.js"

export const PYCAST_HEADER_SIZE = 20
/** pycast's segment size: every datagram it builds is at most this long (and ours, in its dialect). */
export const PYCAST_SEGMENT_SIZE = 8192
/** Header + sequence number + update count. */
export const PYCAST_UPDATE_HEADER_SIZE = PYCAST_HEADER_SIZE + 8
/** pycast's own fit rule for one update in a segment: subject characters + 10 + data bytes. */
export const PYCAST_UPDATE_FIT_OVERHEAD = 10
/** Bytes a large update's START segment spends before its chunk, besides the topic: string (3) + bool + u32. */
export const PYCAST_START_OVERHEAD = 8
export const PYCAST_HEARTBEAT_INTERVAL_MS = 3000
export const PYCAST_CONFIGURATION_INTERVAL_MS = 15_000

export const PycastType = {
  Update: 1,
  Retransmission: 2,
  Heartbeat: 3,
  Configuration: 4,
  RetransmissionRqst: 5,
  RetransmissionNak: 6
} as const
export type PycastType = (typeof PycastType)[keyof typeof PycastType]

export const PycastFlag = { Start: 1, More: 2, End: 4, Complete: 5 } as const

export interface PycastHeader {
  readonly type: PycastType
  readonly flags: number
  /** Dotted IPv4 address of the sending host. */
  readonly host: string
  readonly senderId: number
  /** Sender start time, unix seconds. */
  readonly startTime: number
  readonly appId: number
}

export type PycastUpdateBody =
  | { readonly kind: "updates"; readonly updates: ReadonlyArray<PackedUpdate> }
  | { readonly kind: "start"; readonly topic: string; readonly totalLength: number; readonly chunk: Uint8Array }
  | { readonly kind: "more" | "end"; readonly chunk: Uint8Array }

export interface PycastUpdate {
  readonly type: typeof PycastType.Update | typeof PycastType.Retransmission
  readonly header: PycastHeader
  readonly seq: number
  readonly body: PycastUpdateBody
}

export interface PycastHeartbeat {
  readonly type: typeof PycastType.Heartbeat
  readonly header: PycastHeader
  readonly group: string
  readonly port: number
  readonly senderId: number
  readonly lastSeq: number
}

export interface PycastConfiguration {
  readonly type: typeof PycastType.Configuration
  readonly header: PycastHeader
  readonly group: string
  readonly port: number
  readonly senderId: number
  readonly startTime: number
  readonly heartbeatIntervalMs: number
  readonly configurationIntervalMs: number
  readonly host: string
  readonly appId: number
  readonly application: string
}

/** A retransmission request; the header names the requester, the body the sender asked. */
export interface PycastRqst {
  readonly type: typeof PycastType.RetransmissionRqst
  readonly header: PycastHeader
  readonly requester: string
  readonly targetSenderId: number
  readonly targetStartTime: number
  readonly low: number
  readonly high: number
  readonly requesterHost: string
  readonly application: string
}

/** "Cannot supply": sent by a sender. pycast only ever sends it with no sequence numbers. */
export interface PycastNak {
  readonly type: typeof PycastType.RetransmissionNak
  readonly header: PycastHeader
  readonly group: string
  readonly port: number
  readonly senderId: number
  readonly seqs: ReadonlyArray<number>
}

export type PycastPacket = PycastUpdate | PycastHeartbeat | PycastConfiguration | PycastRqst | PycastNak

// ---------------------------------------------------------------------------------------------
// Field helpers
// ---------------------------------------------------------------------------------------------

/** pycast's application id: h = 1717; per UTF-8 byte b: h = (37·h + b)·3737, modulo 2^32. */
export const pycastAppId = (application: string): number => {
  let h = 1717
  for (const b of Buffer.from(application, "utf8")) h = Math.imul((Math.imul(37, h) + b) | 0, 3737)
  return h >>> 0
}

/** Dotted IPv4 → the u32 pycast writes (byte-reversed: a.b.c.d → d c b a). */
export const reversedIpv4 = (address: string): number => {
  const parts = address.split(".").map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new RangeError(`not a dotted IPv4 address: ${JSON.stringify(address)}`)
  }
  return ((parts[3] << 24) | (parts[2] << 16) | (parts[1] << 8) | parts[0]) >>> 0
}

/** The u32 pycast writes → dotted IPv4. */
export const ipv4FromReversed = (u: number): string =>
  `${u & 0xff}.${(u >>> 8) & 0xff}.${(u >>> 16) & 0xff}.${(u >>> 24) & 0xff}`

/** Characters of a string as Python counts them (code points). */
export const pythonLength = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
    n++
  }
  return n
}

/** Code points in UTF-8 bytes (bytes that are not continuation bytes). */
export const utf8CodePoints = (bytes: Uint8Array): number => {
  let n = 0
  for (let i = 0; i < bytes.length; i++) if ((bytes[i] & 0xc0) !== 0x80) n++
  return n
}

const u32 = (what: string, v: number): number => {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${what} must be a u32, got ${v}`)
  return v
}

/** Writes the 20-byte header into `b` at 0. */
export const writePycastHeader = (b: Uint8Array, h: PycastHeader): void => {
  writeU16(b, 0, 0x0100)
  b[2] = h.type
  b[3] = h.flags
  writeU32(b, 4, reversedIpv4(h.host))
  writeU32(b, 8, u32("senderId", h.senderId))
  writeU32(b, 12, u32("startTime", h.startTime))
  writeU32(b, 16, u32("appId", h.appId))
}

/** An encoded pycast string: present + u16 character count + UTF-8. */
export const encodePycastString = (s: string): Uint8Array => {
  const utf8 = Buffer.from(s, "utf8")
  const chars = pythonLength(s)
  if (chars > 0xffff) throw new RangeError(`a pycast string holds at most 65535 characters, got ${chars}`)
  const out = new Uint8Array(3 + utf8.length)
  out[0] = 1
  writeU16(out, 1, chars)
  out.set(utf8, 3)
  return out
}

/** A pycast string from a topic's UTF-8 bytes (the character count is counted from the bytes). */
export const pycastStringFromUtf8 = (utf8: Uint8Array): Uint8Array => {
  const chars = utf8CodePoints(utf8)
  if (chars > 0xffff) throw new RangeError(`a pycast string holds at most 65535 characters, got ${chars}`)
  const out = new Uint8Array(3 + utf8.length)
  out[0] = 1
  writeU16(out, 1, chars)
  out.set(utf8, 3)
  return out
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

class Fail {
  constructor(
    readonly reason: DecodeFailureReason,
    readonly detail: string
  ) {}
}

/** A cursor over one datagram; methods throw `Fail`, caught once in `decodePycast`. */
class Reader {
  o: number
  constructor(
    readonly b: Uint8Array,
    o: number
  ) {
    this.o = o
  }
  need(n: number, what: string): void {
    if (this.o + n > this.b.length) throw new Fail("Truncated", `${what} runs past the datagram`)
  }
  u8(what: string): number {
    this.need(1, what)
    return this.b[this.o++]
  }
  u32(what: string): number {
    this.need(4, what)
    const v = readU32(this.b, this.o)
    this.o += 4
    return v
  }
  /** i64 read as a safe integer (pycast's target start time). */
  i64(what: string): number {
    this.need(8, what)
    const hi = readU32(this.b, this.o)
    const lo = readU32(this.b, this.o + 4)
    this.o += 8
    if (hi > 0x1fffff) throw new Fail("InvalidField", `${what} ${hi}:${lo} is not a safe integer`)
    return hi * 4294967296 + lo
  }
  string(what: string): string {
    const present = this.u8(what)
    if (present === 0) return ""
    if (present !== 1) throw new Fail("InvalidField", `${what}: present byte ${present}`)
    this.need(2, what)
    const chars = readU16(this.b, this.o)
    this.o += 2
    // The length counts characters: walk that many UTF-8 sequences.
    const start = this.o
    let o = start
    const b = this.b
    for (let k = 0; k < chars; k++) {
      if (o >= b.length) throw new Fail("Truncated", `${what} runs past the datagram`)
      const c = b[o]
      o += c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2
    }
    if (o > b.length) throw new Fail("Truncated", `${what} runs past the datagram`)
    this.o = o
    try {
      return utf8Decoder.decode(b.subarray(start, o))
    } catch {
      throw new Fail("InvalidField", `${what} is not valid UTF-8`)
    }
  }
  bytes(what: string): Uint8Array {
    const present = this.u8(what)
    if (present === 0) return new Uint8Array(0)
    if (present !== 1) throw new Fail("InvalidField", `${what}: present byte ${present}`)
    const n = this.u32(what)
    this.need(n, what)
    const v = this.b.subarray(this.o, this.o + n)
    this.o += n
    return v
  }
  rest(): Uint8Array {
    const v = this.b.subarray(this.o)
    this.o = this.b.length
    return v
  }
  end(): void {
    if (this.o !== this.b.length) throw new Fail("TrailingBytes", `${this.b.length - this.o} bytes after the packet`)
  }
}

const decodeUpdate = (type: 1 | 2, header: PycastHeader, r: Reader): PycastUpdate => {
  const seq = r.u32("sequence number")
  if (seq === 0) throw new Fail("InvalidField", "sequence number 0")
  const count = r.u32("update count")
  let body: PycastUpdateBody
  switch (header.flags) {
    case PycastFlag.Complete: {
      if (count === 0) throw new Fail("InvalidField", "an update segment with no updates")
      const updates: Array<PackedUpdate> = []
      for (let i = 0; i < count; i++) {
        const topic = r.string("subject")
        const payload = r.bytes("update data")
        updates.push(decodedUpdate(topic, payload))
      }
      r.end()
      body = { kind: "updates", updates }
      break
    }
    case PycastFlag.Start: {
      if (count !== 1) throw new Fail("InvalidField", `a large update's first segment with count ${count}`)
      const topic = r.string("subject")
      if (r.u8("large data present") !== 1) throw new Fail("InvalidField", "large data not present")
      const totalLength = r.u32("large data size")
      const chunk = r.rest()
      if (chunk.length > totalLength) throw new Fail("InvalidField", `chunk ${chunk.length} > total ${totalLength}`)
      body = { kind: "start", topic, totalLength, chunk }
      break
    }
    case PycastFlag.More:
    case PycastFlag.End: {
      if (count !== 1) throw new Fail("InvalidField", `a large update's segment with count ${count}`)
      const chunk = r.rest()
      if (chunk.length === 0) throw new Fail("InvalidField", "an empty large-update chunk")
      body = { kind: header.flags === PycastFlag.More ? "more" : "end", chunk }
      break
    }
    default:
      throw new Fail("InvalidField", `update flags ${header.flags}`)
  }
  return { type, header, seq, body }
}

/** mc address, mc port, sender id: how HEARTBEAT, CONFIGURATION and NAK bodies begin. */
const readGroupFields = (r: Reader) => ({
  group: ipv4FromReversed(r.u32("mc address")),
  port: r.u32("mc port"),
  senderId: r.u32("sender id")
})

const decodeBody = (header: PycastHeader, r: Reader): PycastPacket => {
  switch (header.type) {
    case PycastType.Update:
    case PycastType.Retransmission:
      return decodeUpdate(header.type, header, r)
    case PycastType.Heartbeat: {
      const g = readGroupFields(r)
      const lastSeq = r.u32("last sequence number")
      r.end()
      return { type: PycastType.Heartbeat, header, ...g, lastSeq }
    }
    case PycastType.Configuration: {
      const g = readGroupFields(r)
      const startTime = r.u32("start time")
      const heartbeatIntervalMs = r.u32("heartbeat interval")
      const configurationIntervalMs = r.u32("configuration interval")
      const host = ipv4FromReversed(r.u32("host address"))
      const appId = r.u32("app id")
      const application = r.string("application name")
      r.end()
      return {
        type: PycastType.Configuration,
        header,
        ...g,
        startTime,
        heartbeatIntervalMs,
        configurationIntervalMs,
        host,
        appId,
        application
      }
    }
    case PycastType.RetransmissionRqst: {
      const requester = ipv4FromReversed(r.u32("requester address"))
      const targetSenderId = r.u32("target sender id")
      const targetStartTime = r.i64("target start time")
      const low = r.u32("low sequence number")
      const high = r.u32("high sequence number")
      if (low === 0 || low > high) throw new Fail("InvalidField", `request range ${low}..${high}`)
      const requesterHost = r.string("requester host")
      const application = r.string("application name")
      r.end()
      return {
        type: PycastType.RetransmissionRqst,
        header,
        requester,
        targetSenderId,
        targetStartTime,
        low,
        high,
        requesterHost,
        application
      }
    }
    case PycastType.RetransmissionNak: {
      const g = readGroupFields(r)
      const count = r.u32("NAK count")
      r.need(count * 4, "NAK sequence numbers")
      const seqs: Array<number> = []
      for (let i = 0; i < count; i++) seqs.push(r.u32("NAK sequence number"))
      r.end()
      return { type: PycastType.RetransmissionNak, header, ...g, seqs }
    }
  }
}

export const decodePycast = (bytes: Uint8Array): PycastPacket | DecodeFailure => {
  if (bytes.length < PYCAST_HEADER_SIZE) {
    return { _tag: "DecodeFailure", reason: "TooShort", detail: `${bytes.length} bytes, a header is 20` }
  }
  if (bytes[0] !== 1) {
    return { _tag: "DecodeFailure", reason: "UnsupportedVersion", detail: `major version ${bytes[0]}` }
  }
  const type = bytes[2]
  if (type < 1 || type > 6) return { _tag: "DecodeFailure", reason: "UnknownKind", detail: `type ${type}` }
  const header: PycastHeader = {
    type: type as PycastType,
    flags: bytes[3],
    host: ipv4FromReversed(readU32(bytes, 4)),
    senderId: readU32(bytes, 8),
    startTime: readU32(bytes, 12),
    appId: readU32(bytes, 16)
  }
  try {
    return decodeBody(header, new Reader(bytes, PYCAST_HEADER_SIZE))
  } catch (e) {
    if (e instanceof Fail) return { _tag: "DecodeFailure", reason: e.reason, detail: e.detail }
    throw e
  }
}

export const isPycastFailure = (p: PycastPacket | DecodeFailure): p is DecodeFailure =>
  (p as DecodeFailure)._tag === "DecodeFailure"

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/** Appends big-endian fields to a growing list of parts; `finish` concatenates them. */
class Builder {
  private readonly parts: Array<Uint8Array> = []
  private length = 0
  push(part: Uint8Array): this {
    this.parts.push(part)
    this.length += part.length
    return this
  }
  u8(v: number): this {
    return this.push(Uint8Array.of(v))
  }
  u32(what: string, v: number): this {
    const b = new Uint8Array(4)
    writeU32(b, 0, u32(what, v))
    return this.push(b)
  }
  i64(v: number): this {
    const b = new Uint8Array(8)
    writeU32(b, 0, Math.floor(v / 4294967296))
    writeU32(b, 4, v >>> 0)
    return this.push(b)
  }
  string(s: string): this {
    return this.push(encodePycastString(s))
  }
  /** mc address, mc port, sender id (see `readGroupFields`). */
  groupFields(p: { readonly group: string; readonly port: number; readonly senderId: number }): this {
    return this.u32("mc address", reversedIpv4(p.group)).u32("mc port", p.port).u32("sender id", p.senderId)
  }
  bytes(data: Uint8Array): this {
    return this.u8(1).u32("data length", data.length).push(data)
  }
  finish(): Uint8Array {
    const out = Buffer.allocUnsafe(this.length)
    let o = 0
    for (const p of this.parts) {
      out.set(p, o)
      o += p.length
    }
    return out
  }
}

const headerBytes = (h: PycastHeader): Uint8Array => {
  const b = new Uint8Array(PYCAST_HEADER_SIZE)
  writePycastHeader(b, h)
  return b
}

/** Encodes any pycast packet (tests, tools; the engine's senders use the faster writers in pycastDialect.ts). */
export const encodePycast = (p: PycastPacket): Uint8Array => {
  const w = new Builder().push(headerBytes(p.header))
  switch (p.type) {
    case PycastType.Update:
    case PycastType.Retransmission: {
      w.u32("sequence number", p.seq)
      const body = p.body
      switch (body.kind) {
        case "updates":
          w.u32("update count", body.updates.length)
          for (const u of body.updates) w.string(u.topic).bytes(u.payload)
          break
        case "start":
          w.u32("update count", 1).string(body.topic).u8(1).u32("large data size", body.totalLength).push(body.chunk)
          break
        default:
          w.u32("update count", 1).push(body.chunk)
      }
      break
    }
    case PycastType.Heartbeat:
      w.groupFields(p).u32("last sequence number", p.lastSeq)
      break
    case PycastType.Configuration:
      w.groupFields(p)
        .u32("start time", p.startTime)
        .u32("heartbeat interval", p.heartbeatIntervalMs)
        .u32("configuration interval", p.configurationIntervalMs)
        .u32("host address", reversedIpv4(p.host))
        .u32("app id", p.appId)
        .string(p.application)
      break
    case PycastType.RetransmissionRqst:
      w.u32("requester address", reversedIpv4(p.requester))
        .u32("target sender id", p.targetSenderId)
        .i64(p.targetStartTime)
        .u32("low", p.low)
        .u32("high", p.high)
        .string(p.requesterHost)
        .string(p.application)
      break
    case PycastType.RetransmissionNak:
      w.groupFields(p).u32("NAK count", p.seqs.length)
      for (const s of p.seqs) w.u32("NAK sequence number", s)
      break
  }
  return w.finish()
}
