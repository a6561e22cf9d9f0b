/**
 * The wire codec (src/internal/protocol/wire.ts): round trips of every packet kind, the packed
 * segment writer, every decode failure reason, encoder contract checks, and a seeded fuzz of
 * random and mutated datagrams.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import {
  type DecodeFailureReason,
  FLAG_FRESH,
  FLAG_RETRANSMISSION,
  Fragment,
  MAGIC,
  type PackedUpdate,
  type Packet,
  PacketKind,
  retainPacket,
  type SeqRange,
  type Source
} from "../src/internal/protocol/packets.js"
import {
  asRetransmission,
  clearDecodeCaches,
  dataHeaderSize,
  decode,
  decodeTransient,
  encodeAnnounce,
  encodeFragment,
  encodeGoodbye,
  encodeHeartbeat,
  encodeLost,
  encodeNak,
  encodePacket,
  encodeReceiverName,
  encodeStatus,
  FIXED_HEADER_SIZE,
  fragmentCapacity,
  isDecodeFailure,
  MAX_NAME_BYTES,
  MAX_UPDATE_BYTES,
  makeSourcePrefix,
  markFresh,
  maxRangesPerPacket,
  PACKED_UPDATE_OVERHEAD,
  PackedSegmentWriter,
  packedHeaderSize,
  type SourcePrefix,
  topicBytes
} from "../src/internal/protocol/wire.js"

const MAX = Number.MAX_SAFE_INTEGER
const SEED = 0x5eed_1e55
const utf8Length = (s: string) => Buffer.byteLength(s, "utf8")

// ---- helpers ----------------------------------------------------------------------------------

/**
 * Packets with byte arrays replaced by hex, so Buffer/Uint8Array views compare by content. A
 * decoded update also holds the `source` and `sequence` the receiver fills in on delivery
 * (packets.ts `decodedUpdate`); what the wire carries of it is its topic and payload.
 */
const plain = (u: unknown): unknown => {
  if (u instanceof Uint8Array) return `bytes:${Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString("hex")}`
  if (Array.isArray(u)) return u.map(plain)
  if (u !== null && typeof u === "object" && "topic" in u && "payload" in u && "sequence" in u) {
    return { topic: u.topic, payload: plain(u.payload) }
  }
  if (u !== null && typeof u === "object") {
    return Object.fromEntries(Object.entries(u).map(([k, v]) => [k, plain(v)]))
  }
  return u
}

const decodeOk = (bytes: Uint8Array): Packet => {
  const p = decode(bytes)
  if (isDecodeFailure(p)) throw new Error(`unexpected ${p.reason}: ${p.detail}`)
  return p
}

const expectFailure = (bytes: Uint8Array, reason: DecodeFailureReason) => {
  const p = decode(bytes)
  expect(isDecodeFailure(p) ? `${p.reason}` : `packet kind ${p.kind}`).toBe(reason)
}

/** Checks `bytes` decodes to `expected` and re-encodes to exactly `bytes` (canonical encoding). */
const roundTrip = (bytes: Uint8Array, expected: Packet) => {
  const p = decodeOk(bytes)
  expect(plain(p)).toEqual(plain(expected))
  expect(Buffer.compare(encodePacket(p), bytes)).toBe(0)
  return p
}

const source0: Source = { sessionId: 0x0123456789abcdefn, senderIndex: 7, host: "host-ä.example", application: "app" }
const prefix0 = makeSourcePrefix(source0)

// ---- arbitraries ------------------------------------------------------------------------------

const nameArb = fc
  .oneof(fc.string({ unit: "binary", maxLength: 60 }), fc.string({ unit: "grapheme-ascii", maxLength: 255 }))
  .filter((s) => utf8Length(s) <= MAX_NAME_BYTES)
const sourceArb: fc.Arbitrary<Source> = fc.record({
  sessionId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  senderIndex: fc.integer({ min: 0, max: 0xffff }),
  host: nameArb,
  application: nameArb
})
const seqArb = fc.oneof(fc.constantFrom(1, 2, 2 ** 32 - 1, 2 ** 32, MAX), fc.integer({ min: 1, max: MAX }))
const seqOrZeroArb = fc.oneof(fc.constant(0), seqArb)
const rangeArb: fc.Arbitrary<SeqRange> = fc
  .tuple(seqArb, seqArb)
  .map(([a, b]) => (a <= b ? { first: a, last: b } : { first: b, last: a }))
const rangesArb = fc.array(rangeArb, { minLength: 1, maxLength: 40 })
// Topic syntax is not the codec's business: any well-formed string, including empty, round-trips.
const topicArb = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("/prices/eq/ABC", "/a", "/ü/日本/🚀"),
  fc.string({ unit: "grapheme-ascii", minLength: 129, maxLength: 300 })
)
const payloadArb = fc.oneof(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ minLength: 1000, maxLength: 3000 }))
const updatesArb: fc.Arbitrary<Array<PackedUpdate>> = fc.array(fc.record({ topic: topicArb, payload: payloadArb }), {
  minLength: 1,
  maxLength: 30
})

const packedSize = (prefix: SourcePrefix, updates: ReadonlyArray<PackedUpdate>) =>
  updates.reduce(
    (n, u) => n + PACKED_UPDATE_OVERHEAD + topicBytes(u.topic).length + u.payload.length,
    packedHeaderSize(prefix)
  )

const encodePackedExact = (prefix: SourcePrefix, seq: number, updates: ReadonlyArray<PackedUpdate>) => {
  const w = new PackedSegmentWriter(prefix, packedSize(prefix, updates))
  w.begin(seq)
  for (const u of updates) expect(w.tryAppend(topicBytes(u.topic), u.payload)).toBe(true)
  return w.finish()
}

const run = (property: fc.IRawProperty<any>, numRuns = 200) => fc.assert(property, { seed: SEED, numRuns })

// ---- round trips ------------------------------------------------------------------------------

describe("wire round trips", () => {
  it("common header layout is as documented", () => {
    const b = prefix0.bytes
    expect(b.length).toBe(FIXED_HEADER_SIZE + utf8Length(source0.host) + utf8Length(source0.application))
    expect(Buffer.from(b).toString("hex")).toBe(
      "4544" + // magic
        "02" + // version
        "00" + // kind (patched per packet)
        "00" + // flags
        "0123456789abcdef" + // session id
        "0007" + // sender index
        "0f" + // host length (15 bytes: "ä" is two)
        Buffer.from("host-ä.example").toString("hex") +
        "03" + // application length
        Buffer.from("app").toString("hex")
    )
    const hb = encodeHeartbeat(prefix0, 9, 3)
    expect(hb[3]).toBe(PacketKind.Heartbeat)
    expect(Buffer.from(hb.subarray(b.length)).toString("hex")).toBe("0000000000000009" + "0000000000000003")
    expect(dataHeaderSize(prefix0)).toBe(b.length + 9)
  })

  it("packed data segments", () =>
    run(
      fc.property(sourceArb, seqArb, updatesArb, (source, seq, updates) => {
        const datagram = encodePackedExact(makeSourcePrefix(source), seq, updates)
        const p = roundTrip(datagram, {
          kind: PacketKind.Data,
          source,
          retransmission: false,
          fresh: false,
          seq,
          body: { fragment: Fragment.None, updates }
        })
        // Payloads are views into the datagram, not copies.
        if (p.kind === PacketKind.Data && p.body.fragment === Fragment.None) {
          for (const u of p.body.updates) expect(u.payload.buffer).toBe(datagram.buffer)
        }
      })
    ))

  it("fragments of every kind", () =>
    run(
      fc.property(
        sourceArb,
        seqArb,
        topicArb,
        fc.uint8Array({ minLength: 1, maxLength: 2000 }),
        fc.integer({ min: 1, max: MAX_UPDATE_BYTES }),
        fc.constantFrom(1, 2, 3),
        (source, seq, topic, chunk, extra, fragment) => {
          const prefix = makeSourcePrefix(source)
          if (fragment === 1) {
            const totalLength = Math.min(MAX_UPDATE_BYTES, chunk.length + extra)
            const d = encodeFragment(prefix, seq, 1, chunk, topicBytes(topic), totalLength)
            roundTrip(d, {
              kind: PacketKind.Data,
              source,
              retransmission: false,
              fresh: false,
              seq,
              body: { fragment: 1, topic, totalLength, chunk }
            })
          } else {
            const d = encodeFragment(prefix, seq, fragment, chunk)
            const p = roundTrip(d, {
              kind: PacketKind.Data,
              source,
              retransmission: false,
              fresh: false,
              seq,
              body: { fragment, chunk }
            })
            if (p.kind === PacketKind.Data && p.body.fragment !== Fragment.None) {
              expect(p.body.chunk.buffer).toBe(d.buffer)
            }
          }
        }
      )
    ))

  it("decodeTransient answers as decode; its Middle/Last object is reused, a retainPacket copy is not", () =>
    run(
      fc.property(
        sourceArb,
        fc.array(fc.tuple(seqArb, fc.constantFrom(1, 2, 3), fc.uint8Array({ minLength: 1, maxLength: 64 })), {
          minLength: 2,
          maxLength: 6
        }),
        (source, fragments) => {
          const prefix = makeSourcePrefix(source)
          const datagrams = fragments.map(([seq, fragment, chunk]) =>
            fragment === 1
              ? encodeFragment(prefix, seq, 1, chunk, topicBytes("/t"), chunk.length + 1)
              : encodeFragment(prefix, seq, fragment, chunk)
          )
          const kept: Array<Packet> = []
          for (const d of datagrams) {
            const p = decodeTransient(d)
            expect(p).toEqual(decode(d))
            if (!isDecodeFailure(p) && p.kind === PacketKind.Data) kept.push(retainPacket(p))
          }
          // Every copy still describes its own datagram after the later decodes reused the object.
          expect(kept).toEqual(datagrams.map((d) => decode(d)))
        }
      )
    ))

  it("retransmissions", () =>
    run(
      fc.property(sourceArb, seqArb, updatesArb, (source, seq, updates) => {
        const original = encodePackedExact(makeSourcePrefix(source), seq, updates)
        const copy = asRetransmission(original)
        expect(copy).not.toBe(original)
        expect(original[4]).toBe(0)
        expect(copy[4]).toBe(FLAG_RETRANSMISSION)
        roundTrip(copy, {
          kind: PacketKind.Data,
          source,
          retransmission: true,
          fresh: false,
          seq,
          body: { fragment: Fragment.None, updates }
        })
      }),
      50
    ))

  it("heartbeat, announce, goodbye", () =>
    run(
      fc.property(sourceArb, seqOrZeroArb, seqOrZeroArb, seqOrZeroArb, (source, a, b, startedAt) => {
        const prefix = makeSourcePrefix(source)
        const highestSeq = Math.max(a, b)
        const oldestCached = Math.min(a, b)
        roundTrip(encodeHeartbeat(prefix, highestSeq, oldestCached), {
          kind: PacketKind.Heartbeat,
          source,
          highestSeq,
          oldestCached,
          fresh: false
        })
        roundTrip(encodeAnnounce(prefix, a, startedAt), {
          kind: PacketKind.Announce,
          source,
          highestSeq: a,
          startedAt,
          fresh: false
        })
        roundTrip(encodeGoodbye(prefix, b), { kind: PacketKind.Goodbye, source, highestSeq: b })
      })
    ))

  it("fresh flag (bit 1) on data, retransmitted data, heartbeat and announce", () =>
    run(
      fc.property(sourceArb, seqArb, seqOrZeroArb, updatesArb, (source, seq, startedAt, updates) => {
        const prefix = makeSourcePrefix(source)
        const original = encodePackedExact(prefix, seq, updates)
        expect(markFresh(original)).toBe(original) // in place
        expect(original[4]).toBe(FLAG_FRESH)
        const data = { kind: PacketKind.Data, source, seq, body: { fragment: Fragment.None, updates } } as const
        roundTrip(original, { ...data, retransmission: false, fresh: true })
        // A retransmission keeps the original's fresh flag.
        const copy = asRetransmission(original)
        expect(copy[4]).toBe(FLAG_FRESH | FLAG_RETRANSMISSION)
        roundTrip(copy, { ...data, retransmission: true, fresh: true })
        const hb = markFresh(encodeHeartbeat(prefix, seq, seq))
        expect(hb[4]).toBe(FLAG_FRESH)
        roundTrip(hb, { kind: PacketKind.Heartbeat, source, highestSeq: seq, oldestCached: seq, fresh: true })
        const announce = markFresh(encodeAnnounce(prefix, 0, startedAt))
        roundTrip(announce, { kind: PacketKind.Announce, source, highestSeq: 0, startedAt, fresh: true })
        // Unmarked packets differ from marked ones only in byte 4.
        const plainHb = encodeHeartbeat(prefix, seq, seq)
        expect(Buffer.compare(plainHb.subarray(5), hb.subarray(5))).toBe(0)
      }),
      50
    ))

  it("markFresh refuses the kinds that cannot carry the flag", () => {
    const prefix = makeSourcePrefix(source0)
    expect(() => markFresh(encodeGoodbye(prefix, 1))).toThrow(RangeError)
    expect(() => markFresh(encodeNak(prefix, 1n, [{ first: 1, last: 1 }]))).toThrow(RangeError)
    expect(() => markFresh(encodeLost(prefix, [{ first: 1, last: 1 }]))).toThrow(RangeError)
    expect(() => markFresh(new Uint8Array(3))).toThrow(RangeError)
  })

  it("nak and lost", () =>
    run(
      fc.property(sourceArb, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), rangesArb, (source, target, ranges) => {
        const prefix = makeSourcePrefix(source)
        roundTrip(encodeNak(prefix, target, ranges), { kind: PacketKind.Nak, source, target, ranges })
        roundTrip(encodeLost(prefix, ranges), { kind: PacketKind.Lost, source, ranges })
      })
    ))

  it("status", () =>
    run(
      fc.property(
        sourceArb,
        fc.constantFrom("", "rx-1", "récepteur ä"),
        fc.boolean(),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.array(fc.record({ target: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), position: seqOrZeroArb }), {
          maxLength: 20
        }),
        (source, name, leaving, windowBytes, windowSegments, entries) => {
          const datagram = encodeStatus(
            makeSourcePrefix(source),
            encodeReceiverName(name),
            leaving,
            windowBytes,
            windowSegments,
            entries
          )
          roundTrip(datagram, {
            kind: PacketKind.Status,
            source,
            name,
            leaving,
            windowBytes,
            windowSegments,
            entries
          })
        }
      )
    ))

  it("status layout is as documented", () => {
    const d = encodeStatus(prefix0, encodeReceiverName("rx"), true, 0x100000, 2048, [{ target: 0xabn, position: 5 }])
    expect(d[3]).toBe(PacketKind.Status)
    expect(Buffer.from(d.subarray(prefix0.bytes.length)).toString("hex")).toBe(
      "01" + // state: leaving
        "00100000" + // windowBytes
        "00000800" + // windowSegments
        "02" + // name length
        Buffer.from("rx").toString("hex") +
        "0001" + // entries
        "00000000000000ab" + // target
        "0000000000000005" // position
    )
  })

  it("returns the same Source object for repeated datagrams of a session", () => {
    const a = decodeOk(encodeGoodbye(prefix0, 1))
    const b = decodeOk(encodeHeartbeat(prefix0, 5, 1))
    expect(b.source).toBe(a.source)
    // Same session id, different identity bytes: never confused with the cached source.
    const other = makeSourcePrefix({ ...source0, host: "elsewhere" })
    const c = decodeOk(encodeGoodbye(other, 1))
    expect(c.source.host).toBe("elsewhere")
    expect(decodeOk(encodeGoodbye(prefix0, 1)).source.host).toBe(source0.host)
    clearDecodeCaches()
    expect(plain(decodeOk(encodeGoodbye(prefix0, 1)).source)).toEqual(plain(source0))
  })

  it("a cached Source is reused only when every identity byte matches, at any position and length", () => {
    // The cache compares 4 bytes at a time, then the tail: a difference in any byte, of identities
    // of every length modulo 4, must decode to the datagram's own names.
    for (const app of ["a", "ab", "abc", "abcd", "application-name"]) {
      const base = { ...source0, host: "host-1", application: app }
      expect(decodeOk(encodeGoodbye(makeSourcePrefix(base), 1)).source.application).toBe(app)
      const names = [...`${base.host}\u0000${app}`]
      for (let k = 0; k < names.length; k++) {
        if (names[k] === "\u0000") continue
        const changed = [...names]
        changed[k] = changed[k] === "z" ? "y" : "z"
        const [host, application] = changed.join("").split("\u0000")
        const got = decodeOk(encodeGoodbye(makeSourcePrefix({ ...base, host, application }), 1)).source
        expect([got.host, got.application]).toEqual([host, application])
        expect(decodeOk(encodeGoodbye(makeSourcePrefix(base), 1)).source.application).toBe(app)
      }
      const index = decodeOk(encodeGoodbye(makeSourcePrefix({ ...base, senderIndex: base.senderIndex + 1 }), 1)).source
      expect(index.senderIndex).toBe(base.senderIndex + 1)
    }
  })

  it("decodes many distinct topics correctly (intern cache collisions and evictions)", () => {
    const w = new PackedSegmentWriter(prefix0, 60_000)
    for (let round = 0; round < 2; round++) {
      w.begin(round + 1)
      for (let i = 0; i < 20_000; i += 1) {
        if (!w.tryAppend(topicBytes(`/t/${i}`), new Uint8Array([i & 255]))) break
      }
      const n = w.count
      const p = decodeOk(w.finish())
      if (p.kind !== PacketKind.Data || p.body.fragment !== Fragment.None) throw new Error("not packed")
      expect(p.body.updates.length).toBe(n)
      p.body.updates.forEach((u, i) => {
        expect(u.topic).toBe(`/t/${i}`)
        expect(u.payload[0]).toBe(i & 255)
      })
    }
  })
})

// ---- writer -----------------------------------------------------------------------------------

describe("PackedSegmentWriter", () => {
  it("counts, sizes, refuses when full, and finishes exactly size bytes", () =>
    run(
      fc.property(
        fc.integer({ min: 100, max: 9000 }),
        fc.array(fc.record({ topic: topicArb, payload: payloadArb }), { minLength: 1, maxLength: 60 }),
        (segmentSize, updates) => {
          const w = new PackedSegmentWriter(prefix0, segmentSize)
          expect(w.isOpen).toBe(false)
          w.begin(42)
          expect(w.isOpen).toBe(true)
          expect(w.count).toBe(0)
          expect(w.size).toBe(packedHeaderSize(prefix0))
          const accepted: Array<PackedUpdate> = []
          for (const u of updates) {
            const tb = topicBytes(u.topic)
            const before = w.size
            const cost = w.costOf(tb, u.payload.length)
            const fits = before + cost <= segmentSize
            expect(w.tryAppend(tb, u.payload)).toBe(fits)
            expect(w.size).toBe(fits ? before + cost : before)
            if (fits) accepted.push(u)
            expect(w.count).toBe(accepted.length)
            expect(w.size).toBeLessThanOrEqual(segmentSize)
          }
          if (accepted.length === 0) return
          const size = w.size
          const d = w.finish()
          expect(d.length).toBe(size)
          expect(w.isOpen).toBe(false)
          expect(w.count).toBe(0)
          roundTrip(d, {
            kind: PacketKind.Data,
            source: source0,
            retransmission: false,
            fresh: false,
            seq: 42,
            body: { fragment: Fragment.None, updates: accepted }
          })
        }
      ),
      150
    ))

  it("packs at least 15 64-byte updates with a ~10-byte topic into a 1400-byte segment", () => {
    const w = new PackedSegmentWriter(prefix0, 1400)
    const payload = new Uint8Array(64).fill(1)
    w.begin(1)
    while (w.tryAppend(topicBytes("/px/eq/ABC"), payload));
    expect(w.count).toBeGreaterThanOrEqual(15)
    expect(w.finish().length).toBeLessThanOrEqual(1400)
  })

  it("returned datagrams are owned by the caller: later segments never write into them", () => {
    const w = new PackedSegmentWriter(prefix0, 200)
    w.begin(1)
    w.tryAppend(topicBytes("/a"), new Uint8Array([1, 2, 3]))
    const first = w.finish()
    const snapshot = Buffer.from(first)
    w.begin(2)
    w.tryAppend(topicBytes("/b"), new Uint8Array(50).fill(9))
    w.finish()
    expect(Buffer.compare(first, snapshot)).toBe(0)
  })

  it("refuses an update that can never fit, and enforces begin/finish order", () => {
    const w = new PackedSegmentWriter(prefix0, 300)
    expect(() => w.tryAppend(topicBytes("/a"), new Uint8Array(1))).toThrow(RangeError)
    expect(() => w.finish()).toThrow(RangeError)
    w.begin(1)
    expect(() => w.begin(2)).toThrow(RangeError)
    expect(w.tryAppend(topicBytes("/a"), new Uint8Array(300))).toBe(false)
    expect(() => w.finish()).toThrow(RangeError) // an empty packed segment is not a valid packet
    expect(w.tryAppend(topicBytes("/a"), new Uint8Array(10))).toBe(true)
    expect(w.finish().length).toBe(packedHeaderSize(prefix0) + PACKED_UPDATE_OVERHEAD + 2 + 10)
    expect(() => new PackedSegmentWriter(prefix0, 20)).toThrow(RangeError)
    expect(() => w.begin(0)).toThrow(RangeError)
    expect(() => w.begin(MAX + 1)).toThrow(RangeError)
  })

  it("stops at 65 535 updates per segment (u16 count)", () => {
    const w = new PackedSegmentWriter(prefix0, 65_535 * 6 + 1000)
    w.begin(1)
    const empty = new Uint8Array(0)
    let n = 0
    while (w.tryAppend(empty, empty)) n++
    expect(n).toBe(65_535)
    const p = decodeOk(w.finish())
    expect(p.kind === PacketKind.Data && p.body.fragment === Fragment.None && p.body.updates.length).toBe(65_535)
  })
})

// ---- sizes ------------------------------------------------------------------------------------

describe("capacities", () => {
  it("fragmentCapacity fills a segment exactly", () => {
    for (const segmentSize of [200, 1400, 8192]) {
      const tb = topicBytes("/big/update/topic")
      const cap = fragmentCapacity(prefix0, segmentSize, tb)
      const first = encodeFragment(prefix0, 1, 1, new Uint8Array(cap.first), tb, cap.first + 1)
      const middle = encodeFragment(prefix0, 2, 2, new Uint8Array(cap.rest))
      expect(first.length).toBe(segmentSize)
      expect(middle.length).toBe(segmentSize)
    }
    expect(fragmentCapacity(prefix0, 60, new Uint8Array(100)).first).toBe(0)
  })

  it("maxRangesPerPacket fills a NAK without exceeding the segment", () => {
    for (const segmentSize of [100, 1400, 8192]) {
      const n = maxRangesPerPacket(prefix0, segmentSize)
      const ranges = Array.from({ length: n + 1 }, (_, i) => ({ first: i + 1, last: i + 1 }))
      expect(encodeNak(prefix0, 1n, ranges.slice(0, n)).length).toBeLessThanOrEqual(segmentSize)
      expect(encodeNak(prefix0, 1n, ranges).length).toBeGreaterThan(segmentSize)
      expect(encodeLost(prefix0, ranges.slice(0, n)).length).toBeLessThanOrEqual(segmentSize)
    }
  })
})

// ---- failures ---------------------------------------------------------------------------------

/** A copy of `d` with `patch` applied at `offset` (relative to the end of the common header when `body`). */
const patched = (d: Uint8Array, offset: number, bytes: ReadonlyArray<number>) => {
  const c = Uint8Array.from(d)
  c.set(bytes, offset)
  return c
}
const H = prefix0.bytes.length
const cat = (...parts: ReadonlyArray<Uint8Array | ReadonlyArray<number>>): Uint8Array =>
  Buffer.concat(parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(p))))

describe("decode failures", () => {
  const goodbye = encodeGoodbye(prefix0, 5)
  const heartbeat = encodeHeartbeat(prefix0, 9, 3)
  const packed = encodePackedExact(prefix0, 3, [{ topic: "/a", payload: new Uint8Array([1, 2]) }])
  const first = encodeFragment(prefix0, 4, 1, new Uint8Array([1, 2, 3]), topicBytes("/big"), 10)
  const middle = encodeFragment(prefix0, 5, 2, new Uint8Array([1]))
  const nak = encodeNak(prefix0, 77n, [{ first: 1, last: 4 }])
  const lost = encodeLost(prefix0, [{ first: 2, last: 3 }])

  it("TooShort", () => {
    expectFailure(new Uint8Array(0), "TooShort")
    expectFailure(Uint8Array.of(0x45, 0x44), "TooShort")
    expectFailure(goodbye.subarray(0, FIXED_HEADER_SIZE - 1), "TooShort")
  })

  it("BadMagic and UnsupportedVersion", () => {
    expectFailure(patched(goodbye, 0, [0x45, 0x45]), "BadMagic")
    expectFailure(Uint8Array.of(0, 0, 1), "BadMagic")
    expectFailure(patched(goodbye, 2, [3]), "UnsupportedVersion")
    expectFailure(patched(goodbye, 2, [0]), "UnsupportedVersion")
    expectFailure(patched(goodbye, 2, [1]), "UnsupportedVersion") // version 1: one channel for data and control
    // The version is judged before the length: a future version may have a shorter header.
    expectFailure(Uint8Array.of(MAGIC >> 8, MAGIC & 255, 3), "UnsupportedVersion")
  })

  it("UnknownKind", () => {
    expectFailure(patched(goodbye, 3, [0]), "UnknownKind")
    expectFailure(patched(goodbye, 3, [8]), "UnknownKind")
    expectFailure(patched(goodbye, 3, [255]), "UnknownKind")
  })

  it("Truncated", () => {
    expectFailure(goodbye.subarray(0, 20), "Truncated") // inside the host name
    expectFailure(goodbye.subarray(0, H - 1), "Truncated") // inside the application name
    expectFailure(goodbye.subarray(0, H + 7), "Truncated")
    expectFailure(heartbeat.subarray(0, H + 15), "Truncated")
    expectFailure(packed.subarray(0, H + 8), "Truncated") // data header
    expectFailure(packed.subarray(0, H + 10), "Truncated") // update count
    expectFailure(packed.subarray(0, packed.length - 1), "Truncated") // payload
    expectFailure(patched(packed, H + 11, [0xff, 0xff]), "Truncated") // topic length beyond the end
    expectFailure(patched(packed, H + 11 + 2 + 2, [0, 0, 1, 0]), "Truncated") // payload length beyond the end
    expectFailure(patched(packed, H + 9, [0, 2]), "Truncated") // count says 2, one present
    expectFailure(first.subarray(0, H + 9 + 5), "Truncated")
    expectFailure(patched(first, H + 9 + 4, [0, 200]), "Truncated") // first-fragment topic beyond the end
    expectFailure(nak.subarray(0, H + 7), "Truncated")
    expectFailure(nak.subarray(0, nak.length - 1), "Truncated")
    expectFailure(patched(lost, H, [0, 2]), "Truncated")
  })

  it("TrailingBytes", () => {
    expectFailure(cat(goodbye, [0]), "TrailingBytes")
    expectFailure(cat(heartbeat, [1, 2, 3]), "TrailingBytes")
    expectFailure(cat(encodeAnnounce(prefix0, 1, 2), [0]), "TrailingBytes")
    expectFailure(cat(packed, [0]), "TrailingBytes")
    expectFailure(cat(nak, [0]), "TrailingBytes")
    expectFailure(cat(lost, new Uint8Array(16)), "TrailingBytes")
  })

  it("InvalidField", () => {
    expectFailure(patched(packed, 4, [0x04]), "InvalidField") // unknown flag bit
    expectFailure(patched(packed, 4, [0x81]), "InvalidField")
    expectFailure(patched(packed, 4, [0x83]), "InvalidField")
    expectFailure(patched(heartbeat, 4, [FLAG_FRESH | 0x04]), "InvalidField")
    // The fresh flag is only valid on data, heartbeat and announce.
    expectFailure(patched(goodbye, 4, [FLAG_FRESH]), "InvalidField")
    expectFailure(patched(nak, 4, [FLAG_FRESH]), "InvalidField")
    expectFailure(patched(lost, 4, [FLAG_FRESH]), "InvalidField")
    expectFailure(patched(heartbeat, 4, [FLAG_RETRANSMISSION]), "InvalidField") // only data is retransmitted
    expectFailure(patched(packed, H, [0, 0, 0, 0, 0, 0, 0, 0]), "InvalidField") // seq 0
    expectFailure(patched(packed, H, [0, 0x20, 0, 0, 0, 0, 0, 0]), "InvalidField") // seq 2^53
    expectFailure(patched(packed, H, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), "InvalidField")
    expectFailure(patched(packed, H + 8, [4]), "InvalidField") // fragment kind
    expectFailure(patched(packed, H + 9, [0, 0]), "InvalidField") // zero updates
    expectFailure(patched(packed, H + 13, [0xff]), "InvalidField") // topic "/a" → "\xff a": not UTF-8
    expectFailure(patched(packed, H + 13, [0xc0]), "InvalidField") // truncated/overlong sequence
    expectFailure(middle.subarray(0, middle.length - 1), "InvalidField") // empty chunk
    expectFailure(patched(middle, H + 8, [3]).subarray(0, middle.length - 1), "InvalidField") // empty last chunk
    expectFailure(first.subarray(0, first.length - 3), "InvalidField") // empty first chunk
    expectFailure(patched(first, H + 9, [0, 0, 0, 3]), "InvalidField") // totalLength == chunk length
    expectFailure(patched(first, H + 9, [0x40, 0, 0, 1]), "InvalidField") // totalLength > 1 GiB
    expectFailure(patched(first, H + 9 + 6, [0xed, 0xa0, 0x80]), "InvalidField") // UTF-8-encoded surrogate
    expectFailure(patched(goodbye, 16, [0xff]), "InvalidField") // host not UTF-8
    expectFailure(patched(goodbye, H - 1, [0x80]), "InvalidField") // application not UTF-8
    expectFailure(patched(goodbye, H, [0, 0x20, 0, 0, 0, 0, 0, 0]), "InvalidField") // highestSeq 2^53
    expectFailure(patched(heartbeat, H + 8, [0, 0, 0, 0, 0, 0, 0, 10]), "InvalidField") // oldest > highest
    expectFailure(patched(heartbeat, H + 8, [0, 0x20, 0, 0, 0, 0, 0, 0]), "InvalidField")
    expectFailure(patched(encodeAnnounce(prefix0, 1, 2), H + 8, [0xff]), "InvalidField") // startedAt
    const status = encodeStatus(prefix0, encodeReceiverName("rx"), false, 1, 1, [{ target: 1n, position: 1 }])
    expectFailure(patched(status, 4, [FLAG_FRESH]), "InvalidField") // no flags on status
    expectFailure(patched(status, H, [2]), "InvalidField") // state
    expectFailure(patched(status, H + 10, [0xff]), "InvalidField") // name not UTF-8
    expectFailure(patched(status, H + 14 + 8, [0, 0x20]), "InvalidField") // position 2^53
    expectFailure(status.subarray(0, status.length - 1), "Truncated")
    expectFailure(Buffer.concat([status, Uint8Array.of(0)]), "TrailingBytes")
    expectFailure(patched(nak, H + 8, [0, 0]), "InvalidField") // zero ranges
    expectFailure(patched(nak, H + 10, [0, 0, 0, 0, 0, 0, 0, 9]), "InvalidField") // reversed range
    expectFailure(patched(nak, H + 10, [0, 0, 0, 0, 0, 0, 0, 0]), "InvalidField") // first 0
    expectFailure(patched(lost, H + 2 + 8, [0, 0x20, 0, 0, 0, 0, 0, 0]), "InvalidField") // last 2^53
  })
})

describe("encoder contract", () => {
  it("rejects values the wire cannot carry", () => {
    expect(() => makeSourcePrefix({ ...source0, host: "h".repeat(256) })).toThrow(RangeError)
    expect(() => makeSourcePrefix({ ...source0, application: "\ud800" })).toThrow(RangeError)
    expect(() => makeSourcePrefix({ ...source0, senderIndex: 65_536 })).toThrow(RangeError)
    expect(() => makeSourcePrefix({ ...source0, sessionId: 1n << 64n })).toThrow(RangeError)
    expect(() => makeSourcePrefix({ ...source0, sessionId: -1n })).toThrow(RangeError)
    expect(makeSourcePrefix({ ...source0, host: "é".repeat(127) }).bytes.length).toBe(FIXED_HEADER_SIZE + 254 + 3)
    expect(() => encodeFragment(prefix0, 1, 2, new Uint8Array(0))).toThrow(RangeError)
    expect(() => encodeFragment(prefix0, 1, 1, new Uint8Array(5), topicBytes("/a"), 5)).toThrow(RangeError)
    expect(() => encodeFragment(prefix0, 1, 1, new Uint8Array(5))).toThrow(RangeError)
    expect(() => encodeFragment(prefix0, 1, 1, new Uint8Array(5), topicBytes("/a"), MAX_UPDATE_BYTES + 1)).toThrow(
      RangeError
    )
    expect(() => encodeFragment(prefix0, 0, 3, new Uint8Array(5))).toThrow(RangeError)
    expect(() => encodeHeartbeat(prefix0, 1, 2)).toThrow(RangeError)
    expect(() => encodeHeartbeat(prefix0, 1.5, 0)).toThrow(RangeError)
    expect(() => encodeGoodbye(prefix0, MAX + 1)).toThrow(RangeError)
    expect(() => encodeNak(prefix0, 1n, [])).toThrow(RangeError)
    expect(() => encodeNak(prefix0, 1n, [{ first: 3, last: 2 }])).toThrow(RangeError)
    expect(() => encodeLost(prefix0, [{ first: 0, last: 2 }])).toThrow(RangeError)
    expect(() => asRetransmission(encodeGoodbye(prefix0, 1))).toThrow(RangeError)
  })

  it("caches topic bytes", () => {
    expect(topicBytes("/x/ü")).toBe(topicBytes("/x/ü"))
    expect(Buffer.from(topicBytes("/x/ü")).toString("utf8")).toBe("/x/ü")
  })
})

// ---- fuzz -------------------------------------------------------------------------------------

/** xorshift32: small, fast, seeded. */
const prng = (seed: number) => {
  let s = seed >>> 0 || 1
  return (n: number) => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s % n
  }
}

describe("fuzz", () => {
  it("decode never throws; every accepted datagram re-encodes to itself", () => {
    const rnd = prng(SEED)
    const randomBytes = (n: number) => {
      const b = new Uint8Array(n)
      for (let i = 0; i < n; i++) b[i] = rnd(256)
      return b
    }
    const names = ["", "h", "host-ä.example", "日本", "a".repeat(255)]
    const topics = ["/prices/eq/ABC", "", "/ü", "/t/".repeat(50)]
    const prefixes = Array.from({ length: 8 }, (_, i) =>
      makeSourcePrefix({
        sessionId: (BigInt(rnd(2 ** 31)) * BigInt(rnd(2 ** 31)) * 5n) & ((1n << 64n) - 1n),
        senderIndex: rnd(65_536),
        host: names[i % names.length],
        application: names[(i * 3) % names.length]
      })
    )
    const seq = () => (rnd(4) === 0 ? MAX - rnd(3) : 1 + rnd(100_000))
    const validPacket = (): Uint8Array => {
      const prefix = prefixes[rnd(prefixes.length)]
      switch (rnd(9)) {
        case 0:
        case 1: {
          const n = 1 + rnd(6)
          const updates = Array.from({ length: n }, () => ({
            topic: topics[rnd(topics.length)],
            payload: randomBytes(rnd(80))
          }))
          const d = encodePackedExact(prefix, seq(), updates)
          return rnd(4) === 0 ? asRetransmission(d) : d
        }
        case 2: {
          const chunk = randomBytes(1 + rnd(60))
          return encodeFragment(
            prefix,
            seq(),
            1,
            chunk,
            topicBytes(topics[rnd(topics.length)]),
            chunk.length + 1 + rnd(1e6)
          )
        }
        case 3:
          return encodeFragment(prefix, seq(), rnd(2) === 0 ? 2 : 3, randomBytes(1 + rnd(60)))
        case 4: {
          const h = seq()
          return encodeHeartbeat(prefix, h, rnd(2) === 0 ? 0 : Math.max(1, h - rnd(100)))
        }
        case 5:
        case 6: {
          const ranges = Array.from({ length: 1 + rnd(5) }, () => {
            const f = seq()
            return { first: f, last: Math.min(MAX, f + rnd(10)) }
          })
          return rnd(2) === 0 ? encodeNak(prefix, BigInt(rnd(2 ** 31)), ranges) : encodeLost(prefix, ranges)
        }
        case 7:
          return encodeAnnounce(prefix, seq() - 1, 1_700_000_000_000 + rnd(1e9))
        default:
          return encodeGoodbye(prefix, seq() - 1)
      }
    }
    const mutate = (d: Uint8Array): Uint8Array => {
      switch (rnd(7)) {
        case 0: {
          const c = Uint8Array.from(d) // 1–4 bit flips
          for (let k = 1 + rnd(4); k > 0; k--) c[rnd(c.length)] ^= 1 << rnd(8)
          return c
        }
        case 1:
          return d.subarray(0, rnd(d.length)) // truncation
        case 2:
          return cat(d, randomBytes(1 + rnd(20))) // extension
        case 3: {
          const c = Uint8Array.from(d) // a random u8/u16/u32/u64 field value after the header
          const width = [1, 2, 4, 8][rnd(4)]
          const at = FIXED_HEADER_SIZE + rnd(Math.max(1, c.length - FIXED_HEADER_SIZE))
          for (let i = 0; i < width && at + i < c.length; i++) c[at + i] = rnd(4) === 0 ? 0 : rnd(256)
          return c
        }
        case 4: {
          const c = Uint8Array.from(d) // a random byte anywhere
          c[rnd(c.length)] = rnd(256)
          return c
        }
        case 5:
          return randomBytes(rnd(120)) // noise
        default: {
          const c = randomBytes(3 + rnd(80)) // noise behind a valid magic and version
          c[0] = MAGIC >> 8
          c[1] = MAGIC & 255
          c[2] = 1
          return c
        }
      }
    }

    const outcomes = new Map<string, number>()
    const N = 100_000
    for (let i = 0; i < N; i++) {
      const valid = validPacket()
      const input = i % 10 === 0 ? valid : mutate(valid)
      let p: ReturnType<typeof decode>
      try {
        p = decode(input)
      } catch (e) {
        throw new Error(`decode threw on ${Buffer.from(input).toString("hex")}: ${String(e)}`)
      }
      const key = isDecodeFailure(p) ? p.reason : `ok:${p.kind}`
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
      if (isDecodeFailure(p)) continue
      const again = encodePacket(p)
      if (Buffer.compare(again, input) !== 0) {
        throw new Error(`re-encoding differs for ${Buffer.from(input).toString("hex")}`)
      }
      if (isDecodeFailure(decode(again))) throw new Error("re-encoded packet does not decode")
    }
    if (process.env.WIRE_FUZZ_VERBOSE) console.log(Object.fromEntries(outcomes))
    // Every outcome is exercised, so the fuzz is not stuck on one path.
    for (const reason of ["TooShort", "BadMagic", "UnsupportedVersion", "UnknownKind", "Truncated", "TrailingBytes"]) {
      expect(outcomes.get(reason) ?? 0, reason).toBeGreaterThan(100)
    }
    expect(outcomes.get("InvalidField") ?? 0).toBeGreaterThan(1000)
    for (let kind = 1; kind <= 6; kind++) expect(outcomes.get(`ok:${kind}`) ?? 0, `kind ${kind}`).toBeGreaterThan(1000)
  })
})
