/**
 * The receiving side of the engine, driven directly with hand-made datagrams: synchronisation,
 * reorder and duplicates, NAK timing, retries and suppression, Lost / heartbeat / goodbye handling,
 * reassembly failures, restarts, hostile and malformed input.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { Endpoint } from "../src/internal/protocol/endpoint.js"
import { closeGraceMs, type EngineConfig } from "../src/internal/protocol/engine.js"
import {
  Fragment,
  type NakPacket,
  type Packet,
  PacketKind,
  type SeqRange,
  type Source
} from "../src/internal/protocol/packets.js"
import { decode, encodePacket, isDecodeFailure } from "../src/internal/protocol/wire.js"
import { Prng } from "../src/internal/sim/index.js"
import { type Recorder, recorder, testConfig } from "./engine.harness.js"

const make = (overrides: Partial<EngineConfig> = {}, seed = "receiver") => {
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

/** A remote session crafting its datagrams. */
class Remote {
  readonly source: Source
  /** Sets the fresh flag on the Data, Heartbeat and Announce packets crafted from now on. */
  fresh = false
  constructor(sessionId: bigint, senderIndex = 0, host = "remote-host", application = "remote-app") {
    this.source = { sessionId, senderIndex, host, application }
  }
  data(seq: number, topics: ReadonlyArray<string> = [`/s/${seq}`], retransmission = false): Uint8Array {
    return encodePacket({
      kind: PacketKind.Data,
      source: this.source,
      retransmission,
      fresh: this.fresh,
      seq,
      body: { fragment: Fragment.None, updates: topics.map((topic) => ({ topic, payload: Uint8Array.of(seq & 0xff) })) }
    })
  }
  first(seq: number, totalLength: number, chunk: Uint8Array, topic = "/frag"): Uint8Array {
    return encodePacket({
      kind: PacketKind.Data,
      source: this.source,
      retransmission: false,
      fresh: this.fresh,
      seq,
      body: { fragment: Fragment.First, topic, totalLength, chunk }
    })
  }
  cont(seq: number, fragment: 2 | 3, chunk: Uint8Array): Uint8Array {
    return encodePacket({
      kind: PacketKind.Data,
      source: this.source,
      retransmission: false,
      fresh: this.fresh,
      seq,
      body: { fragment, chunk }
    })
  }
  heartbeat(highestSeq: number, oldestCached: number): Uint8Array {
    return encodePacket({
      kind: PacketKind.Heartbeat,
      source: this.source,
      highestSeq,
      oldestCached,
      fresh: this.fresh
    })
  }
  announce(highestSeq = 0): Uint8Array {
    return encodePacket({
      kind: PacketKind.Announce,
      source: this.source,
      highestSeq,
      startedAt: 0,
      fresh: this.fresh
    })
  }
  goodbye(highestSeq: number): Uint8Array {
    return encodePacket({ kind: PacketKind.Goodbye, source: this.source, highestSeq })
  }
  lost(ranges: ReadonlyArray<SeqRange>): Uint8Array {
    return encodePacket({ kind: PacketKind.Lost, source: this.source, ranges })
  }
  /** A NAK sent by this (receiver) session for `target`. */
  nak(target: bigint, ranges: ReadonlyArray<SeqRange>): Uint8Array {
    return encodePacket({ kind: PacketKind.Nak, source: this.source, target, ranges })
  }
}

const sentNaks = (sink: Recorder): Array<NakPacket> =>
  sink.sent.map((d) => decode(d) as Packet).filter((p): p is NakPacket => p.kind === PacketKind.Nak)

/** Runs every timer up to `until`; returns the times timers fired. */
const advance = (endpoint: Endpoint, until: number): Array<number> => {
  const fired: Array<number> = []
  for (let guard = 0; guard < 100_000; guard++) {
    const d = endpoint.nextDeadline()
    if (!(d <= until)) return fired
    endpoint.onTimer(d)
    fired.push(d)
  }
  throw new Error("timer loop did not settle")
}

const seqs = (sink: Recorder) => sink.updates.map((u) => u.sequence)
const losses = (sink: Recorder) => sink.losses.map((l) => [l.firstSeq, l.lastSeq, l.reason])
/** Loss reports with contiguous ranges of the same reason merged (reports are emitted per input). */
const mergedLosses = (sink: Recorder) => {
  const out: Array<[number, number, string]> = []
  for (const l of sink.losses) {
    const prev = out[out.length - 1]
    if (prev !== undefined && prev[1] + 1 === l.firstSeq && prev[2] === l.reason) prev[1] = l.lastSeq
    else out.push([l.firstSeq, l.lastSeq, l.reason])
  }
  return out
}

const A = new Remote(0x1111_2222_3333_4444n)

describe("engine receiver", () => {
  describe("synchronisation", () => {
    it("syncs on the first live data packet and never NAKs earlier history", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.data(100), "10.0.0.1:5197", 0)
      endpoint.onDatagram(A.data(101), "10.0.0.1:5197", 1)
      advance(endpoint, 5000)
      expect(seqs(sink)).toEqual([100, 101])
      expect(sink.events).toEqual([{ _tag: "Joined", session: sink.updates[0].source }])
      expect(sink.updates[0].source.address).toBe("10.0.0.1:5197")
      expect(sink.updates[0].source.sessionIdHex).toBe("1111222233334444")
      expect(sentNaks(sink)).toEqual([])
    })

    it("synced on a Middle fragment: skips to the next update start, reports nothing before it", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.cont(50, 2, new Uint8Array(10)), "a", 0)
      endpoint.onDatagram(A.cont(52, 3, new Uint8Array(10)), "a", 0)
      endpoint.onDatagram(A.data(53), "a", 0)
      advance(endpoint, 30)
      // 51 (the missing middle of the pre-sync update) is NAKed and, once back, skipped silently.
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 51, last: 51 }]])
      endpoint.onDatagram(A.cont(51, 2, new Uint8Array(10)), "a", 31)
      expect(seqs(sink)).toEqual([53])
      expect(sink.losses).toEqual([])
    })

    it("synced on a Middle fragment whose successor is lost for good: reported conservatively", () => {
      const { endpoint, sink } = make({ nakMaxRetries: 0 })
      endpoint.onDatagram(A.cont(50, 2, new Uint8Array(10)), "a", 0)
      endpoint.onDatagram(A.cont(52, 3, new Uint8Array(10)), "a", 0)
      endpoint.onDatagram(A.data(53), "a", 0)
      advance(endpoint, 200)
      // 51 might have started an update: [51, 52] is reported, then 53 delivered.
      expect(losses(sink)).toEqual([[51, 52, "RetriesExhausted"]])
      expect(seqs(sink)).toEqual([53])
    })

    it("a retransmission neither creates nor synchronises a session", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.data(5, ["/r"], true), "a", 0)
      expect(sink.events).toEqual([])
      expect(endpoint.remoteSessions()).toEqual([])
      endpoint.onDatagram(A.data(7), "a", 1)
      endpoint.onDatagram(A.data(6, ["/r"], true), "a", 2)
      advance(endpoint, 1000)
      expect(seqs(sink)).toEqual([7])
      expect(sentNaks(sink)).toEqual([])
    })

    it("a heartbeat synchronises at highest + 1; Lost and Goodbye from unknown sessions are ignored", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.lost([{ first: 1, last: 5 }]), "a", 0)
      endpoint.onDatagram(A.goodbye(5), "a", 0)
      expect(sink.events).toEqual([])
      endpoint.onDatagram(A.heartbeat(10, 1), "a", 1)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined"])
      endpoint.onDatagram(A.data(11), "a", 2)
      endpoint.onDatagram(A.data(13), "a", 3)
      advance(endpoint, 20)
      expect(seqs(sink)).toEqual([11])
      expect(sentNaks(sink).map((n) => [n.target, n.ranges])).toEqual([[A.source.sessionId, [{ first: 12, last: 12 }]]])
    })
  })

  it("reordered and duplicated segments are delivered once, in order; duplicates counted", () => {
    const { endpoint, sink } = make()
    endpoint.onDatagram(A.announce(0), "a", 0)
    for (const s of [3, 2, 3, 1, 2, 3, 1, 5, 4]) endpoint.onDatagram(A.data(s, [`/t/${s}a`, `/t/${s}b`]), "a", 1)
    expect(sink.updates.map((u) => u.topic)).toEqual([1, 2, 3, 4, 5].flatMap((s) => [`/t/${s}a`, `/t/${s}b`]))
    expect(endpoint.stats.duplicates).toBe(4)
    expect(endpoint.stats.updatesIn).toBe(10)
    expect(endpoint.remoteSessions()[0]).toMatchObject({ state: "active", highestSeq: 5, delivered: 10, duplicates: 4 })
  })

  describe('fresh sessions (docs/PROTOCOL.md "Fresh sessions")', () => {
    // testConfig: freshWindowMs = max(1000, 2 · 1000) = 2000 ms, + 100 ms margin: an endpoint opened
    // at 0 synchronises fresh sessions at 1 from t = 2100 on.
    const OLD = 5000
    const freshRemote = (id: bigint, senderIndex = 0): Remote => {
      const r = new Remote(id, senderIndex)
      r.fresh = true
      return r
    }

    it("an endpoint listening before the session started syncs at 1 and repairs the lost head", () => {
      const { endpoint, sink } = make()
      const F = freshRemote(0x5001n)
      endpoint.onDatagram(F.data(4), "a", OLD)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined"])
      advance(endpoint, OLD + 10)
      expect(sentNaks(sink).map((n) => [n.target, n.ranges])).toEqual([[0x5001n, [{ first: 1, last: 3 }]]])
      for (const s of [2, 1, 3]) endpoint.onDatagram(F.data(s, [`/s/${s}`], true), "a", OLD + 11)
      endpoint.onDatagram(F.data(5), "a", OLD + 12)
      advance(endpoint, OLD + 2000)
      expect(seqs(sink)).toEqual([1, 2, 3, 4, 5])
      expect(sink.losses).toEqual([])
      expect(sentNaks(sink).length).toBe(1)
    })

    it("the head the sender no longer has is reported (NotInSenderCache), never skipped silently", () => {
      const { endpoint, sink } = make()
      const F = freshRemote(0x5002n)
      endpoint.onDatagram(F.data(4), "a", OLD)
      advance(endpoint, OLD + 10)
      endpoint.onDatagram(F.lost([{ first: 1, last: 2 }]), "a", OLD + 11)
      endpoint.onDatagram(F.data(3, ["/s/3"], true), "a", OLD + 11)
      expect(losses(sink)).toEqual([[1, 2, "NotInSenderCache"]])
      expect(seqs(sink)).toEqual([3, 4])
    })

    it("unanswered head NAKs end in RetriesExhausted for exactly the head", () => {
      const { endpoint, sink } = make({ nakMaxRetries: 2 })
      const F = freshRemote(0x5003n)
      endpoint.onDatagram(F.data(3), "a", OLD)
      advance(endpoint, OLD + 1000)
      expect(losses(sink)).toEqual([[1, 2, "RetriesExhausted"]])
      expect(seqs(sink)).toEqual([3])
      expect(sentNaks(sink).length).toBe(3)
    })

    it("a fresh heartbeat first: syncs at 1 and NAKs 1..highest; a fresh announce at 0 needs nothing", () => {
      const { endpoint, sink } = make()
      const F = freshRemote(0x5004n)
      endpoint.onDatagram(F.heartbeat(3, 1), "a", OLD)
      advance(endpoint, OLD + 10)
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 1, last: 3 }]])
      const G = freshRemote(0x5005n, 1)
      endpoint.onDatagram(G.announce(0), "a", OLD)
      endpoint.onDatagram(G.data(1), "a", OLD + 1)
      expect(sink.updates.filter((u) => u.source.sessionId === 0x5005n).map((u) => u.sequence)).toEqual([1])
      expect(endpoint.remoteSession(0x5004n)!.next).toBe(1)
    })

    it("an endpoint younger than the fresh window + margin ignores the mark (late-joiner sync)", () => {
      const { endpoint, sink } = make()
      const F = freshRemote(0x5006n)
      endpoint.onDatagram(F.data(4), "a", 2099)
      endpoint.onDatagram(F.data(5), "a", 2100)
      advance(endpoint, 5000)
      expect(seqs(sink)).toEqual([4, 5])
      expect(sentNaks(sink)).toEqual([])
      // The same endpoint, now old enough, syncs another fresh session at 1.
      const G = freshRemote(0x5007n, 1)
      endpoint.onDatagram(G.data(2), "a", 5000)
      advance(endpoint, 5020)
      expect(sentNaks(sink).map((n) => [n.target, n.ranges])).toEqual([[0x5007n, [{ first: 1, last: 1 }]]])
    })

    it("an unmarked session first heard by an old endpoint is a late joiner: no history NAKed", () => {
      const { endpoint, sink } = make()
      const L = new Remote(0x5008n)
      endpoint.onDatagram(L.data(40), "a", OLD)
      endpoint.onDatagram(L.heartbeat(40, 1), "a", OLD + 1)
      advance(endpoint, OLD + 2000)
      expect(seqs(sink)).toEqual([40])
      expect(sentNaks(sink)).toEqual([])
    })

    it("a fresh retransmission from an unknown session still creates nothing", () => {
      const { endpoint, sink } = make()
      const F = freshRemote(0x5009n)
      endpoint.onDatagram(F.data(3, ["/r"], true), "a", OLD)
      expect(sink.events).toEqual([])
      expect(endpoint.remoteSessions()).toEqual([])
    })

    it("first heard on a Middle fragment: the head is requested and the whole update reassembled", () => {
      const { endpoint, sink } = make()
      const F = freshRemote(0x500an)
      const chunk = (b: number) => new Uint8Array(10).fill(b)
      endpoint.onDatagram(F.cont(3, 2, chunk(3)), "a", OLD)
      endpoint.onDatagram(F.cont(4, 3, chunk(4)), "a", OLD)
      advance(endpoint, OLD + 10)
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 1, last: 2 }]])
      endpoint.onDatagram(F.first(1, 40, chunk(1), "/big"), "a", OLD + 11)
      endpoint.onDatagram(F.cont(2, 2, chunk(2)), "a", OLD + 11)
      expect(sink.updates.map((u) => [u.topic, u.sequence, Array.from(u.payload.subarray(0, 40))])).toEqual([
        ["/big", 4, [...chunk(1), ...chunk(2), ...chunk(3), ...chunk(4)]]
      ])
      expect(sink.losses).toEqual([])
    })

    it("a fresh session heard first at a far sequence number stays within the window caps", () => {
      const window = 16
      const { endpoint, sink } = make({ reorderBufferSegments: window })
      const F = freshRemote(0x500bn)
      endpoint.onDatagram(F.data(1000), "a", OLD)
      expect(endpoint.stats.outOfWindow).toBe(1)
      const session = endpoint.remoteSession(0x500bn)!
      expect([session.next, session.highest, session.gapCount]).toEqual([1, 0, 0])
      // An absurd claim (2^53 - 1) is implausible: dropped and counted (docs/PROTOCOL.md "Hostile networks").
      endpoint.onDatagram(F.heartbeat(2 ** 53 - 1, 1), "a", OLD + 1)
      expect(endpoint.stats.implausible).toBe(1)
      // A far but plausible one opens a gap whose window part is NAKed.
      endpoint.onDatagram(F.heartbeat(1000, 1), "a", OLD + 2)
      advance(endpoint, OLD + 20)
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 1, last: window }]])
      expect(session.gapCount).toBeLessThanOrEqual(2)
      expect(session.slotCapacity).toBeLessThanOrEqual(64)
      expect(sink.updates).toEqual([])
    })

    it("a restarted sender's fresh session syncs at 1: Restarted, its head repaired", () => {
      const { endpoint, sink } = make()
      const before = new Remote(0x500cn)
      endpoint.onDatagram(before.data(100), "a", OLD)
      const after = freshRemote(0x500dn)
      endpoint.onDatagram(after.data(3), "a", OLD + 10)
      // The old session was heard 10 ms ago: both are received (a Conflict), see "restart".
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Joined", "Conflict"])
      advance(endpoint, OLD + 25)
      expect(sentNaks(sink).map((n) => [n.target, n.ranges])).toEqual([[0x500dn, [{ first: 1, last: 2 }]]])
      endpoint.onDatagram(after.data(1, ["/s/1"], true), "a", OLD + 26)
      endpoint.onDatagram(after.data(2, ["/s/2"], true), "a", OLD + 26)
      expect(sink.updates.map((u) => [u.source.sessionId, u.sequence])).toEqual([
        [0x500cn, 100],
        [0x500dn, 1],
        [0x500dn, 2],
        [0x500dn, 3]
      ])
    })

    it("a Gone session coming back with the mark resumes where it is (no re-delivery)", () => {
      const { endpoint, sink } = make({ senderTimeoutMs: 1000 })
      const F = freshRemote(0x500en)
      endpoint.onDatagram(F.data(1), "a", OLD)
      endpoint.onDatagram(F.data(2), "a", OLD + 1)
      advance(endpoint, OLD + 1500)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Gone"])
      endpoint.onDatagram(F.data(6), "a", OLD + 1600)
      advance(endpoint, OLD + 1700)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Gone", "Joined"])
      expect(seqs(sink)).toEqual([1, 2, 6])
      expect(sentNaks(sink)).toEqual([])
    })
  })

  describe("NAKs", () => {
    it("first NAK after a random back-off < nakBackoffMs, one packet for all gaps, retries, then RetriesExhausted", () => {
      const { endpoint, sink } = make({ nakMaxRetries: 3, nakBackoffMs: 10, nakRetryIntervalMs: 50 })
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.data(4), "a", 0)
      endpoint.onDatagram(A.data(6), "a", 0)
      const fired = advance(endpoint, 1000)
      const naks = sentNaks(sink)
      expect(naks.length).toBe(4)
      for (const n of naks)
        expect(n.ranges).toEqual([
          { first: 2, last: 3 },
          { first: 5, last: 5 }
        ])
      const first = fired[0]
      expect(first).toBeGreaterThanOrEqual(0)
      expect(first).toBeLessThan(10)
      expect(fired.slice(0, 5)).toEqual([first, first + 50, first + 100, first + 150, first + 200])
      // After 1 + 3 NAKs and one more retry interval: declared lost, in order, delivery continues.
      expect(
        sink.log.map((i) => (i.kind === "update" ? i.update.sequence : `lost ${i.loss.firstSeq}-${i.loss.lastSeq}`))
      ).toEqual([1, "lost 2-3", 4, "lost 5-5", 6])
      expect(losses(sink).map((l) => l[2])).toEqual(["RetriesExhausted", "RetriesExhausted"])
      expect(endpoint.stats.naksSent).toBe(4)
      expect(endpoint.stats.lostSegments).toBe(3)
      expect(endpoint.stats.lossEvents).toBe(2)
    })

    it("a retransmission fills the gap and stops the retries", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.data(2), "a", 0)
      advance(endpoint, 12)
      expect(sentNaks(sink).length).toBe(1)
      endpoint.onDatagram(A.data(1, ["/s/1"], true), "a", 13)
      expect(seqs(sink)).toEqual([1, 2])
      expect(endpoint.stats.retransmissionsReceived).toBe(1)
      advance(endpoint, 2000)
      expect(sentNaks(sink).length).toBe(1)
    })

    it("suppression: another receiver's NAK covering the gap counts as ours", () => {
      const { endpoint, sink } = make({ nakBackoffMs: 10, nakRetryIntervalMs: 50 }, "suppress")
      const other = new Remote(0x9999n, 0xffff, "other", "x")
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.data(5), "a", 0)
      // Heard at once (before any back-off can expire): [2, 3] is covered, 4 is not.
      endpoint.onDatagram(other.nak(A.source.sessionId, [{ first: 2, last: 3 }]), "b", 0)
      advance(endpoint, 49)
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 4, last: 4 }]])
      // The suppressed range is retried one interval after the heard NAK; 4's retry (due within the
      // next back-off window) rides along in the same packet.
      const fired = advance(endpoint, 50)
      expect(fired[fired.length - 1]).toBe(50)
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 4, last: 4 }], [{ first: 2, last: 4 }]])
      // NAKs for a session we do not receive are ignored.
      endpoint.onDatagram(other.nak(0x4242n, [{ first: 1, last: 100 }]), "b", 51)
    })

    it("a chorus of NAKs heard within half a retry interval counts as one attempt", () => {
      const { endpoint, sink } = make({ nakMaxRetries: 1, nakRetryIntervalMs: 50 })
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.data(2), "a", 0)
      for (let i = 0; i < 10; i++) {
        const other = new Remote(BigInt(0x5000 + i), 0xffff, "other", "x")
        endpoint.onDatagram(other.nak(A.source.sessionId, [{ first: 1, last: 1 }]), "b", i)
      }
      // One attempt heard at t=0 (and 10 NAKs within 25 ms): our own retry follows at 50 ms.
      advance(endpoint, 99)
      expect(sentNaks(sink).length).toBe(1)
      expect(sink.losses).toEqual([])
      advance(endpoint, 100)
      expect(losses(sink)).toEqual([[1, 1, "RetriesExhausted"]])
    })

    it("many gaps: NAK ranges are split over packets by maxRangesPerPacket", () => {
      const { endpoint, sink } = make({ segmentSize: 512 })
      endpoint.onDatagram(A.announce(0), "a", 0)
      for (let s = 2; s <= 400; s += 2) endpoint.onDatagram(A.data(s), "a", 0)
      advance(endpoint, 11)
      const naks = sentNaks(sink)
      const ranges = naks.flatMap((n) => n.ranges)
      expect(ranges.length).toBe(200)
      expect(ranges[0]).toEqual({ first: 1, last: 1 })
      expect(naks.length).toBeGreaterThan(1)
      for (const d of sink.sent) expect(d.length).toBeLessThanOrEqual(512)
    })
  })

  describe("sender answers", () => {
    it("Lost → NotInSenderCache for exactly the intersecting missing ranges, reported in order", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.announce(0), "a", 0)
      for (const s of [1, 4, 5, 7]) endpoint.onDatagram(A.data(s), "a", 0)
      // Missing: 2, 3, 6. The sender no longer has 3..6.
      endpoint.onDatagram(A.lost([{ first: 3, last: 6 }]), "a", 1)
      expect(seqs(sink)).toEqual([1])
      endpoint.onDatagram(A.data(2, ["/s/2"], true), "a", 2)
      expect(
        sink.log.map((i) => (i.kind === "update" ? i.update.sequence : `lost ${i.loss.firstSeq}-${i.loss.lastSeq}`))
      ).toEqual([1, 2, "lost 3-3", 4, 5, "lost 6-6", 7])
      expect(losses(sink).map((l) => l[2])).toEqual(["NotInSenderCache", "NotInSenderCache"])
    })

    it("a heartbeat above what was seen opens a tail gap; one whose oldestCached passed a gap reports it without NAK", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.data(4), "a", 0)
      endpoint.onDatagram(A.heartbeat(6, 1), "a", 20)
      advance(endpoint, 31)
      expect(sentNaks(sink).flatMap((n) => n.ranges)).toEqual([
        { first: 2, last: 3 },
        { first: 5, last: 6 }
      ])
      endpoint.onDatagram(A.heartbeat(6, 3), "a", 40)
      // 2 is no longer cached: lost at once. 3 and the tail 5..6 are still requested.
      expect(losses(sink)).toEqual([[2, 2, "NotInSenderCache"]])
      endpoint.onDatagram(A.heartbeat(6, 0), "a", 45)
      // The cache floor gives up only what data showed to exist (up to 4): 3. The tail 5..6, known
      // from heartbeats alone, is left to the NAK and its answer (a forged floor cannot skip ahead).
      expect(losses(sink)).toEqual([
        [2, 2, "NotInSenderCache"],
        [3, 3, "NotInSenderCache"]
      ])
      expect(seqs(sink)).toEqual([1, 4])
      endpoint.onDatagram(A.lost([{ first: 5, last: 6 }]), "a", 46)
      expect(losses(sink)[2]).toEqual([5, 6, "NotInSenderCache"])
      expect(sentNaks(sink).length).toBe(2)
      endpoint.onDatagram(A.data(7), "a", 50)
      expect(seqs(sink)).toEqual([1, 4, 7])
    })

    it("goodbye with nothing missing closes at once", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.goodbye(1), "a", 1)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Closed"])
      expect(endpoint.remoteSessions().map((r) => r.state)).toEqual(["closed"])
      // Its late datagrams (lingering Goodbyes, retransmissions, data) do not re-create it.
      endpoint.onDatagram(A.goodbye(1), "a", 100)
      endpoint.onDatagram(A.data(1, ["/s/1"], true), "a", 100)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Closed"])
      // Live data beyond the Goodbye contradicts it (a forged Goodbye): the session resumes where
      // it closed, with a Conflict, and nothing is lost.
      endpoint.onDatagram(A.data(2), "a", 101)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Closed", "Joined", "Conflict"])
      expect(seqs(sink)).toEqual([1, 2])
      expect(sink.losses).toEqual([])
    })
  })

  describe("closing grace (closeGraceMs = nakBackoffMs + (nakMaxRetries + 1) · nakRetryIntervalMs)", () => {
    it("gaps found at the Goodbye get the full retry budget; then SenderGone at exactly heard + grace", () => {
      const { endpoint, sink } = make()
      const grace = closeGraceMs(testConfig())
      expect(grace).toBe(10 + 11 * 50)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.goodbye(3), "a", 10)
      advance(endpoint, 10 + grace - 1)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined"])
      expect(sink.losses).toEqual([])
      expect(sentNaks(sink).length).toBe(11)
      expect(sentNaks(sink).every((n) => n.ranges[0].first === 2 && n.ranges[0].last === 3)).toBe(true)
      advance(endpoint, 10 + grace)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Closed"])
      expect(losses(sink)).toEqual([[2, 3, "SenderGone"]])
    })

    it("a retransmission late in the grace still repairs the tail", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.goodbye(3), "a", 10)
      advance(endpoint, 500)
      endpoint.onDatagram(A.data(2, ["/s/2"], true), "a", 500)
      endpoint.onDatagram(A.data(3, ["/s/3"], true), "a", 501)
      expect(seqs(sink)).toEqual([1, 2, 3])
      expect(sink.losses).toEqual([])
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Closed"])
    })

    it("a gap that runs out of retries after the Goodbye is reported SenderGone at the close", () => {
      const { endpoint, sink } = make({ nakMaxRetries: 2 })
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.data(3), "a", 0)
      endpoint.onDatagram(A.goodbye(3), "a", 100) // closes at 100 + 10 + 3 · 50 = 260
      advance(endpoint, 259)
      expect(sentNaks(sink).length).toBe(3)
      expect(sink.losses).toEqual([])
      advance(endpoint, 260)
      expect(losses(sink)).toEqual([[2, 2, "SenderGone"]])
      expect(seqs(sink)).toEqual([1, 3])
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Closed"])
    })
  })

  describe("reassembly", () => {
    const chunk = (n: number, v: number) => new Uint8Array(n).fill(v)

    it("reassembles fragments, also reordered", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.cont(3, 3, chunk(4, 3)), "a", 0)
      endpoint.onDatagram(A.first(1, 12, chunk(4, 1)), "a", 0)
      endpoint.onDatagram(A.cont(2, 2, chunk(4, 2)), "a", 0)
      expect(sink.updates.length).toBe(1)
      expect(Array.from(sink.updates[0].payload)).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
      expect(sink.updates[0]).toMatchObject({ topic: "/frag", sequence: 3 })
    })

    it("totalLength above maxUpdateSize → ReassemblyFailed for the whole update, nothing allocated", () => {
      const { endpoint, sink } = make({ maxUpdateSize: 100 })
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.first(1, 1_000_000, chunk(50, 1)), "a", 0)
      endpoint.onDatagram(A.cont(2, 2, chunk(50, 2)), "a", 0)
      endpoint.onDatagram(A.cont(3, 3, chunk(50, 3)), "a", 0)
      endpoint.onDatagram(A.data(4), "a", 0)
      expect(mergedLosses(sink)).toEqual([[1, 3, "ReassemblyFailed"]])
      expect(seqs(sink)).toEqual([4])
      expect(endpoint.remoteSession(A.source.sessionId)!.assemblyBytes).toBe(0)
    })

    it("fragments overflowing totalLength, or a short Last, → ReassemblyFailed; never delivered partly", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.first(1, 10, chunk(6, 1)), "a", 0)
      endpoint.onDatagram(A.cont(2, 2, chunk(6, 2)), "a", 0)
      endpoint.onDatagram(A.cont(3, 3, chunk(6, 3)), "a", 0)
      endpoint.onDatagram(A.first(4, 20, chunk(5, 4)), "a", 0)
      endpoint.onDatagram(A.cont(5, 3, chunk(5, 5)), "a", 0)
      endpoint.onDatagram(A.data(6), "a", 0)
      expect(mergedLosses(sink)).toEqual([[1, 5, "ReassemblyFailed"]])
      expect(sink.losses.map((l) => l.lastSeq)).toEqual([2, 3, 5])
      expect(seqs(sink)).toEqual([6])
    })

    it("a lost fragment takes the whole update: received fragments before and after are folded into one report", () => {
      const { endpoint, sink } = make({ nakMaxRetries: 0 })
      endpoint.onDatagram(A.announce(0), "a", 0)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.first(2, 16, chunk(4, 1)), "a", 0)
      endpoint.onDatagram(A.cont(3, 2, chunk(4, 2)), "a", 0)
      endpoint.onDatagram(A.cont(5, 3, chunk(4, 4)), "a", 0)
      endpoint.onDatagram(A.data(6), "a", 0)
      advance(endpoint, 200)
      expect(losses(sink)).toEqual([[2, 5, "RetriesExhausted"]])
      expect(seqs(sink)).toEqual([1, 6])
    })
  })

  describe("restart", () => {
    it("a new session with the key of a quiet one replaces it at once: Restarted, old gaps SenderGone", () => {
      const { endpoint, sink } = make()
      const A2 = new Remote(0x7777n, 0)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.data(3), "a", 0)
      // quietMs = 2.5 heartbeat intervals: a live sender would have heartbeaten by now.
      endpoint.onDatagram(A2.data(1), "a", 2500)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Restarted"])
      expect(losses(sink)).toEqual([[2, 2, "SenderGone"]])
      // A different sender index is a different publisher, not a restart.
      endpoint.onDatagram(new Remote(0x8888n, 1).data(1), "a", 2510)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Restarted", "Joined"])
    })

    it("a new session with the key of a live one does not end it: both received, Conflict; the old ends once quiet", () => {
      const { endpoint, sink } = make()
      const A2 = new Remote(0x7777n, 0)
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.data(3), "a", 0)
      endpoint.onDatagram(A2.data(1), "a", 1)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Joined", "Conflict"])
      expect(sink.losses).toEqual([])
      for (let i = 0; i < 5; i++) {
        endpoint.onDatagram(A.data(4 + i), "a", 2 + i)
        endpoint.onDatagram(A2.data(2 + i), "a", 2 + i)
      }
      expect(sink.updates.filter((u) => u.source.sessionId === A2.source.sessionId).length).toBe(6)
      // The old one's gap is still repaired while it lives.
      endpoint.onDatagram(A.data(2, ["/s/2"], true), "a", 8)
      expect(sink.updates.filter((u) => u.source.sessionId === A.source.sessionId).map((u) => u.sequence)).toEqual([
        1, 2, 3, 4, 5, 6, 7, 8
      ])
      // The new one keeps talking, the old one goes silent: after quietMs it ends "restarted".
      for (let t = 100; t <= 3000; t += 500) endpoint.onDatagram(A2.heartbeat(6, 1), "a", t)
      advance(endpoint, 3000)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Joined", "Conflict", "Restarted"])
      const restarted = sink.events[3]
      expect(restarted._tag === "Restarted" && [restarted.session.sessionId, restarted.previous.sessionId]).toEqual([
        A2.source.sessionId,
        A.source.sessionId
      ])
      expect(sink.losses).toEqual([])
    })
  })

  describe("bounds under hostile input", () => {
    it("a flood of far-future sequence numbers is dropped and counted; buffers stay bounded", () => {
      const window = 64
      const { endpoint, sink } = make({ reorderBufferSegments: window, nakMaxRetries: 1 })
      endpoint.onDatagram(A.announce(0), "a", 0)
      const prng = new Prng("flood")
      for (let i = 0; i < 20_000; i++) {
        const seq = prng.chance(0.5) ? 2 ** 53 - 1 - prng.int(1_000_000) : 1 + window + prng.int(2 ** 31)
        endpoint.onDatagram(A.data(seq), "a", i * 0.001)
      }
      expect(endpoint.stats.outOfWindow).toBe(20_000)
      const session = endpoint.remoteSession(A.source.sessionId)!
      expect(session.slotCapacity).toBeLessThanOrEqual(64)
      expect(session.gapCount).toBe(0)
      expect(session.highest).toBe(0)
      // In-window, out-of-order data is held; the buffer never exceeds the window.
      for (let s = window; s >= 2; s--) endpoint.onDatagram(A.data(s), "a", 30)
      expect(session.buffered).toBe(window - 1)
      expect(session.slotCapacity).toBeLessThanOrEqual(window)
      endpoint.onDatagram(A.data(1), "a", 31)
      expect(seqs(sink).length).toBe(window)
      expect(session.buffered).toBe(0)
    })

    it("a hostile heartbeat claiming 2^53 - 1 costs two gap ranges; NAKs cover only the window", () => {
      const { endpoint, sink } = make({ reorderBufferSegments: 100, nakMaxRetries: 0 })
      endpoint.onDatagram(A.data(1), "a", 0)
      endpoint.onDatagram(A.heartbeat(2 ** 53 - 1, 1), "a", 0)
      const session = endpoint.remoteSession(A.source.sessionId)!
      // Implausible (beyond 64 windows past what is known): dropped, counted, surfaced.
      expect(session.gapCount).toBe(0)
      expect(endpoint.stats.implausible).toBe(1)
      expect(sink.events.map((e) => e._tag)).toEqual(["Joined", "Conflict"])
      // A plausible far claim costs two gap ranges; NAKs cover only the window.
      endpoint.onDatagram(A.heartbeat(5000, 1), "a", 0)
      expect(session.gapCount).toBe(2)
      advance(endpoint, 12)
      expect(sentNaks(sink).map((n) => n.ranges)).toEqual([[{ first: 2, last: 101 }]])
      advance(endpoint, 200)
      // The window's worth is given up (nobody answers), the next window is requested: still O(1) state.
      expect(losses(sink)[0]).toEqual([2, 101, "RetriesExhausted"])
      expect(session.gapCount).toBeLessThanOrEqual(2)
      expect(session.slotCapacity).toBeLessThanOrEqual(128)
    })

    it("a flood of First fragments with huge totalLength keeps one partial update at most", () => {
      const { endpoint, sink } = make()
      endpoint.onDatagram(A.announce(0), "a", 0)
      for (let s = 1; s <= 1000; s++) endpoint.onDatagram(A.first(s, 60 * 1024 * 1024, new Uint8Array(1000)), "a", 0)
      // Each new First ends the previous partial update (ReassemblyFailed, folded into one report so far).
      const session = endpoint.remoteSession(A.source.sessionId)!
      expect(session.assemblyBytes).toBe(1000)
      expect(sink.updates).toEqual([])
      expect(mergedLosses(sink)).toEqual([[1, 999, "ReassemblyFailed"]])
    })

    it("malformed datagrams are counted, never thrown (fuzzed: random bytes and mutated valid datagrams)", () => {
      const { endpoint, sink } = make()
      const valid = [
        A.data(1),
        A.first(2, 100, new Uint8Array(10)),
        A.cont(3, 3, new Uint8Array(90)),
        A.heartbeat(3, 1),
        A.lost([{ first: 1, last: 2 }]),
        A.goodbye(3),
        A.nak(0x1n, [{ first: 1, last: 1 }])
      ]
      let decodeErrors = 0
      fc.assert(
        fc.property(
          fc.oneof(
            fc.uint8Array({ maxLength: 200 }),
            fc.tuple(fc.constantFrom(...valid), fc.nat(), fc.nat(255), fc.nat(300)).map(([d, at, v, cut]) => {
              const m = Uint8Array.from(d)
              m[at % m.length] = v
              return m.subarray(0, Math.max(0, m.length - (cut % 20)))
            })
          ),
          (bytes) => {
            endpoint.onDatagram(bytes, "fuzz", 1)
            endpoint.onTimer(1)
            if (isDecodeFailure(decode(bytes))) decodeErrors++
          }
        ),
        { seed: 20_240_601, numRuns: 3000 }
      )
      expect(endpoint.stats.decodeErrors).toBe(decodeErrors)
      expect(decodeErrors).toBeGreaterThan(1000)
      expect(sink.log.length).toBeGreaterThanOrEqual(0)
    })
  })
})
