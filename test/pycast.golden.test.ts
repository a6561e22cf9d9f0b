/**
 * Golden tests of the pycast dialect against datagrams captured from pycast's own test publisher
 * and subscriber (test/fixtures/pycast/sniff*.txt, hex; long datagrams are truncated in the
 * capture and rebuilt here: tstpub's large payloads end in a run of 'A' bytes up to `len=`).
 *
 * - every captured datagram decodes, and re-encodes to the same bytes;
 * - the translation to the engine's packet model (sessions, fragments, heartbeats, requests);
 * - what OUR engine sends in the pycast dialect is byte for byte what pycast sends in the same
 *   situation (configuration, large update segments, retransmission, retransmission request,
 *   heartbeat).
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Endpoint } from "../src/internal/protocol/endpoint.js"
import { Fragment, PacketKind } from "../src/internal/protocol/packets.js"
import {
  decodePycast,
  encodePycast,
  ipv4FromReversed,
  isPycastFailure,
  type PycastPacket,
  PycastType,
  pycastAppId,
  pythonLength,
  reversedIpv4
} from "../src/internal/protocol/pycast.js"
import { pycastDialect, pycastSessionId } from "../src/internal/protocol/pycastDialect.js"
import { isDecodeFailure } from "../src/internal/protocol/wire.js"
import { recorder, testConfig } from "./engine.harness.js"

interface Captured {
  readonly file: string
  readonly line: number
  readonly bytes: Uint8Array
  /** Bytes that were in the capture (the rest was rebuilt). */
  readonly captured: number
}

const A = 0x41

const load = (file: string): Array<Captured> =>
  readFileSync(new URL(`fixtures/pycast/${file}`, import.meta.url), "utf8")
    .split("\n")
    .flatMap((text, line) => {
      const m = /len=(\d+).*hex=([0-9a-f]+)/.exec(text)
      if (m === null) return []
      const length = Number(m[1])
      const head = Buffer.from(m[2], "hex")
      const bytes = Buffer.alloc(length, A)
      head.copy(bytes)
      return [{ file, line: line + 1, bytes, captured: head.length }]
    })

const all = [...load("sniff.txt"), ...load("sniff2.txt"), ...load("sniff4.txt")]
const decoded = (c: Captured): PycastPacket => {
  const p = decodePycast(c.bytes)
  if (isPycastFailure(p)) throw new Error(`${c.file}:${c.line}: ${p.reason} ${p.detail}`)
  return p
}

// Identities seen in the captures.
const PUB = { host: "127.0.0.1", senderId: 0xef33, startTime: 0x6b0261b6 } // sniff.txt publisher
const PUB2 = { host: "127.0.0.1", senderId: 0xef33, startTime: 0x6b0261e0 } // sniff2.txt publisher
const SUB2 = { host: "127.0.0.1", senderId: 0xef32, startTime: 0x6b0261df } // sniff2.txt subscriber

const pycastConfig = (overrides: Parameters<typeof testConfig>[0] = {}) =>
  testConfig({
    host: "pycast-host",
    application: "test",
    segmentSize: 8192,
    flowControl: "none",
    heartbeatIntervalMs: 3000,
    holdbackDelayMs: 0,
    pycast: { group: "224.10.11.12", port: 5656, hostAddress: "127.0.0.1" },
    ...overrides
  })

/** An endpoint whose control session and first sender have the given pycast identities. */
const endpointWith = (control: { senderId: number; startTime: number }, sender?: typeof PUB) => {
  const ids = [pycastSessionId("127.0.0.1", control.startTime, control.senderId)]
  if (sender !== undefined) ids.push(pycastSessionId("127.0.0.1", sender.startTime, sender.senderId))
  const sink = recorder()
  const endpoint = new Endpoint({
    config: pycastConfig(),
    sink,
    random: () => 0,
    newSessionId: () => ids.shift() ?? 1n,
    now: 0
  })
  return { endpoint, sink }
}

const find = (file: string, pred: (p: PycastPacket) => boolean): Captured => {
  const c = all.find((c) => c.file === file && pred(decoded(c)))
  if (c === undefined) throw new Error(`no such datagram in ${file}`)
  return c
}

describe("pycast field helpers", () => {
  it("application id hash, reversed IPv4, character counts", () => {
    expect(pycastAppId("test")).toBe(0xb1599771)
    expect(reversedIpv4("127.0.0.1")).toBe(0x0100007f)
    expect(reversedIpv4("224.10.11.12")).toBe(0x0c0b0ae0)
    expect(ipv4FromReversed(0x0c0b0ae0)).toBe("224.10.11.12")
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        expect(ipv4FromReversed(reversedIpv4(ip))).toBe(ip)
      })
    )
    expect(pythonLength("/prix/é/😀")).toBe(9)
    expect(() => reversedIpv4("::1")).toThrow(RangeError)
  })

  it("a non-ASCII subject is counted in characters, as pycast writes it", () => {
    const update = { topic: "/prix/é/😀", payload: Buffer.from([1, 2]) }
    const p: PycastPacket = {
      type: PycastType.Update,
      header: { type: 1, flags: 5, host: "10.1.2.3", senderId: 7, startTime: 9, appId: 1 },
      seq: 1,
      body: { kind: "updates", updates: [update] }
    }
    const bytes = encodePycast(p)
    expect((bytes[29] << 8) | bytes[30]).toBe(9) // characters, not the 14 UTF-8 bytes
    // A decoded update also holds the fields the receiver fills in on delivery (packets.ts decodedUpdate).
    expect(decodePycast(bytes)).toEqual({
      ...p,
      body: { kind: "updates", updates: [{ ...update, source: undefined, sequence: 0 }] }
    })
  })
})

describe("captured pycast datagrams", () => {
  it("every one decodes and re-encodes to the same bytes", () => {
    expect(all.length).toBe(60 - 4) // four lines of the captures are summaries
    const types = new Map<number, number>()
    for (const c of all) {
      const p = decoded(c)
      types.set(p.type, (types.get(p.type) ?? 0) + 1)
      expect(Buffer.from(encodePycast(p)).equals(Buffer.from(c.bytes)), `${c.file}:${c.line}`).toBe(true)
    }
    // Every packet type pycast sends appears in the captures.
    expect([...types.keys()].sort()).toEqual([1, 2, 3, 4, 5, 6])
  })

  it("the rebuilt tails are inside tstpub's 'A' runs (the reconstruction is sound)", () => {
    for (const c of all.filter((c) => c.captured < c.bytes.length)) {
      const p = decoded(c)
      if (p.type !== PycastType.Update && p.type !== PycastType.Retransmission) throw new Error("unexpected")
      const b = p.body
      const data = b.kind === "updates" ? b.updates[b.updates.length - 1].payload : b.chunk
      // tstpub's payload: seqno (4) + time (8) + bytes(present, u32, 'A' × n): the tail is all 'A'.
      const tail = c.bytes.subarray(c.captured)
      expect(tail.every((x) => x === A)).toBe(true)
      expect(data.length).toBeGreaterThanOrEqual(tail.length)
    }
  })

  it("fields of each packet type", () => {
    const config = decoded(find("sniff.txt", (p) => p.type === PycastType.Configuration))
    expect(config).toMatchObject({
      header: { ...PUB, flags: 5, appId: 0xb1599771 },
      group: "224.10.11.12",
      port: 5656,
      senderId: PUB.senderId,
      startTime: PUB.startTime,
      heartbeatIntervalMs: 3000,
      configurationIntervalMs: 15000,
      host: "127.0.0.1",
      application: "test"
    })
    expect(decoded(find("sniff.txt", (p) => p.type === PycastType.Heartbeat))).toMatchObject({
      group: "224.10.11.12",
      port: 5656,
      senderId: PUB.senderId,
      lastSeq: 536
    })
    const rqst = decoded(find("sniff2.txt", (p) => p.type === PycastType.RetransmissionRqst))
    expect(rqst).toMatchObject({
      header: { ...SUB2 },
      requester: "127.0.0.1",
      targetSenderId: PUB2.senderId,
      targetStartTime: PUB2.startTime,
      low: 8,
      high: 9,
      requesterHost: "127.0.0.1",
      application: "test"
    })
    expect(decoded(find("sniff2.txt", (p) => p.type === PycastType.RetransmissionNak))).toMatchObject({
      seqs: []
    })
    const start = decoded(all[1])
    expect(start).toMatchObject({ type: 1, seq: 1, header: { flags: 1 } })
    if (start.type !== PycastType.Update || start.body.kind !== "start") throw new Error("not a START")
    expect(start.body.topic).toBe("/test/0000")
    expect(start.body.totalLength).toBe(0x2de1)
    expect(decoded(all[2])).toMatchObject({ type: 1, seq: 2, header: { flags: 4 }, body: { kind: "end" } })
  })

  it("decode failures are typed, never thrown", () => {
    const config = find("sniff.txt", (p) => p.type === PycastType.Configuration).bytes
    const reason = (b: Uint8Array) => {
      const p = decodePycast(b)
      return isPycastFailure(p) ? p.reason : "ok"
    }
    expect(reason(config.subarray(0, 19))).toBe("TooShort")
    expect(reason(Uint8Array.from([2, ...config.subarray(1)]))).toBe("UnsupportedVersion")
    const unknown = Uint8Array.from(config)
    unknown[2] = 9
    expect(reason(unknown)).toBe("UnknownKind")
    expect(reason(config.subarray(0, 50))).toBe("Truncated")
    expect(reason(Uint8Array.from([...config, 0]))).toBe("TrailingBytes")
    const update = Uint8Array.from(find("sniff2.txt", (p) => p.type === PycastType.Retransmission).bytes)
    update[3] = 3 // START|MORE is no segment kind
    expect(reason(update)).toBe("InvalidField")
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        decodePycast(b)
      })
    )
  })
})

describe("the pycast dialect's translation", () => {
  const dialect = pycastDialect(pycastConfig(), { group: "224.10.11.12", port: 5656, hostAddress: "127.0.0.2" })

  it("sessions, fragments and heartbeats in the engine's model", () => {
    const id = pycastSessionId("127.0.0.1", PUB.startTime, PUB.senderId)
    expect(dialect.decode(find("sniff.txt", (p) => p.type === PycastType.Configuration).bytes, 0)).toBeUndefined()
    const first = dialect.decode(all[1].bytes, 0)
    if (first === undefined || isDecodeFailure(first) || first.kind !== PacketKind.Data) throw new Error("no data")
    // The application is known: its name came with the configuration (and it is ours, too).
    expect(first.source).toEqual({ sessionId: id, senderIndex: PUB.senderId, host: "127.0.0.1", application: "test" })
    expect(first.body).toMatchObject({ fragment: Fragment.First, topic: "/test/0000", totalLength: 0x2de1 })
    expect(dialect.decode(all[2].bytes, 0)).toMatchObject({ seq: 2, body: { fragment: Fragment.Last } })
    const more = find("sniff.txt", (p) => p.header.flags === 2).bytes
    expect(dialect.decode(more, 0)).toMatchObject({ body: { fragment: Fragment.Middle }, retransmission: false })
    expect(dialect.decode(find("sniff.txt", (p) => p.type === PycastType.Heartbeat).bytes, 0)).toMatchObject({
      kind: PacketKind.Heartbeat,
      highestSeq: 536,
      oldestCached: -1
    })
    const retransmission = dialect.decode(find("sniff2.txt", (p) => p.type === PycastType.Retransmission).bytes, 0)
    expect(retransmission).toMatchObject({ kind: PacketKind.Data, retransmission: true, seq: 8 })
    expect(dialect.decode(find("sniff2.txt", (p) => p.type === PycastType.RetransmissionRqst).bytes, 0)).toMatchObject({
      kind: PacketKind.Nak,
      target: pycastSessionId("127.0.0.1", PUB2.startTime, PUB2.senderId),
      ranges: [{ first: 8, last: 9 }]
    })
    // pycast only sends empty NAKs: nothing for the engine.
    expect(dialect.decode(find("sniff2.txt", (p) => p.type === PycastType.RetransmissionNak).bytes, 0)).toBeUndefined()
  })

  it("pycast's single-segment large update (which pycast never completes) is delivered whole", () => {
    const single = all.filter((c) => c.file === "sniff4.txt" && c.bytes.length >= 8191)
    expect(single.length).toBe(6)
    for (const c of single) {
      const p = dialect.decode(c.bytes, 0)
      if (p === undefined || isDecodeFailure(p) || p.kind !== PacketKind.Data) throw new Error("no data")
      expect(p.body.fragment).toBe(Fragment.None)
      if (p.body.fragment !== Fragment.None) continue
      expect(p.body.updates[0].payload.length).toBe(c.bytes.length === 8192 ? 0x1fd2 : 0x1fd1)
    }
  })

  it("a captured START + END pair reassembles in our receiver", () => {
    const { endpoint, sink } = endpointWith({ senderId: 1, startTime: 1 })
    endpoint.onDatagram(all[0].bytes, "127.0.0.1:5656", 0) // configuration
    endpoint.onDatagram(all[1].bytes, "127.0.0.1:5656", 1)
    endpoint.onDatagram(all[2].bytes, "127.0.0.1:5656", 2)
    expect(sink.updates.length).toBe(1)
    const u = sink.updates[0]
    expect(u.topic).toBe("/test/0000")
    expect(u.payload.length).toBe(0x2de1)
    expect(u.sequence).toBe(2)
    expect(u.source.application).toBe("test")
    // tstpub's payload: its update number (1) first.
    expect(Buffer.from(u.payload.subarray(0, 4)).readUInt32BE(0)).toBe(1)
  })
})

describe("what we send is pycast's layout, byte for byte", () => {
  it("configuration (twice at start), then a large update as START + END", () => {
    const { endpoint, sink } = endpointWith({ senderId: 1, startTime: 1 }, PUB)
    const sender = endpoint.openSender(0)
    const config = find("sniff.txt", (p) => p.type === PycastType.Configuration).bytes
    expect(sink.sent.map((d) => Buffer.from(d).toString("hex"))).toEqual([
      Buffer.from(config).toString("hex"),
      Buffer.from(config).toString("hex")
    ])
    // The update pycast split into sniff.txt's first two segments.
    const start = decoded(all[1])
    if (start.type !== PycastType.Update || start.body.kind !== "start") throw new Error("not a START")
    const payload = Buffer.concat([start.body.chunk, all[2].bytes.subarray(28)])
    expect(payload.length).toBe(start.body.totalLength)
    expect(endpoint.publish(sender, "/test/0000", payload, 1)).toBe("ok")
    endpoint.endBatch(sender, 1)
    expect(sink.sent.length).toBe(4)
    expect(Buffer.from(sink.sent[2]).equals(Buffer.from(all[1].bytes))).toBe(true)
    expect(Buffer.from(sink.sent[3]).equals(Buffer.from(all[2].bytes))).toBe(true)
    // An update of exactly pycast's single-segment size is split in two (pycast's receivers never
    // complete a lone START), unlike pycast's own sender.
    const lone = decoded(find("sniff4.txt", (p) => p.type === PycastType.Update))
    if (lone.type !== PycastType.Update || lone.body.kind !== "start") throw new Error("not a START")
    endpoint.publish(sender, "/test/0000", lone.body.chunk, 2)
    endpoint.endBatch(sender, 2)
    const [a, b] = sink.sent.slice(4).map((d) => decoded({ file: "", line: 0, bytes: d, captured: d.length }))
    expect([a.header.flags, b.header.flags]).toEqual([1, 4])
    expect(sink.sent.slice(4).every((d) => d.length <= 8192)).toBe(true)
  })

  it("heartbeat of an idle sender", () => {
    const { endpoint, sink } = endpointWith({ senderId: 1, startTime: 1 }, PUB)
    endpoint.openSender(0)
    sink.sent.length = 0
    endpoint.onTimer(3000)
    const captured = Buffer.from(find("sniff.txt", (p) => p.type === PycastType.Heartbeat).bytes)
    // Same bytes but the last sequence number (pycast's had sent 536 segments; we none).
    expect(sink.sent.length).toBe(1)
    expect(Buffer.from(sink.sent[0]).subarray(0, 32).equals(captured.subarray(0, 32))).toBe(true)
    expect(Buffer.from(sink.sent[0]).readUInt32BE(32)).toBe(0)
  })

  it("a retransmission answering pycast's own request", () => {
    const { endpoint, sink } = endpointWith({ senderId: 1, startTime: 1 }, PUB2)
    const sender = endpoint.openSender(0)
    const r8 = find("sniff2.txt", (p) => p.type === PycastType.Retransmission && (p as { seq: number }).seq === 8)
    const r9 = find("sniff2.txt", (p) => p.type === PycastType.Retransmission && (p as { seq: number }).seq === 9)
    for (let i = 1; i <= 9; i++) {
      const c = i === 8 ? r8 : i === 9 ? r9 : undefined
      const p = c === undefined ? undefined : decoded(c)
      if (p !== undefined && (p.type !== PycastType.Retransmission || p.body.kind !== "updates")) throw new Error()
      const u = p?.body.kind === "updates" ? p.body.updates[0] : { topic: "/test/0000", payload: Uint8Array.of(i) }
      endpoint.publish(sender, u.topic, u.payload, i * 100)
      endpoint.endBatch(sender, i * 100)
    }
    sink.sent.length = 0
    endpoint.onDatagram(find("sniff2.txt", (p) => p.type === PycastType.RetransmissionRqst).bytes, "127.0.0.1:1", 1000)
    expect(sink.sent.map((d) => Buffer.from(d).toString("hex"))).toEqual([
      Buffer.from(r8.bytes).toString("hex"),
      Buffer.from(r9.bytes).toString("hex")
    ])
  })

  it("a retransmission request for a gap, as pycast's subscriber sends it", () => {
    const { endpoint, sink } = endpointWith(SUB2)
    const dialect = pycastDialect(pycastConfig(), { group: "224.10.11.12", port: 5656, hostAddress: "127.0.0.1" })
    const codec = dialect.session(
      {
        sessionId: pycastSessionId("127.0.0.1", PUB2.startTime, PUB2.senderId),
        senderIndex: 0,
        host: "h",
        application: "test"
      },
      8192
    )
    const segment = (seq: number) => {
      codec.writer.begin(seq)
      codec.writer.tryAppend(Buffer.from("/test/0000"), Uint8Array.of(seq))
      return codec.writer.finish()
    }
    endpoint.onDatagram(segment(7), "127.0.0.1:1", 0)
    endpoint.onDatagram(segment(10), "127.0.0.1:1", 1)
    endpoint.onTimer(endpoint.nextDeadline())
    const rqst = find("sniff2.txt", (p) => p.type === PycastType.RetransmissionRqst).bytes
    expect(sink.sent.map((d) => Buffer.from(d).toString("hex"))).toEqual([Buffer.from(rqst).toString("hex")])
  })
})
