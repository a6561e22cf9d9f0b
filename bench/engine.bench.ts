/**
 * Engine-only throughput: publish → encode → decode → receiver → delivery in one process, one
 * core, no sockets and no simulator — a direct loop moving datagrams between two Endpoints on a
 * virtual clock. With loss, datagrams (both directions) are dropped by a seeded PRNG and NAK
 * recovery runs for real (timers driven by the virtual clock).
 *
 *   npm run bench:engine            (tsx bench/engine.bench.ts)
 *   npm run bench:engine -- --security   plaintext vs security encrypt vs authenticate, interleaved
 *
 * Ends with one JSON line per scenario:
 *   {"scenario": "...", "updateBytes": 64, "loss": 0, "updatesPerSec": N}
 */

import { Endpoint } from "../src/internal/protocol/endpoint.js"
import type { EngineConfig, EngineSink, LossReport, ReceivedUpdate } from "../src/internal/protocol/engine.js"
import { Prng } from "../src/internal/sim/prng.js"

const config: EngineConfig = {
  host: "bench-host",
  application: "engine-bench",
  segmentSize: 1400,
  maxUpdateSize: 64 * 1024 * 1024,
  holdbackDelayMs: 2,
  holdbackThreshold: 2000,
  heartbeatIntervalMs: 1000,
  senderTimeoutMs: 10_000,
  nakBackoffMs: 10,
  nakRetryIntervalMs: 50,
  nakMaxRetries: 10,
  retransmitHoldoffMs: 10,
  // At the virtual 1 M updates/s, 16 MiB would hold only ~200 ms of history: shorter than a few NAK
  // rounds at 5% loss each way, so some segments would (correctly) be reported NotInSenderCache.
  cacheMaxBytes: 64 * 1024 * 1024,
  cacheMaxAgeMs: 60_000,
  // Likewise the per-requester retransmission allowance (4 MiB/s by default, an amplification
  // bound): 5 % loss at ~80 MB/s of virtual traffic needs ~4.3 MB/s of repairs, so the default
  // would (correctly) cut repairs and report RetriesExhausted.
  retransmitRateBytes: 64 * 1024 * 1024,
  maxBandwidth: 0,
  // 100 k segments/s of virtual 1 KiB traffic at 5 % loss each way: a gap whose NAK and repairs are
  // lost three times running (50 ms retries) outlives 16 384 segments of reorder buffer.
  reorderBufferSegments: 65_536,
  // Receivers here do not report status (not listening), so flow control has nothing to bound.
  flowControl: "min",
  receiverName: "",
  receiverWindowBytes: 1024 * 1024,
  receiverWindowSegments: 2048,
  statusIntervalMs: 100,
  receiverTimeoutMs: 2000
}

interface Result {
  readonly scenario: string
  readonly updateBytes: number
  readonly loss: number
  readonly updatesPerSec: number
}

/**
 * Publishes `total` updates in publish calls of `batch` updates each (publish × batch, endBatch);
 * virtual time advances so that the publisher runs at `virtualRate` updates/s (NAK back-off and
 * retries then take realistic virtual time; ~80–100 MB/s of virtual bandwidth, so the reorder
 * window and the cache span a realistic stretch of time). Returns wall-clock updates/s until every update is
 * delivered (or reported lost) at the receiver.
 */
const run = (
  config: EngineConfig,
  updateBytes: number,
  loss: number,
  total: number,
  virtualRate: number,
  seed: string
): { perSec: number; lost: number } => {
  const prng = new Prng(seed)
  const toReceiver: Array<Uint8Array> = []
  const toSender: Array<Uint8Array> = []
  let delivered = 0
  let lostSegments = 0
  const lossReasons = new Map<string, number>()
  const senderSink: EngineSink = {
    send: (d) => {
      if (loss === 0 || prng.next() >= loss) toReceiver.push(d)
    },
    deliver: (_u: ReceivedUpdate) => {},
    loss: (_l: LossReport) => {},
    event: () => {}
  }
  const receiverSink: EngineSink = {
    send: (d) => {
      if (loss === 0 || prng.next() >= loss) toSender.push(d)
    },
    deliver: (_u: ReceivedUpdate) => {
      delivered++
    },
    loss: (l: LossReport) => {
      lostSegments += l.lastSeq - l.firstSeq + 1
      lossReasons.set(l.reason, (lossReasons.get(l.reason) ?? 0) + l.lastSeq - l.firstSeq + 1)
    },
    event: () => {}
  }
  const random = () => prng.next()
  const sender = new Endpoint({ config, sink: senderSink, random, now: 0 })
  const receiver = new Endpoint({ config, sink: receiverSink, random, now: 0 })
  const topic = "/bench/engine/topic"
  const payload = new Uint8Array(updateBytes).fill(42)
  const batch = 100
  const msPerBatch = (batch / virtualRate) * 1000
  let now = 0
  // The sender's Announce.
  const local = sender.openSender(now)
  for (const d of toReceiver) receiver.onDatagram(d, "sender", now)
  toReceiver.length = 0

  const pump = () => {
    for (let i = 0; i < toReceiver.length; i++) receiver.onDatagram(toReceiver[i], "sender", now)
    toReceiver.length = 0
    for (let i = 0; i < toSender.length; i++) sender.onDatagram(toSender[i], "receiver", now)
    toSender.length = 0
  }
  const timers = () => {
    if (sender.nextDeadline() <= now) sender.onTimer(now)
    if (receiver.nextDeadline() <= now) receiver.onTimer(now)
  }

  const start = performance.now()
  let published = 0
  while (published < total) {
    for (let i = 0; i < batch; i++) sender.publish(local, topic, payload, now)
    sender.endBatch(local, now)
    published += batch
    pump()
    now += msPerBatch
    timers()
    if (toReceiver.length > 0 || toSender.length > 0) pump()
  }
  // Drain: held-back segment, heartbeats, NAK recovery (virtual time only).
  for (let guard = 0; guard < 100_000 && delivered < total; guard++) {
    const d = Math.min(sender.nextDeadline(), receiver.nextDeadline())
    if (!Number.isFinite(d)) break
    now = Math.max(now, d)
    timers()
    pump()
  }
  const elapsed = performance.now() - start
  if (delivered !== total || lostSegments !== 0) {
    throw new Error(
      `bench run incomplete: delivered ${delivered} of ${total}, ${lostSegments} segments lost (${[...lossReasons].map(([r, n]) => `${r} ${n}`).join(", ")})`
    )
  }
  return { perSec: (total / elapsed) * 1000, lost: lostSegments }
}

const median = (xs: Array<number>): number => {
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

const scenarios: ReadonlyArray<{ name: string; bytes: number; loss: number; total: number; virtualRate: number }> = [
  { name: "engine-64B", bytes: 64, loss: 0, total: 2_000_000, virtualRate: 1_000_000 },
  { name: "engine-1KiB", bytes: 1024, loss: 0, total: 500_000, virtualRate: 100_000 },
  { name: "engine-64B-loss5", bytes: 64, loss: 0.05, total: 1_000_000, virtualRate: 1_000_000 },
  { name: "engine-1KiB-loss5", bytes: 1024, loss: 0.05, total: 300_000, virtualRate: 100_000 }
]

const results: Array<Result> = []

if (process.argv.includes("--security")) {
  // The envelope's cost: the same loop with every datagram sealed and opened (both directions).
  const key = { id: 1, key: new Uint8Array(32).fill(7) }
  const variants: ReadonlyArray<readonly [string, EngineConfig]> = [
    ["plain", config],
    ["encrypt", { ...config, security: { mode: "encrypt", keys: [key], freshnessMs: 300_000, context: "bench" } }],
    [
      "authenticate",
      { ...config, security: { mode: "authenticate", keys: [key], freshnessMs: 300_000, context: "bench" } }
    ]
  ]
  for (const [, c] of variants) {
    run(c, 64, 0, 200_000, 1_000_000, "warmup-64")
    run(c, 1024, 0, 50_000, 100_000, "warmup-1k")
  }
  for (const s of scenarios.filter((x) => x.loss === 0)) {
    const reps = new Map<string, Array<number>>(variants.map(([name]) => [name, []]))
    for (let r = 0; r < 5; r++) {
      for (const [name, c] of variants)
        reps.get(name)!.push(run(c, s.bytes, 0, s.total, s.virtualRate, `${s.name}-${r}`).perSec)
    }
    const plain = median(reps.get("plain")!)
    for (const [name] of variants) {
      const perSec = median(reps.get(name)!)
      console.error(
        `${s.name} ${name}: ${Math.round(perSec).toLocaleString("en")} updates/s (median of 5), ${(perSec / plain).toFixed(2)}x plain`
      )
      console.log(
        JSON.stringify({
          scenario: `${s.name}-${name}`,
          updateBytes: s.bytes,
          loss: 0,
          updatesPerSec: Math.round(perSec),
          ratio: Number((perSec / plain).toFixed(3))
        })
      )
    }
  }
  process.exit(0)
}

// Warm-up (JIT) on a short run of each size.
run(config, 64, 0, 200_000, 1_000_000, "warmup-64")
run(config, 1024, 0, 50_000, 100_000, "warmup-1k")
for (const s of scenarios) {
  const reps: Array<number> = []
  for (let r = 0; r < 3; r++) reps.push(run(config, s.bytes, s.loss, s.total, s.virtualRate, `${s.name}-${r}`).perSec)
  const perSec = median(reps)
  console.error(`${s.name}: ${reps.map((x) => Math.round(x).toLocaleString("en")).join(", ")} updates/s (median)`)
  results.push({ scenario: s.name, updateBytes: s.bytes, loss: s.loss, updatesPerSec: Math.round(perSec) })
}
for (const r of results) console.log(JSON.stringify(r))
