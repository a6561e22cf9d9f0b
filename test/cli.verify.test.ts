/**
 * The command-line tools' payload format and subscriber-side verification (pure code, no sockets).
 */
import { describe, expect, it } from "@effect/vitest"
import type { Source, Update } from "../src/Connection.js"
import { LatencyHistogram } from "../src/cli/internal/latency.js"
import * as Payload from "../src/cli/internal/payload.js"
import { Verifier } from "../src/cli/internal/verify.js"
import { IrrecoverableLoss } from "../src/DistributorError.js"

const source: Source = {
  sessionId: 1n,
  sessionIdHex: "0000000000000001",
  senderIndex: 0,
  host: "host",
  application: "app",
  address: "127.0.0.1:1"
}

/** The `seq`-th update of `source`, on `topic` as its `topicSeq`-th. */
const update = (topic: string, seq: number, topicSeq: number, sentAt = 0, end = false): Update => ({
  topic,
  payload: Payload.encode(48 + (seq % 7), { end, seq, topicSeq, sentAt, startedAt: 0 }),
  source,
  sequence: seq
})

const loss = new IrrecoverableLoss({
  reason: "RetriesExhausted",
  connection: "239.255.50.1:7500",
  sessionId: source.sessionIdHex,
  host: "host",
  application: "app",
  firstSeq: 3,
  lastSeq: 3
})

describe("payload", () => {
  it("round-trips the header and detects truncation and corruption", () => {
    const header = { end: false, seq: 42, topicSeq: 7, sentAt: 1234.5, startedAt: 1000.25 }
    const bytes = Payload.encode(100, header)
    expect(Payload.decode(bytes)).toEqual(header)
    const end = { end: true, seq: 9, topicSeq: 3, sentAt: 1, startedAt: 0 }
    expect(Payload.decode(Payload.encode(Payload.HEADER_SIZE, end))).toEqual(end)
    expect(Payload.decode(bytes.subarray(0, 99))).toBe("corrupt")
    const flipped = bytes.slice()
    flipped[77] ^= 1
    expect(Payload.decode(flipped)).toBe("corrupt")
    expect(Payload.decode(new TextEncoder().encode("not a payload of the tools, just text"))).toBeUndefined()
  })
})

describe("Verifier", () => {
  it("accepts an in-order stream and counts the tail announced by the end marker", () => {
    const v = new Verifier()
    const ended: Array<string> = []
    v.onEnd = (id) => ended.push(id)
    // Two topics interleaved: seq 1..6, topicSeq 1..3 on each.
    for (let seq = 1; seq <= 6; seq++) v.onItem(update(`/t/${seq % 2}`, seq, Math.ceil(seq / 2)), 5)
    expect(v.summary()).toMatchObject({ received: 6, missing: 0, ok: true })
    // The publisher published 8: the last one on each topic never arrived, and no loss was reported.
    v.onItem(update("/t/0", 8, 4, 0, true), 5)
    v.onItem(update("/t/1", 8, 4, 0, true), 5)
    expect(ended).toEqual([source.sessionIdHex])
    expect(v.summary()).toMatchObject({ received: 6, missing: 2, unreportedMissing: 2, ok: false })
    expect(v.summary().publishers[0]).toMatchObject({ published: 8, ended: true })
  })

  it("tells a reported gap from a silent one", () => {
    const silent = new Verifier()
    const reported = new Verifier()
    for (const v of [silent, reported]) {
      v.onItem(update("/t", 1, 1), 0)
      v.onItem(update("/t", 2, 2), 0)
      v.onItem(update("/t", 5, 5), 0)
    }
    reported.onItem(loss, 0)
    expect(silent.summary()).toMatchObject({ received: 3, missing: 2, unreportedMissing: 2, ok: false })
    expect(reported.summary()).toMatchObject({ received: 3, missing: 2, unreportedMissing: 0, ok: true })
    expect(reported.summary().losses).toEqual([
      { reason: "RetriesExhausted", sessionId: source.sessionIdHex, firstSeq: 3, lastSeq: 3 }
    ])
  })

  it("counts duplicates, late arrivals, order across topics and corrupt payloads", () => {
    const v = new Verifier()
    v.onItem(update("/a", 1, 1), 0)
    v.onItem(update("/a", 1, 1), 0) // duplicate
    v.onItem(update("/a", 3, 3), 0) // gap: 2
    v.onItem(update("/a", 2, 2), 0) // late: fills the gap, out of order
    v.onItem(update("/b", 4, 1), 0)
    v.onItem(update("/c", 2, 1), 0) // seq 2 after seq 4: out of order across topics
    const corrupt = update("/a", 5, 4)
    corrupt.payload[corrupt.payload.length - 1] ^= 0xff
    v.onItem(corrupt, 0)
    expect(v.summary()).toMatchObject({
      received: 5,
      missing: 0,
      duplicates: 1,
      outOfOrder: 2,
      corrupt: 1,
      ok: false
    })
  })

  it("a subscriber that joined after the publisher started expects each topic from its first arrival", () => {
    const late = new Verifier()
    late.subscribedAt = 500
    const early = new Verifier()
    early.subscribedAt = -1
    for (const v of [late, early]) {
      // The publisher started at 0; the first updates to arrive are seq 5 (/a) and 6 (/b).
      v.onItem(update("/a", 5, 3), 0)
      v.onItem(update("/b", 6, 3), 0)
      v.onItem(update("/a", 7, 4), 0)
    }
    expect(late.summary()).toMatchObject({ received: 3, missing: 0, ok: true })
    expect(late.summary().publishers[0].joinedLate).toBe(true)
    // Subscribed before the publisher started: updates 1..4 went missing silently.
    expect(early.summary()).toMatchObject({ received: 3, missing: 4, unreportedMissing: 4, ok: false })
    expect(early.summary().publishers[0].gaps).toEqual([
      { topic: "/a", first: 1, last: 2 },
      { topic: "/b", first: 1, last: 2 }
    ])
  })

  it("expect() makes a lost tail visible without an end marker", () => {
    const v = new Verifier()
    v.onItem(update("/x/1", 1, 1), 0)
    v.expect(
      source,
      new Map([
        ["/x/1", 3],
        ["/y", 2]
      ]),
      (t) => t.startsWith("/x/")
    )
    expect(v.summary()).toMatchObject({ received: 1, missing: 2, unreportedMissing: 2 })
  })

  it("records delivery latency from the send time in the payload", () => {
    const v = new Verifier()
    for (let seq = 1; seq <= 100; seq++) v.onItem(update("/t", seq, seq, 1000), 1000 + seq)
    const l = v.latency.summary()
    expect(l).toMatchObject({ samples: 100, minMs: 1, maxMs: 100 })
    expect(l.p50Ms).toBeGreaterThanOrEqual(50)
    expect(l.p50Ms).toBeLessThanOrEqual(50 * 1.01)
  })
})

describe("LatencyHistogram", () => {
  it("percentiles are within 1% of the exact ones", () => {
    const h = new LatencyHistogram()
    const samples = Array.from({ length: 10_000 }, (_, i) => 0.01 * 1.001 ** i)
    for (const s of samples) h.record(s)
    const sorted = samples.slice().sort((a, b) => a - b)
    for (const p of [50, 90, 99, 99.9]) {
      const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1]
      expect(h.percentile(p)).toBeGreaterThanOrEqual(exact)
      expect(h.percentile(p)).toBeLessThanOrEqual(exact * 1.01)
    }
  })
})
