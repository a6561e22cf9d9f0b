/**
 * Hostile-traffic numbers for docs/PROTOCOL.md "Hostile networks" (npx tsx bench/hostile.ts):
 * NAK amplification, 150 000 forged session ids against one endpoint, and the deadline heap
 * against the per-session scan it replaced. Plain engine calls, no sockets.
 */
import { ConnectionConfig, DistributorConfig, toEngineConfig } from "../src/DistributorConfig.js"
import { Endpoint } from "../src/internal/protocol/endpoint.js"
import type { EngineConfig, EngineSink } from "../src/internal/protocol/engine.js"
import { Fragment, PacketKind, type Source } from "../src/internal/protocol/packets.js"
import { encodePacket } from "../src/internal/protocol/wire.js"
import { Prng } from "../src/internal/sim/index.js"

const MiB = 1024 * 1024
// The library's defaults, as a connection would run them (flow control off: no receivers here).
const defaults = toEngineConfig(
  new DistributorConfig({ host: "bench", application: "hostile" }),
  new ConnectionConfig({ flowControl: "none" })
)
const config = (o: Partial<EngineConfig> = {}): EngineConfig => ({ ...defaults, ...o })

const sink = (): EngineSink & { bytes: number } => {
  const s = {
    bytes: 0,
    send: (d: Uint8Array) => {
      s.bytes += d.length
    },
    deliver: () => {},
    loss: () => {},
    event: () => {}
  }
  return s
}

const endpoint = (o: Partial<EngineConfig>, s: EngineSink, seed: string) => {
  const prng = new Prng(seed)
  return new Endpoint({
    config: config(o),
    sink: s,
    random: () => prng.next(),
    newSessionId: () => prng.bigint64(),
    now: 0
  })
}

// ---- NAK amplification ---------------------------------------------------------------------
for (const [label, o] of [
  ["defaults (4 MiB/s per requester, 128 KiB burst, 2 048 segments per NAK)", {}],
  ["retransmitRateBytes 0 (segment cap only)", { retransmitRateBytes: 0 }]
] as const) {
  for (const payload of [64, 1300]) {
    const s = sink()
    const e = endpoint(o, s, "nak")
    const sender = e.openSender(0)
    const n = Math.floor((16 * MiB) / (payload + 60))
    for (let i = 0; i < n; i++) {
      e.publish(sender, "/t", new Uint8Array(payload), i)
      e.endBatch(sender, i)
    }
    const cached = e.localSenders()[0].cachedSegments
    const requester: Source = { sessionId: 1n, senderIndex: 0xffff, host: "forger", application: "x" }
    const nak = encodePacket({
      kind: PacketKind.Nak,
      source: requester,
      target: sender.session.sessionId,
      ranges: [{ first: 1, last: 2 ** 53 - 1 }]
    })
    s.bytes = 0
    e.onDatagram(nak, "10.0.0.9:1", n + 100)
    const one = s.bytes
    s.bytes = 0
    // One NAK every 10 ms (the holdoff) for one second.
    for (let t = 1; t <= 100; t++) e.onDatagram(nak, "10.0.0.9:1", n + 100 + t * 10)
    const sustained = s.bytes
    const ranges = Array.from({ length: 4000 }, () => ({ first: 1, last: 2 ** 53 - 1 }))
    const big = encodePacket({ kind: PacketKind.Nak, source: requester, target: sender.session.sessionId, ranges })
    const t0 = performance.now()
    e.onDatagram(big, "10.0.0.10:1", n + 2000)
    const ms = performance.now() - t0
    console.log(
      `NAK ${label}, ${payload}-byte updates, ${cached} segments cached: one ${nak.length}-byte NAK → ${one} bytes out ` +
        `(${Math.round(one / nak.length)}×); 100 NAKs/s → ${(sustained / MiB).toFixed(2)} MiB/s; ` +
        `a 4 000-range NAK (${big.length} bytes) costs ${ms.toFixed(2)} ms`
    )
  }
}

// ---- 150 000 forged session ids -------------------------------------------------------------
{
  const s = sink()
  const e = endpoint({ listening: true }, s, "flood")
  const prng = new Prng("ids")
  const rss0 = process.memoryUsage().rss
  const t0 = performance.now()
  let now = 3000
  for (let i = 0; i < 150_000; i++) {
    const source: Source = { sessionId: prng.bigint64(), senderIndex: i & 0xff, host: "forger", application: "f" }
    const p =
      i % 2 === 0
        ? encodePacket({
            kind: PacketKind.Heartbeat,
            source,
            highestSeq: 1 + prng.int(1000),
            oldestCached: 1,
            fresh: false
          })
        : encodePacket({
            kind: PacketKind.Data,
            source,
            retransmission: false,
            fresh: true,
            seq: 2 + prng.int(100),
            body: { fragment: Fragment.None, updates: [{ topic: "/x", payload: Uint8Array.of(1) }] }
          })
    e.onDatagram(p, "10.0.0.9:1", now)
    if (i % 25 === 0) {
      now += 1
      while (e.nextDeadline() <= now) e.onTimer(e.nextDeadline())
    }
  }
  const ms = performance.now() - t0
  const tracked = e.remoteSessions().filter((r) => r.state === "active").length
  console.log(
    `150 000 forged ids over ${((now - 3000) / 1000).toFixed(1)} s: ${tracked} sessions tracked at the end, ` +
      `${e.stats.sessionsRejected} refused, ${e.sessionVisits} timer visits, ${(ms / 150).toFixed(2)} µs per datagram, ` +
      `RSS +${((process.memoryUsage().rss - rss0) / MiB).toFixed(0)} MiB`
  )
}

// ---- deadline heap vs scan -------------------------------------------------------------------
for (const sessions of [1000, 10_000, 100_000]) {
  const s = sink()
  const e = endpoint({ maxRemoteSessions: sessions * 4 + 4, senderTimeoutMs: 1e9, heartbeatIntervalMs: 1e8 }, s, "heap")
  const sources: Array<Source> = []
  for (let i = 0; i < sessions; i++) {
    const source: Source = { sessionId: BigInt(i + 1), senderIndex: i & 0xffff, host: `h${i}`, application: "a" }
    sources.push(source)
    e.onDatagram(
      encodePacket({ kind: PacketKind.Heartbeat, source, highestSeq: 10, oldestCached: 1, fresh: false }),
      "x",
      0
    )
  }
  // 2 000 rounds: a datagram opens a gap in one session (its deadline moves earlier), then the
  // driver asks nextDeadline and runs onTimer (one NAK).
  const rounds = 2000
  const packets = sources.slice(0, rounds).map((source) =>
    encodePacket({
      kind: PacketKind.Data,
      source,
      retransmission: false,
      fresh: false,
      seq: 13,
      body: { fragment: Fragment.None, updates: [{ topic: "/x", payload: Uint8Array.of(1) }] }
    })
  )
  const t0 = performance.now()
  for (let r = 0; r < rounds; r++) {
    e.onDatagram(packets[r % packets.length], "x", r)
    const d = e.nextDeadline()
    e.onTimer(Math.max(d, r))
  }
  const heapUs = ((performance.now() - t0) * 1000) / rounds
  // What the replaced code did per nextDeadline and per onTimer: visit every session's deadline().
  const all = sources.map((x) => e.remoteSession(x.sessionId)!)
  const t1 = performance.now()
  let min = 0
  for (let r = 0; r < rounds; r++) {
    let d = Number.POSITIVE_INFINITY
    for (let k = 0; k < 2; k++) for (const x of all) d = Math.min(d, x.deadline())
    min += d
  }
  const scanUs = ((performance.now() - t1) * 1000) / rounds
  console.log(
    `${sessions} sessions: a round (datagram + nextDeadline + onTimer) with the heap ${heapUs.toFixed(1)} µs, ` +
      `${(e.sessionVisits / rounds).toFixed(2)} sessions visited per onTimer; the two scans it replaced ` +
      `${scanUs.toFixed(1)} µs per round${Number.isFinite(min) ? "" : "."}`
  )
}
