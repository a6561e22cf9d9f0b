/**
 * The pycast dialect (docs/PROTOCOL.md "pycast dialect"): pycast's packets (`pycast.ts`) translated
 * to and from the engine's packet model, so the engine's sequencing, gap detection, NAK back-off
 * and retries, cache, reorder and reassembly serve pycast peers unchanged.
 *
 * | pycast                                   | engine model                                        |
 * | ---------------------------------------- | --------------------------------------------------- |
 * | (host address, sender id, start time)    | session (`pycastSessionId`)                         |
 * | UPDATE / RETRANSMISSION, flags 5         | Data, packed updates (retransmission flag: type 2)  |
 * | START / MORE / END segments              | First / Middle / Last fragments                     |
 * | START holding the whole update (bug)     | Data with one complete update                       |
 * | HEARTBEAT (last seqno)                   | Heartbeat(highestSeq, oldest cached unknown)        |
 * | CONFIGURATION                            | the application's name (learnt); the announce       |
 * | RETRANSMISSION_RQST [low, high]          | Nak(target, [low, high]), one request per range     |
 * | RETRANSMISSION_NAK with seqnos           | Lost (pycast only sends empty ones: ignored)        |
 *
 * Not expressible, so not sent: Goodbye, Lost, Status (no flow control, no presence), the fresh
 * mark. Decoded payloads are views into the datagram, as with the native codec.
 */
import type { ControlCodec, Dialect, SegmentWriter, SessionCodec } from "./dialect.js"
import type { EngineConfig } from "./engine.js"
import { type DecodeFailure, Fragment, type Packet, PacketKind, type SeqRange, type Source } from "./packets.js"
import {
  decodePycast,
  encodePycastString,
  isPycastFailure,
  PYCAST_CONFIGURATION_INTERVAL_MS,
  PYCAST_HEADER_SIZE,
  PYCAST_START_OVERHEAD,
  PYCAST_UPDATE_FIT_OVERHEAD,
  PYCAST_UPDATE_HEADER_SIZE,
  PycastFlag,
  type PycastHeader,
  PycastType,
  pycastAppId,
  reversedIpv4,
  utf8CodePoints,
  writePycastHeader
} from "./pycast.js"
import { writeU32 } from "./wire.js"

/** What the pycast dialect needs beyond the engine config: the group and this host's IPv4 address. */
export interface PycastEngineConfig {
  readonly group: string
  readonly port: number
  /** IPv4 address carried as the host address of every packet (pycast identifies senders by it). */
  readonly hostAddress: string
}

/**
 * The session id of a pycast sender: (start time XOR host address) · 2^32 + sender id. The host
 * takes part because pycast's sender ids are TCP ports counted from 61234, so two hosts started in
 * the same second commonly share (sender id, start time).
 */
export const pycastSessionId = (host: string, startTime: number, senderId: number): bigint =>
  (BigInt((startTime ^ reversedIpv4(host)) >>> 0) << 32n) | BigInt(senderId >>> 0)

interface Pair {
  readonly senderId: number
  readonly startTime: number
}
const pairKey = (startTime: number, senderId: number): string => `${startTime}/${senderId}`

const SOURCE_CACHE_MAX = 4096
const APP_NAMES_MAX = 1024

const checkSeq = (seq: number): void => {
  if (!Number.isInteger(seq) || seq < 1 || seq > 0xffffffff) {
    throw new RangeError(`pycast sequence numbers are u32 ≥ 1, got ${seq}`)
  }
}

/** Packed UPDATE segments in pycast's layout, filled by pycast's own fit rule. */
class PycastSegmentWriter implements SegmentWriter {
  private readonly scratch: Buffer
  private count = 0
  private _size = 0
  private open = false

  constructor(
    header: Uint8Array,
    private readonly segmentSize: number
  ) {
    this.scratch = Buffer.allocUnsafeSlow(segmentSize)
    this.scratch.set(header, 0)
    this.scratch[2] = PycastType.Update
    this.scratch[3] = PycastFlag.Complete
  }

  get isOpen(): boolean {
    return this.open
  }
  get size(): number {
    return this._size
  }

  begin(seq: number): void {
    checkSeq(seq)
    writeU32(this.scratch, PYCAST_HEADER_SIZE, seq)
    this._size = PYCAST_UPDATE_HEADER_SIZE
    this.count = 0
    this.open = true
  }

  tryAppend(topicBytes: Uint8Array, payload: Uint8Array): boolean {
    const t = topicBytes.length
    const p = payload.length
    // pycast's rule (subject + 10 + data ≤ remaining), counted in bytes: never more than pycast packs.
    if (this._size + t + PYCAST_UPDATE_FIT_OVERHEAD + p > this.segmentSize) return false
    const b = this.scratch
    let o = this._size
    const chars = utf8CodePoints(topicBytes)
    b[o] = 1
    b[o + 1] = chars >>> 8
    b[o + 2] = chars
    b.set(topicBytes, o + 3)
    o += 3 + t
    b[o] = 1
    writeU32(b, o + 1, p)
    b.set(payload, o + 5)
    this._size = o + 5 + p
    this.count++
    return true
  }

  finish(): Uint8Array {
    if (!this.open || this.count === 0) throw new RangeError("PycastSegmentWriter.finish: no update written")
    writeU32(this.scratch, PYCAST_HEADER_SIZE + 4, this.count)
    const out = Buffer.allocUnsafe(this._size)
    this.scratch.copy(out, 0, 0, this._size)
    this.open = false
    this.count = 0
    this._size = 0
    return out
  }
}

/**
 * A session that started at least this long after the endpoint opened (by its start time, whole
 * seconds) began while the endpoint was listening.
 */
const FRESH_START_MARGIN_MS = 2000

/**
 * The pycast dialect of one endpoint. `wallClock(now)` is the wall clock (ms since the epoch) at the
 * engine time `now`, `openedAt` the wall clock when the endpoint opened: pycast has no fresh mark,
 * so a session is taken as fresh (its receivers synchronise at sequence 1 and repair its head, docs/
 * PROTOCOL.md "Fresh sessions") when its start time is at least 2 s after the endpoint opened and
 * less than `senderTimeoutMs` ago. Across hosts this relies on their clocks agreeing within ~1 s.
 */
export const pycastDialect = (
  config: EngineConfig,
  pycast: PycastEngineConfig,
  wallClock: (now: number) => number = (now) => now,
  openedAt = Number.POSITIVE_INFINITY
): Dialect => {
  const appId = pycastAppId(config.application)
  const hostAddress = pycast.hostAddress
  const reversedHost = reversedIpv4(hostAddress)
  const reversedGroup = reversedIpv4(pycast.group)
  // Application names by id: ours is known; the others are learnt from CONFIGURATION packets.
  const appNames = new Map<number, string>([[appId, config.application]])
  const sources = new Map<string, Source>()
  // A retransmission request names its target by (sender id, start time) only: our own sessions
  // first (pycast answers whatever it is asked, so do we), then the remote ones we know.
  const localByPair = new Map<string, bigint>()
  const remoteByPair = new Map<string, bigint>()
  const remotePairs = new Map<bigint, Pair>()

  /** (sender id, start time) of a session: a remote one we heard, else one of ours. */
  const pairOf = (id: bigint): Pair =>
    remotePairs.get(id) ?? {
      senderId: Number(id & 0xffffffffn),
      startTime: (Number(id >> 32n) ^ reversedHost) >>> 0
    }

  const headerFor = (id: bigint, type: number, flags: number): Uint8Array => {
    const { senderId, startTime } = pairOf(id)
    const h: PycastHeader = { type: type as PycastHeader["type"], flags, host: hostAddress, senderId, startTime, appId }
    const b = new Uint8Array(PYCAST_HEADER_SIZE)
    writePycastHeader(b, h)
    return b
  }

  const sourceOf = (h: PycastHeader): Source => {
    const key = `${h.host}/${h.senderId}/${h.startTime}`
    let s = sources.get(key)
    if (s === undefined) {
      if (sources.size >= SOURCE_CACHE_MAX) {
        sources.clear()
        remoteByPair.clear()
        remotePairs.clear()
      }
      const sessionId = pycastSessionId(h.host, h.startTime, h.senderId)
      remoteByPair.set(pairKey(h.startTime, h.senderId), sessionId)
      remotePairs.set(sessionId, { senderId: h.senderId, startTime: h.startTime })
      s = {
        sessionId,
        // pycast picks the first free port from 61234 as its sender id, so a restarted process
        // gets the same one: (host, application, sender id) recognises the restart.
        senderIndex: h.senderId & 0xffff,
        host: h.host,
        application: appNames.get(h.appId) ?? `pycast-app-${h.appId.toString(16).padStart(8, "0")}`
      }
      sources.set(key, s)
    }
    return s
  }

  const isFresh = (startTime: number, now: number): boolean => {
    const started = startTime * 1000
    return started >= openedAt + FRESH_START_MARGIN_MS && wallClock(now) - started < config.senderTimeoutMs
  }

  const decode = (bytes: Uint8Array, now: number): Packet | DecodeFailure | undefined => {
    const p = decodePycast(bytes)
    if (isPycastFailure(p)) return p
    switch (p.type) {
      case PycastType.Update:
      case PycastType.Retransmission: {
        const source = sourceOf(p.header)
        const fresh = isFresh(p.header.startTime, now)
        const retransmission = p.type === PycastType.Retransmission
        const b = p.body
        switch (b.kind) {
          case "updates":
            return {
              kind: PacketKind.Data,
              source,
              retransmission,
              fresh,
              seq: p.seq,
              body: { fragment: Fragment.None, updates: b.updates }
            }
          case "start":
            // pycast's sender puts an update that just fits into one START segment and never
            // sends the rest (its receivers never complete it): the update is whole, deliver it.
            return b.chunk.length === b.totalLength
              ? {
                  kind: PacketKind.Data,
                  source,
                  retransmission,
                  fresh,
                  seq: p.seq,
                  body: { fragment: Fragment.None, updates: [{ topic: b.topic, payload: b.chunk }] }
                }
              : {
                  kind: PacketKind.Data,
                  source,
                  retransmission,
                  fresh,
                  seq: p.seq,
                  body: { fragment: Fragment.First, topic: b.topic, totalLength: b.totalLength, chunk: b.chunk }
                }
          default:
            return {
              kind: PacketKind.Data,
              source,
              retransmission,
              fresh,
              seq: p.seq,
              body: { fragment: b.kind === "more" ? Fragment.Middle : Fragment.Last, chunk: b.chunk }
            }
        }
      }
      case PycastType.Heartbeat:
        // pycast does not say what its cache still holds: -1 = unknown.
        return {
          kind: PacketKind.Heartbeat,
          source: sourceOf(p.header),
          highestSeq: p.lastSeq,
          oldestCached: -1,
          fresh: isFresh(p.header.startTime, now)
        }
      case PycastType.Configuration:
        if (!appNames.has(p.appId) && appNames.size < APP_NAMES_MAX) {
          appNames.set(p.appId, p.application)
          sources.clear()
        }
        return undefined
      case PycastType.RetransmissionRqst:
        return {
          kind: PacketKind.Nak,
          source: sourceOf(p.header),
          target:
            localByPair.get(pairKey(p.targetStartTime, p.targetSenderId)) ??
            remoteByPair.get(pairKey(p.targetStartTime, p.targetSenderId)) ??
            pycastSessionId(hostAddress, p.targetStartTime, p.targetSenderId),
          ranges: [{ first: p.low, last: p.high }]
        }
      case PycastType.RetransmissionNak: {
        if (p.seqs.length === 0) return undefined
        const seqs = p.seqs.filter((s) => s > 0).sort((a, b) => a - b)
        const ranges: Array<SeqRange> = []
        for (const s of seqs) {
          const last = ranges[ranges.length - 1]
          if (last !== undefined && s <= last.last + 1) ranges[ranges.length - 1] = { first: last.first, last: s }
          else ranges.push({ first: s, last: s })
        }
        if (ranges.length === 0) return undefined
        return { kind: PacketKind.Lost, source: sourceOf(p.header), ranges }
      }
    }
  }

  const session = (source: Source, segmentSize: number): SessionCodec => {
    const id = source.sessionId
    const { senderId, startTime } = pairOf(id)
    localByPair.set(pairKey(startTime, senderId), id)
    const dataHeader = headerFor(id, PycastType.Update, PycastFlag.Complete)
    const fragment = (
      seq: number,
      kind: 1 | 2 | 3,
      chunk: Uint8Array,
      topicBytes?: Uint8Array,
      total?: number
    ): Uint8Array => {
      checkSeq(seq)
      const head = kind === 1 ? 3 + (topicBytes?.length ?? 0) + 5 : 0
      const out = Buffer.allocUnsafe(PYCAST_UPDATE_HEADER_SIZE + head + chunk.length)
      out.set(dataHeader, 0)
      out[3] = kind === 1 ? PycastFlag.Start : kind === 2 ? PycastFlag.More : PycastFlag.End
      writeU32(out, PYCAST_HEADER_SIZE, seq)
      writeU32(out, PYCAST_HEADER_SIZE + 4, 1)
      let o = PYCAST_UPDATE_HEADER_SIZE
      if (kind === 1) {
        if (topicBytes === undefined || total === undefined || total <= chunk.length || total > 0xffffffff) {
          throw new RangeError("a START segment needs its topic and a total longer than its chunk")
        }
        const chars = utf8CodePoints(topicBytes)
        out[o] = 1
        out[o + 1] = chars >>> 8
        out[o + 2] = chars
        out.set(topicBytes, o + 3)
        o += 3 + topicBytes.length
        out[o] = 1
        writeU32(out, o + 1, total)
        o += 5
      }
      out.set(chunk, o)
      return out
    }
    const configuration = (): Uint8Array => {
      const name = encodePycastString(config.application)
      const out = Buffer.allocUnsafe(PYCAST_HEADER_SIZE + 32 + name.length)
      out.set(headerFor(id, PycastType.Configuration, PycastFlag.Complete), 0)
      const o = PYCAST_HEADER_SIZE
      writeU32(out, o, reversedGroup)
      writeU32(out, o + 4, pycast.port)
      writeU32(out, o + 8, senderId)
      writeU32(out, o + 12, startTime)
      writeU32(out, o + 16, config.heartbeatIntervalMs)
      writeU32(out, o + 20, PYCAST_CONFIGURATION_INTERVAL_MS)
      writeU32(out, o + 24, reversedHost)
      writeU32(out, o + 28, appId)
      out.set(name, o + 32)
      return out
    }
    const heartbeatHeader = headerFor(id, PycastType.Heartbeat, PycastFlag.Complete)
    return {
      writer: new PycastSegmentWriter(dataHeader, segmentSize),
      updateOverhead: PYCAST_UPDATE_FIT_OVERHEAD,
      fragmentCapacity: (topicBytes) => ({
        first: Math.max(0, segmentSize - PYCAST_UPDATE_HEADER_SIZE - PYCAST_START_OVERHEAD - topicBytes.length),
        rest: segmentSize - PYCAST_UPDATE_HEADER_SIZE
      }),
      fragment,
      heartbeat: (highestSeq) => {
        const out = Buffer.allocUnsafe(PYCAST_HEADER_SIZE + 16)
        out.set(heartbeatHeader, 0)
        writeU32(out, PYCAST_HEADER_SIZE, reversedGroup)
        writeU32(out, PYCAST_HEADER_SIZE + 4, pycast.port)
        writeU32(out, PYCAST_HEADER_SIZE + 8, senderId)
        writeU32(out, PYCAST_HEADER_SIZE + 12, highestSeq)
        return out
      },
      // pycast sends its configuration twice, at start and every 15 s; receivers that joined
      // after the start accept nothing from a sender before they hear it.
      announce: () => {
        const c = configuration()
        return [c, c]
      },
      reannounceMs: PYCAST_CONFIGURATION_INTERVAL_MS,
      goodbye: () => undefined,
      lost: () => undefined,
      retransmission: (datagram) => {
        const out = Buffer.allocUnsafe(datagram.length)
        out.set(datagram, 0)
        out[2] = PycastType.Retransmission
        return out
      },
      markFresh: (datagram) => datagram
    }
  }

  const control = (source: Source): ControlCodec => {
    const header = headerFor(source.sessionId, PycastType.RetransmissionRqst, PycastFlag.Complete)
    const tail = Buffer.concat([encodePycastString(hostAddress), encodePycastString(config.application)])
    return {
      // One request per range: pycast's RQST carries a single [low, high].
      maxNakRanges: 64,
      nak: (target, ranges) =>
        ranges.map(({ first, last }) => {
          checkSeq(first)
          checkSeq(last)
          const pair = pairOf(target)
          const out = Buffer.allocUnsafe(PYCAST_HEADER_SIZE + 24 + tail.length)
          out.set(header, 0)
          const o = PYCAST_HEADER_SIZE
          writeU32(out, o, reversedHost)
          writeU32(out, o + 4, pair.senderId)
          writeU32(out, o + 8, 0)
          writeU32(out, o + 12, pair.startTime)
          writeU32(out, o + 16, first)
          writeU32(out, o + 20, last)
          out.set(tail, o + 24)
          return out
        })
    }
  }

  return {
    name: "pycast",
    status: false,
    decode,
    // pycast numbers a sender by a u32 id (it uses a free TCP port) and its start second.
    sessionId: (random, wallClockMs) =>
      pycastSessionId(
        hostAddress,
        Math.max(0, Math.floor(wallClockMs / 1000)) >>> 0,
        1 + Math.floor(random() * 0x7ffffffe)
      ),
    session,
    control
  }
}
