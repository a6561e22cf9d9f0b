/**
 * The sending side of the engine, driven directly (no network): sequencing, holdback packing,
 * segmenting, the retransmission cache and its bounds, NAK answers, heartbeats, the token bucket,
 * close and loopback filtering. Outputs are inspected by decoding what the endpoint sent.
 */
import { describe, expect, it } from "@effect/vitest"
import { Endpoint } from "../src/internal/protocol/endpoint.js"
import type { EngineConfig } from "../src/internal/protocol/engine.js"
import {
  type DataPacket,
  Fragment,
  type HeartbeatPacket,
  type Packet,
  PacketKind
} from "../src/internal/protocol/packets.js"
import { decode, encodeNak, isDecodeFailure, makeSourcePrefix } from "../src/internal/protocol/wire.js"
import { Prng } from "../src/internal/sim/index.js"
import { MiB, payloadFor, type Recorder, recorder, testConfig } from "./engine.harness.js"

const make = (overrides: Partial<EngineConfig> = {}, seed = "sender") => {
  const prng = new Prng(seed)
  const sink = recorder()
  const endpoint = new Endpoint({
    config: testConfig(overrides),
    sink,
    random: () => prng.next(),
    newSessionId: () => prng.bigint64(),
    now: 0
  })
  return { endpoint, sink }
}

const decodeAll = (datagrams: ReadonlyArray<Uint8Array>): Array<Packet> =>
  datagrams.map((d) => {
    const p = decode(d)
    if (isDecodeFailure(p)) throw new Error(`sent an undecodable datagram: ${p.reason} ${p.detail}`)
    return p
  })

const dataPackets = (sink: Recorder): Array<DataPacket> =>
  decodeAll(sink.sent).filter((p): p is DataPacket => p.kind === PacketKind.Data)

const updatesIn = (p: DataPacket): number => (p.body.fragment === Fragment.None ? p.body.updates.length : 0)

/** A NAK from a foreign receiver (`from`: its session id) for `target`. */
const nakFrom = (
  target: bigint,
  ranges: ReadonlyArray<{ first: number; last: number }>,
  from = 0xabcdefn
): Uint8Array =>
  encodeNak(makeSourcePrefix({ sessionId: from, senderIndex: 0xffff, host: "other", application: "x" }), target, ranges)

/** Runs every timer up to `until`. */
const advance = (endpoint: Endpoint, until: number): void => {
  for (let guard = 0; guard < 100_000; guard++) {
    const d = endpoint.nextDeadline()
    if (!(d <= until)) return
    endpoint.onTimer(d)
  }
  throw new Error("timer loop did not settle")
}

describe("engine sender", () => {
  it("openSender announces a new session; sender indices count 0, 1, 2", () => {
    const { endpoint, sink } = make()
    const a = endpoint.openSender(0)
    const b = endpoint.openSender(0)
    const c = endpoint.openSender(0)
    expect([a, b, c].map((s) => s.session.senderIndex)).toEqual([0, 1, 2])
    expect(new Set([a, b, c].map((s) => s.session.sessionId)).size).toBe(3)
    expect(a.session.sessionIdHex).toMatch(/^[0-9a-f]{16}$/)
    expect(a.session.address).toBe("local")
    const packets = decodeAll(sink.sent)
    expect(packets.map((p) => p.kind)).toEqual([PacketKind.Announce, PacketKind.Announce, PacketKind.Announce])
    expect(packets.map((p) => (p.kind === PacketKind.Announce ? p.highestSeq : -1))).toEqual([0, 0, 0])
  })

  it("publish delivers locally at once, in order, with the local session as source", () => {
    const { endpoint, sink } = make()
    const s = endpoint.openSender(0)
    for (let i = 0; i < 5; i++) expect(endpoint.publish(s, `/local/${i}`, payloadFor(i, 10), 1)).toBe("ok")
    expect(sink.updates.map((u) => u.topic)).toEqual(["/local/0", "/local/1", "/local/2", "/local/3", "/local/4"])
    expect(sink.updates.every((u) => u.source === s.session && u.sequence === 1)).toBe(true)
    expect(endpoint.stats.updatesOut).toBe(5)
  })

  describe("holdback", () => {
    it("an idle publisher's update leaves inside the publish call: zero added delay", () => {
      const { endpoint, sink } = make()
      const s = endpoint.openSender(0)
      for (const t of [10, 1010, 2010]) {
        const before = sink.sent.length
        endpoint.publish(s, "/idle", payloadFor(t, 64), t)
        endpoint.endBatch(s, t)
        const sent = dataPackets(sink).slice(-1)
        expect(sink.sent.length).toBe(before + 1)
        expect(updatesIn(sent[0])).toBe(1)
      }
    })

    it("a burst of 1 000 64-byte updates in one batch leaves packed (≥ 15 per 1 400-byte datagram)", () => {
      const { endpoint, sink } = make()
      const s = endpoint.openSender(0)
      for (let i = 0; i < 1000; i++) endpoint.publish(s, "/burst/a", payloadFor(i, 64), 5)
      endpoint.endBatch(s, 5)
      // Full segments left during the batch; the partly filled last one follows within holdbackDelayMs.
      const inCall = dataPackets(sink).length
      advance(endpoint, 7)
      const data = dataPackets(sink)
      expect(data.length).toBeLessThanOrEqual(inCall + 1)
      const total = data.reduce((a, p) => a + updatesIn(p), 0)
      expect(total).toBe(1000)
      expect(1000 / data.length).toBeGreaterThanOrEqual(15)
      for (const d of sink.sent) expect(d.length).toBeLessThanOrEqual(1400)
    })

    it("1 000 separate publish calls 10 µs apart leave packed, the last within holdbackDelayMs", () => {
      const { endpoint, sink } = make()
      const s = endpoint.openSender(0)
      let t = 100
      for (let i = 0; i < 1000; i++) {
        endpoint.publish(s, "/burst/b", payloadFor(i, 64), t)
        endpoint.endBatch(s, t)
        advance(endpoint, t)
        t += 0.01
      }
      // The first update of the burst left at once (the publisher was idle).
      expect(updatesIn(dataPackets(sink)[0])).toBe(1)
      advance(endpoint, t + 2)
      const data = dataPackets(sink)
      expect(data.reduce((a, p) => a + updatesIn(p), 0)).toBe(1000)
      const perDatagram = 1000 / data.length
      console.log(`holdback: ${data.length} datagrams for 1000 updates (${perDatagram.toFixed(1)} per datagram)`)
      expect(perDatagram).toBeGreaterThanOrEqual(15)
    })

    it("a held segment leaves holdbackDelayMs after its first update (timer), not later", () => {
      const { endpoint, sink } = make({ holdbackDelayMs: 3 })
      const s = endpoint.openSender(0)
      // Make the rate high: 200 updates within 10 ms (2 000/s over the 100 ms window).
      for (let i = 0; i < 200; i++) {
        endpoint.publish(s, "/h", payloadFor(i, 8), i * 0.05)
        endpoint.endBatch(s, i * 0.05)
        advance(endpoint, i * 0.05)
      }
      advance(endpoint, 20)
      // After a pause the first update leaves at once; the next, 0.5 ms later, is held.
      endpoint.publish(s, "/h", payloadFor(98, 8), 20)
      endpoint.endBatch(s, 20)
      const sentBefore = sink.sent.length
      endpoint.publish(s, "/h", payloadFor(99, 8), 20.5)
      endpoint.endBatch(s, 20.5)
      // Still a high rate: held back, the deadline is first-update time + 3 ms.
      expect(sink.sent.length).toBe(sentBefore)
      expect(endpoint.nextDeadline()).toBe(23.5)
      endpoint.onTimer(23.5)
      expect(sink.sent.length).toBe(sentBefore + 1)
      expect(endpoint.flush).toBeDefined()
    })

    it("bursts further apart than holdbackDelayMs leave whole with their call; closer ones share segments", () => {
      const apart = make()
      const s = apart.endpoint.openSender(0)
      // publishAll-like bursts of 100 × 64 B every 5 ms (20 000 updates/s): packed within the
      // burst, and its partly filled last segment leaves with it rather than alone 2 ms later.
      for (let b = 0; b < 50; b++) {
        const t = 10 + b * 5
        for (let i = 0; i < 100; i++) apart.endpoint.publish(s, "/apart", payloadFor(i, 64), t)
        apart.endpoint.endBatch(s, t)
        expect(dataPackets(apart.sink).reduce((a, p) => a + updatesIn(p), 0)).toBe((b + 1) * 100)
        advance(apart.endpoint, t + 4)
      }
      // Bursts of 5 every millisecond: the tail waits for the next burst and they share segments.
      const close = make()
      const c = close.endpoint.openSender(0)
      for (let b = 0; b < 100; b++) {
        const t = 10 + b
        for (let i = 0; i < 5; i++) close.endpoint.publish(c, "/close", payloadFor(i, 64), t)
        close.endpoint.endBatch(c, t)
        advance(close.endpoint, t)
      }
      advance(close.endpoint, 200)
      const data = dataPackets(close.sink)
      expect(data.reduce((a, p) => a + updatesIn(p), 0)).toBe(500)
      // A held segment leaves 2 ms after its first update: about two bursts per datagram.
      expect(data.length).toBeLessThanOrEqual(60)
    })

    it("a publisher paced at 1 000/s on a millisecond clock is never held back, even with two calls in one ms", () => {
      const { endpoint, sink } = make()
      const s = endpoint.openSender(0)
      // 1 000 calls over ~1 s of integer timestamps; every fourth call catches up in the same ms.
      let t = 100
      for (let i = 0; i < 1000; i++) {
        if (i % 4 !== 3) t += i % 4 === 2 ? 2 : 1
        endpoint.publish(s, "/paced", payloadFor(i, 64), t)
        endpoint.endBatch(s, t)
        // Left inside the call: no added latency.
        expect(dataPackets(sink).length).toBe(i + 1)
      }
    })

    it("flush sends what is held back; holdbackDelayMs = 0 never holds", () => {
      const { endpoint, sink } = make()
      const s = endpoint.openSender(0)
      // Three calls in the same millisecond: the third is held back (two zero gaps in a row).
      for (let i = 1; i <= 3; i++) {
        endpoint.publish(s, "/f", payloadFor(i, 8), 1)
        endpoint.endBatch(s, 1)
      }
      expect(dataPackets(sink).length).toBe(2)
      const n = sink.sent.length
      endpoint.flush(s, 1)
      expect(sink.sent.length).toBe(n + 1)

      const zero = make({ holdbackDelayMs: 0 })
      const z = zero.endpoint.openSender(0)
      for (let i = 0; i < 20; i++) {
        zero.endpoint.publish(z, "/z", payloadFor(i, 8), 1)
        zero.endpoint.endBatch(z, 1)
      }
      expect(dataPackets(zero.sink).length).toBe(20)
    })
  })

  describe("segmenting", () => {
    it("an update larger than a segment becomes First/Middle…/Last fragments with consecutive seqs, after the open segment", () => {
      const { endpoint, sink } = make()
      const s = endpoint.openSender(0)
      endpoint.publish(s, "/small", payloadFor(1, 10), 1)
      const big = payloadFor(2, 10_000)
      endpoint.publish(s, "/large/topic", big, 1)
      endpoint.endBatch(s, 1)
      const data = dataPackets(sink)
      expect(data[0].seq).toBe(1)
      expect(data[0].body.fragment).toBe(Fragment.None)
      const frags = data.slice(1)
      expect(frags.map((p) => p.seq)).toEqual(frags.map((_, i) => i + 2))
      expect(frags.map((p) => p.body.fragment)).toEqual([
        Fragment.First,
        ...Array(frags.length - 2).fill(Fragment.Middle),
        Fragment.Last
      ])
      const first = frags[0].body
      expect(first.fragment === Fragment.First && first.topic === "/large/topic" && first.totalLength === 10_000).toBe(
        true
      )
      const joined = Buffer.concat(
        frags.map((p) => (p.body.fragment === Fragment.None ? Buffer.alloc(0) : p.body.chunk))
      )
      expect(Buffer.compare(joined, big)).toBe(0)
      for (const d of sink.sent) expect(d.length).toBeLessThanOrEqual(1400)
      expect(sink.updates[1].sequence).toBe(frags[frags.length - 1].seq)
    })

    it("too large → 'too-large' and nothing sent; a closed sender → 'closed'", () => {
      const { endpoint, sink } = make({ maxUpdateSize: 1000 })
      const s = endpoint.openSender(0)
      const n = sink.sent.length
      expect(endpoint.publish(s, "/x", new Uint8Array(1001), 1)).toBe("too-large")
      expect(sink.sent.length).toBe(n)
      expect(sink.updates).toEqual([])
      expect(endpoint.publish(s, "/x", new Uint8Array(1000), 1)).toBe("ok")
      endpoint.closeSender(s, 2)
      expect(endpoint.publish(s, "/x", new Uint8Array(1), 3)).toBe("closed")
      const last = decodeAll(sink.sent).pop()!
      expect(last.kind === PacketKind.Goodbye && last.highestSeq).toBe(1)
    })
  })

  describe("retransmission cache and NAK answers", () => {
    const setup = (overrides: Partial<EngineConfig> = {}) => {
      const m = make(overrides)
      const s = m.endpoint.openSender(0)
      // 5 ms apart (200/s, below the threshold): one segment per update.
      for (let i = 0; i < 10; i++) {
        m.endpoint.publish(s, "/c", payloadFor(i, 1300), i * 5)
        m.endpoint.endBatch(s, i * 5)
      }
      expect(s.highestSeq).toBe(10)
      m.sink.sent.length = 0
      return { ...m, s }
    }

    it("retransmits requested cached segments once per holdoff, flagged; ignores seqs above the highest", () => {
      const { endpoint, sink, s } = setup()
      endpoint.onDatagram(
        nakFrom(s.session.sessionId, [
          { first: 3, last: 4 },
          { first: 9, last: 50 }
        ]),
        "x",
        60
      )
      let sent = decodeAll(sink.sent) as Array<DataPacket>
      // 11..50 were never sent: answered with a heartbeat naming the true highest (10), so
      // receivers drop a gap a forged claim made them expect.
      expect(
        sent.map((p) => [p.kind, p.kind === PacketKind.Data ? p.seq : (p as unknown as HeartbeatPacket).highestSeq])
      ).toEqual([
        [PacketKind.Data, 3],
        [PacketKind.Data, 4],
        [PacketKind.Data, 9],
        [PacketKind.Data, 10],
        [PacketKind.Heartbeat, 10]
      ])
      expect(sent.slice(0, 4).every((p) => p.retransmission)).toBe(true)
      // A second NAK inside retransmitHoldoffMs (10 ms) is coalesced; after it, served again.
      sink.sent.length = 0
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 3, last: 3 }]), "x", 65)
      expect(sink.sent.length).toBe(0)
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 3, last: 3 }]), "x", 71)
      sent = decodeAll(sink.sent) as Array<DataPacket>
      expect(sent.map((p) => p.seq)).toEqual([3])
      expect(endpoint.stats.naksReceived).toBe(3)
      expect(endpoint.stats.retransmissionsSent).toBe(5)
      // A hostile NAK for far-future seqs only.
      sink.sent.length = 0
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 11, last: 2 ** 53 - 1 }]), "x", 80)
      expect(decodeAll(sink.sent).map((p) => p.kind)).toEqual([PacketKind.Heartbeat])
      // Repeated inside the holdoff: no further answer.
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 11, last: 2 ** 53 - 1 }]), "x", 81)
      expect(sink.sent.length).toBe(1)
    })

    it("NAKs for other sessions are not answered", () => {
      const { endpoint, sink, s } = setup()
      endpoint.onDatagram(nakFrom(s.session.sessionId + 1n, [{ first: 1, last: 10 }]), "x", 60)
      expect(sink.sent.length).toBe(0)
      expect(endpoint.stats.naksReceived).toBe(0)
    })

    it("evicted segments are answered with one Lost packet; repeats inside the holdoff are coalesced", () => {
      const { endpoint, sink, s } = setup({ cacheMaxBytes: 4 * 1400 })
      const cached = endpoint.localSenders()[0]
      expect(cached.cachedSegments).toBe(4)
      expect(cached.cachedBytes).toBeLessThanOrEqual(4 * 1400)
      endpoint.onDatagram(
        nakFrom(s.session.sessionId, [
          { first: 2, last: 3 },
          { first: 5, last: 8 }
        ]),
        "x",
        60
      )
      const sent = decodeAll(sink.sent)
      expect(sent.map((p) => p.kind)).toEqual([PacketKind.Data, PacketKind.Data, PacketKind.Lost])
      expect(sent.slice(0, 2).map((p) => (p as DataPacket).seq)).toEqual([7, 8])
      // Segments 1..6 are evicted: one range covers all that was asked for below the oldest cached.
      const lost = sent[2]
      expect(lost.kind === PacketKind.Lost && lost.ranges).toEqual([{ first: 2, last: 6 }])
      sink.sent.length = 0
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 4, last: 4 }]), "x", 65)
      expect(sink.sent.length).toBe(0)
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 4, last: 4 }]), "x", 71)
      expect(decodeAll(sink.sent).map((p) => p.kind)).toEqual([PacketKind.Lost])
      expect(endpoint.stats.lostPacketsSent).toBe(2)
    })

    it("the byte bound holds after every publish, large and small", () => {
      const bound = 50_000
      const { endpoint } = make({ cacheMaxBytes: bound })
      const s = endpoint.openSender(0)
      const prng = new Prng("cache-bound")
      for (let i = 0; i < 500; i++) {
        endpoint.publish(s, "/b", payloadFor(i, prng.chance(0.1) ? prng.int(100_000) : prng.int(2000)), i)
        endpoint.endBatch(s, i)
        expect(endpoint.localSenders()[0].cachedBytes).toBeLessThanOrEqual(bound)
      }
      expect(s.cachedBytesPeak).toBeLessThanOrEqual(bound)
      expect(s.cachedBytesPeak).toBeGreaterThan(bound - 1400)
    })

    it("the age bound empties the cache on the timer; heartbeats then carry oldestCached 0", () => {
      const { endpoint, sink, s } = setup({ cacheMaxAgeMs: 500 })
      advance(endpoint, 522)
      // Sent at 0, 5, …, 45: those sent at ≤ 22 ms (seqs 1..5) are older than 500 ms.
      expect(endpoint.localSenders()[0].cachedSegments).toBe(5)
      advance(endpoint, 2000)
      expect(endpoint.localSenders()[0].cachedSegments).toBe(0)
      const hb = decodeAll(sink.sent)
        .filter((p) => p.kind === PacketKind.Heartbeat)
        .pop()!
      expect(hb.kind === PacketKind.Heartbeat && [hb.highestSeq, hb.oldestCached]).toEqual([10, 0])
      sink.sent.length = 0
      endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 10, last: 10 }]), "x", 2001)
      const lost = decodeAll(sink.sent)
      expect(lost.map((p) => p.kind === PacketKind.Lost && p.ranges)).toEqual([[{ first: 10, last: 10 }]])
    })
  })

  it("heartbeats: first 2·max(nakBackoff, holdback) after the last data, doubling up to heartbeatIntervalMs", () => {
    const { endpoint, sink } = make({ heartbeatIntervalMs: 500 })
    const s = endpoint.openSender(0)
    endpoint.publish(s, "/hb", payloadFor(1, 10), 100)
    endpoint.endBatch(s, 100)
    sink.sent.length = 0
    const times: Array<number> = []
    for (let guard = 0; guard < 100; guard++) {
      const d = endpoint.nextDeadline()
      if (d > 3000) break
      endpoint.onTimer(d)
      if (sink.sent.length > times.length) times.push(d)
    }
    expect(times).toEqual([120, 160, 240, 400, 720, 1220, 1720, 2220, 2720])
    const hbs = decodeAll(sink.sent)
    for (const p of hbs) expect(p.kind === PacketKind.Heartbeat && [p.highestSeq, p.oldestCached]).toEqual([1, 1])
    // New data restarts the fast schedule.
    endpoint.publish(s, "/hb", payloadFor(2, 10), 3000)
    endpoint.endBatch(s, 3000)
    expect(endpoint.nextDeadline()).toBe(3020)
  })

  it("fresh flag: announce, data and heartbeats until freshWindowMs after the first data segment", () => {
    // testConfig: freshWindowMs = max(1000, 2 · heartbeatIntervalMs 1000) = 2000.
    const { endpoint, sink } = make()
    const s = endpoint.openSender(0)
    advance(endpoint, 3000) // idle: Announce + heartbeats, all fresh (no data yet, nothing to lose)
    const idle = decodeAll(sink.sent)
    expect(idle.map((p) => p.kind)).toEqual([
      PacketKind.Announce,
      PacketKind.Heartbeat,
      PacketKind.Heartbeat,
      PacketKind.Heartbeat
    ])
    expect(idle.every((p) => (p.kind === PacketKind.Announce || p.kind === PacketKind.Heartbeat) && p.fresh)).toBe(true)
    sink.sent.length = 0
    // First data at 3000: the window runs to 5000.
    for (const t of [3000, 4000, 4999, 5000, 6000]) {
      advance(endpoint, t)
      endpoint.publish(s, "/f", payloadFor(t, 10), t)
      endpoint.endBatch(s, t)
    }
    advance(endpoint, 8000)
    const sent = decodeAll(sink.sent)
    expect(dataPackets(sink).map((p) => [p.seq, p.fresh])).toEqual([
      [1, true],
      [2, true],
      [3, true],
      [4, false],
      [5, false]
    ])
    const heartbeats = sent.filter((p) => p.kind === PacketKind.Heartbeat)
    expect(heartbeats.length).toBeGreaterThan(4)
    // Every packet before 5000 is marked, nothing after: the flag follows the send order.
    const flags = sent.map((p) => (p.kind === PacketKind.Data || p.kind === PacketKind.Heartbeat ? p.fresh : null))
    const firstUnmarked = flags.indexOf(false)
    expect(flags.slice(0, firstUnmarked).every((f) => f === true)).toBe(true)
    expect(flags.slice(firstUnmarked).every((f) => f === false)).toBe(true)
    expect(sent[firstUnmarked].kind === PacketKind.Data && sent[firstUnmarked].seq).toBe(4)
    // A retransmission keeps the flag of the original; the Goodbye never carries it.
    sink.sent.length = 0
    endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 1, last: 5 }]), "x", 8000)
    endpoint.closeSender(s, 8001)
    expect(
      decodeAll(sink.sent).map((p) => (p.kind === PacketKind.Data ? [p.seq, p.retransmission, p.fresh] : p.kind))
    ).toEqual([
      [1, true, true],
      [2, true, true],
      [3, true, true],
      [4, true, false],
      [5, true, false],
      PacketKind.Goodbye
    ])
  })

  it("token bucket: datagrams always go out, publishDelay reports the debt", () => {
    const { endpoint, sink } = make({ maxBandwidth: 1_000_000 })
    const s = endpoint.openSender(0)
    expect(endpoint.publishDelay(s, 0)).toBe(0)
    const before = sink.sent.length
    endpoint.publish(s, "/rate", payloadFor(1, 300_000), 0)
    endpoint.endBatch(s, 0)
    expect(sink.sent.length).toBeGreaterThan(before + 200)
    // ~300 KB against a 64 KiB burst at 1 MB/s: about 240 ms of debt.
    const delay = endpoint.publishDelay(s, 0)
    expect(delay).toBeGreaterThan(200)
    expect(delay).toBeLessThan(260)
    expect(endpoint.publishDelay(s, delay / 2)).toBeGreaterThan(0)
    expect(endpoint.publishDelay(s, delay)).toBe(0)
    expect(make().endpoint.publishDelay(s, 0)).toBe(0)
  })

  it("close flushes what is held back, says goodbye, answers NAKs during the linger, then nothing", () => {
    const { endpoint, sink } = make()
    const s = endpoint.openSender(0)
    for (let i = 1; i <= 3; i++) {
      endpoint.publish(s, "/c", payloadFor(i, 8), 1)
      endpoint.endBatch(s, 1) // the third is held back (three publishes in the same ms)
    }
    sink.sent.length = 0
    endpoint.closeSender(s, 1)
    const sent = decodeAll(sink.sent)
    expect(sent.map((p) => p.kind)).toEqual([PacketKind.Data, PacketKind.Goodbye])
    expect(sent[1].kind === PacketKind.Goodbye && sent[1].highestSeq).toBe(3)
    // Linger = nakBackoffMs + (nakMaxRetries + 1) · nakRetryIntervalMs = 10 + 11 · 50 = 560 ms.
    sink.sent.length = 0
    endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 2, last: 2 }]), "x", 300)
    expect(decodeAll(sink.sent).map((p) => p.kind)).toEqual([PacketKind.Data])
    advance(endpoint, 600)
    const repeats = decodeAll(sink.sent).slice(1)
    expect(repeats.length).toBeGreaterThan(2)
    expect(repeats.every((p) => p.kind === PacketKind.Goodbye)).toBe(true)
    expect(endpoint.localSenders()).toEqual([])
    sink.sent.length = 0
    endpoint.onDatagram(nakFrom(s.session.sessionId, [{ first: 2, last: 2 }]), "x", 700)
    expect(sink.sent.length).toBe(0)
    expect(endpoint.nextDeadline()).toBe(Number.POSITIVE_INFINITY)
  })

  it("Endpoint.close closes every sender and goes quiet", () => {
    const { endpoint, sink } = make()
    const a = endpoint.openSender(0)
    const b = endpoint.openSender(0)
    endpoint.publish(a, "/a", payloadFor(1, 8), 1)
    endpoint.publish(b, "/b", payloadFor(2, 8), 1)
    sink.sent.length = 0
    endpoint.close(2)
    expect(decodeAll(sink.sent).map((p) => p.kind)).toEqual([
      PacketKind.Data,
      PacketKind.Goodbye,
      PacketKind.Data,
      PacketKind.Goodbye
    ])
    expect(endpoint.nextDeadline()).toBe(Number.POSITIVE_INFINITY)
    expect(endpoint.publish(a, "/a", payloadFor(1, 8), 3)).toBe("closed")
  })

  it("its own datagrams coming back over multicast loopback are ignored (incl. its NAKs)", () => {
    const { endpoint, sink } = make()
    const s = endpoint.openSender(0)
    for (let i = 0; i < 5; i++) {
      endpoint.publish(s, "/loop", payloadFor(i, 3000), i)
      endpoint.endBatch(s, i)
    }
    advance(endpoint, 100)
    const own = sink.sent.slice()
    const delivered = sink.updates.length
    for (const d of own) endpoint.onDatagram(d, "127.0.0.1:5197", 200)
    expect(sink.events).toEqual([])
    expect(sink.updates.length).toBe(delivered)
    expect(endpoint.remoteSessions()).toEqual([])
    expect(endpoint.stats.decodeErrors).toBe(0)
  })

  it("supports a 64 MiB update with the default 1 400-byte segments", () => {
    const { endpoint, sink } = make({ cacheMaxBytes: 4 * MiB })
    const s = endpoint.openSender(0)
    const payload = new Uint8Array(64 * MiB)
    payload[64 * MiB - 1] = 7
    expect(endpoint.publish(s, "/huge", payload, 1)).toBe("ok")
    expect(s.highestSeq).toBeGreaterThan(48_000)
    expect(s.cachedBytes).toBeLessThanOrEqual(4 * MiB)
    const last = decode(sink.sent[sink.sent.length - 1]) as DataPacket
    expect(last.body.fragment).toBe(Fragment.Last)
    expect(last.seq).toBe(s.highestSeq)
  })
})

describe("local delivery", () => {
  it("publishes reach the sink's deliver only while it has local subscribers; the datagrams are the same", () => {
    const { endpoint, sink } = make()
    let subscribers = false
    const counted = Object.assign(sink, { hasLocalSubscribers: () => subscribers })
    const sender = endpoint.openSender(0)
    endpoint.publish(sender, "/a", payloadFor(1, 10), 0)
    endpoint.endBatch(sender, 0)
    expect(counted.updates).toHaveLength(0)
    subscribers = true
    endpoint.publish(sender, "/a", payloadFor(2, 10), 1)
    endpoint.endBatch(sender, 1)
    expect(counted.updates.map((u) => u.sequence)).toEqual([dataPackets(sink)[1].seq])
    // Both publishes left as data, subscribers or not.
    expect(dataPackets(sink).map((p) => p.body.fragment === 0 && p.body.updates.length)).toEqual([1, 1])
  })
})

describe("engine sender reusing evicted memory (reuseSendMemory)", () => {
  /**
   * Publishes with a recycle after each drive, into a 700 KiB cache (more than two 256 KiB
   * slabs): single updates (every third fragmented) and, every tenth drive, a burst of 80
   * fragmented ones (beyond the cache) in one drive. The sink is a socket that reads its datagrams
   * at flush (as the native backend copies them into its stage then): each must still hold the
   * bytes it had when it was sent; and after every flush every datagram still cached must too.
   */
  const run = (reuse: boolean) => {
    const prng = new Prng("reuse")
    const original = new Map<number, Uint8Array>()
    // The buffer each datagram was carved from, and the first sequence carved from each buffer.
    const bufferOf = new Map<number, ArrayBufferLike>()
    const firstSeqOf = new Map<ArrayBufferLike, number>()
    const viewOf = new Map<number, Uint8Array>()
    let cacheChecks = 0
    let pending: Array<{ readonly view: Uint8Array; readonly copy: Uint8Array }> = []
    const sink = recorder((view) => pending.push({ view, copy: Uint8Array.from(view) }))
    const endpoint = new Endpoint({
      config: testConfig({ reuseSendMemory: reuse, cacheMaxBytes: 700 * 1024, flowControl: "none" }),
      sink,
      random: () => prng.next(),
      newSessionId: () => prng.bigint64(),
      now: 0
    })
    const flush = () => {
      for (const { view, copy } of pending) {
        expect(Buffer.compare(view, copy)).toBe(0)
        const p = decode(copy)
        if (isDecodeFailure(p) || p.kind !== PacketKind.Data || p.retransmission) continue
        original.set(p.seq, copy)
        viewOf.set(p.seq, view)
        bufferOf.set(p.seq, view.buffer)
        if (!firstSeqOf.has(view.buffer)) firstSeqOf.set(view.buffer, p.seq)
      }
      pending = []
      endpoint.afterFlush()
      // The cache keeps what it holds intact (the views it holds are the ones sent).
      if (s.cachedSegments > 0) {
        let changed = 0
        for (let seq = s.oldestCached; seq <= s.highestSeq; seq++, cacheChecks++) {
          if (Buffer.compare(viewOf.get(seq)!, original.get(seq)!) !== 0) changed++
        }
        expect(changed).toBe(0)
      }
    }
    const s = endpoint.openSender(0)
    let t = 1
    let id = 0
    for (let drive = 0; drive < 200; drive++) {
      const burst = drive % 10 === 9 ? 80 : 1
      for (let k = 0; k < burst; k++, id++) {
        const size = burst > 1 || id % 3 === 0 ? 20_000 : 100
        expect(endpoint.publish(s, "/reuse/x", payloadFor(id, size), t)).toBe("ok")
      }
      endpoint.endBatch(s, t)
      flush()
      t++
    }
    const buffers = new Set<ArrayBufferLike>()
    for (const d of sink.sent) buffers.add(d.buffer)
    expect(cacheChecks).toBeGreaterThan(50_000)
    return {
      endpoint,
      sink,
      s,
      original,
      bufferOf,
      firstSeqOf,
      t,
      buffers: buffers.size,
      flush,
      pending: () => pending
    }
  }

  it("carves evicted memory again, never while a socket or the cache still holds it", () => {
    const reused = run(true)
    const fresh = run(false)
    // The same datagrams either way; far fewer slabs when evicted ones come back.
    expect(reused.original.size).toBe(fresh.original.size)
    expect(reused.original.size).toBeGreaterThan(10_000)
    expect(reused.buffers * 3).toBeLessThan(fresh.buffers)
    // NAK every sequence, a window at a time: what is still cached comes back byte for byte (but
    // for the retransmission flag), what was evicted is reported Lost.
    const { endpoint, sink, s, original, bufferOf, firstSeqOf } = reused
    let t = reused.t + 100
    let retransmitted = 0
    let fromReused = 0
    const highest = s.highestSeq
    // Every cached sequence, 20 at a time, each from another receiver and 100 ms apart (within
    // the retransmission allowances).
    for (let first = s.oldestCached - 40, from = 1n; first <= highest; first += 20, from++) {
      sink.sent.length = 0
      const nak = nakFrom(s.session.sessionId, [{ first, last: Math.min(highest, first + 19) }], from)
      endpoint.onDatagram(nak, `10.0.0.${from}:9`, t)
      t += 100
      for (const d of reused.pending().map((x) => x.copy)) {
        const p = decode(d)
        if (isDecodeFailure(p) || p.kind !== PacketKind.Data) continue
        expect(p.retransmission).toBe(true)
        const copy = Uint8Array.from(d)
        copy[4] = original.get(p.seq)![4] // the flags byte: the retransmission bit
        expect(Buffer.compare(copy, original.get(p.seq)!)).toBe(0)
        retransmitted++
        if (firstSeqOf.get(bufferOf.get(p.seq)!)! < s.oldestCached) fromReused++
      }
      reused.flush()
    }
    // Answered in part (one requester's NAK allowance), every answer intact, among them datagrams
    // carved from memory that had carried an evicted datagram before.
    expect(retransmitted).toBe(s.cachedSegments)
    expect(endpoint.stats.retransmissionsSent).toBe(retransmitted)
    expect(fromReused).toBeGreaterThan(0)
  })
})
