/**
 * The hand-off from a socket's callback to a subscription's consumer, in one process, at 1 000
 * events/s (each from a 1 ms timer, so every hand-off starts from an idle, cold loop as at a low
 * publish rate): the time from the "receive" to the consumer's handler, p10 / p50 / p90.
 *
 *   npx tsx bench/handoff.bench.ts [--n 3000]
 *
 * Cases, each in a fresh process, one after the other:
 * - `call`: the handler called directly (the floor);
 * - `microtask`: through one `Promise.then`;
 * - `stream`: a Mailbox offered from the callback, consumed by `Stream.runForEachChunk` over
 *   `Mailbox.toStream` (a subscription's stream consumed the usual way);
 * - `direct`: a FanOut subscriber driven from the callback (route + flush, as a connection's
 *   drive does), consumed by `Connection.forEachChunk` on its own stream (`FanOut.consume`).
 * See bench/README.md "Consuming a subscription".
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Mailbox from "effect/Mailbox"
import * as Stream from "effect/Stream"
import { forEachChunk } from "../src/internal/consume.js"
import { zeroShellStats } from "../src/internal/counters.js"
import { FanOut } from "../src/internal/fanout.js"
import type { SessionInfo } from "../src/internal/protocol/engine.js"
import * as Topic from "../src/Topic.js"

const CASES = ["call", "microtask", "stream", "direct"] as const
type Case = (typeof CASES)[number]

const argv = process.argv.slice(2)
const opt = (name: string) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const n = Number(opt("--n") ?? 3000)
const nowUs = () => Number(process.hrtime.bigint()) / 1000

const source: SessionInfo = {
  sessionId: 1n,
  sessionIdHex: "0000000000000001",
  senderIndex: 0,
  host: "bench",
  application: "handoff",
  address: "127.0.0.1:1"
}

/** Runs `receive` from a 1 ms interval `n` times; `sample` is called by the handler. */
const measure = async (receive: () => void): Promise<void> =>
  new Promise<void>((resolve) => {
    let i = 0
    const timer = setInterval(() => {
      receivedAt = nowUs()
      receive()
      if (++i >= n) {
        clearInterval(timer)
        setTimeout(resolve, 20)
      }
    }, 1)
  })

let receivedAt = 0
const samples: Array<number> = []
const handler = () => {
  samples.push(nowUs() - receivedAt)
}

const runCase = async (c: Case): Promise<void> => {
  switch (c) {
    case "call":
      return measure(handler)
    case "microtask":
      return measure(() => {
        Promise.resolve().then(handler)
      })
    case "stream":
      return Effect.runPromise(
        Effect.gen(function* () {
          const mailbox = yield* Mailbox.make<number>()
          yield* Effect.fork(Stream.runForEachChunk(Mailbox.toStream(mailbox), () => Effect.sync(handler)))
          yield* Effect.promise(() => measure(() => mailbox.unsafeOfferAll(Chunk.of(1))))
        })
      )
    case "direct": {
      const fanout = new FanOut(zeroShellStats(), () => {})
      const pattern = Topic.parsePattern("/bench/...")
      if (Either.isLeft(pattern)) throw pattern.left
      const payload = new Uint8Array(64)
      return Effect.runPromise(
        Effect.gen(function* () {
          const sub = yield* fanout.add("/bench/...", pattern.right, { capacity: 1 << 20, notify: false })
          yield* Effect.fork(forEachChunk(fanout.stream(sub), handler))
          yield* Effect.yieldNow()
          yield* Effect.promise(() =>
            measure(() => {
              fanout.route({ topic: "/bench/t", payload, source, sequence: 1 })
              fanout.flush()
            })
          )
        })
      )
    }
  }
}

const child = opt("--case") as Case | undefined
if (child !== undefined) {
  await runCase(child)
  const s = Float64Array.from(samples).sort()
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]
  process.stdout.write(JSON.stringify({ n: s.length, p10: q(0.1), p50: q(0.5), p90: q(0.9) }) + "\n")
} else {
  const self = fileURLToPath(import.meta.url)
  process.stdout.write(
    `hand-off latency, ${n} events at 1 000/s per case, µs\n\n| case | p10 | p50 | p90 |\n| --- | ---: | ---: | ---: |\n`
  )
  for (const c of CASES) {
    const r = spawnSync(process.execPath, [...process.execArgv, self, "--case", c, "--n", String(n)], {
      encoding: "utf8"
    })
    if (r.status !== 0) throw new Error(`${c}: ${r.stderr}`)
    const x = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { p10: number; p50: number; p90: number }
    process.stdout.write(`| ${c} | ${x.p10.toFixed(1)} | ${x.p50.toFixed(1)} | ${x.p90.toFixed(1)} |\n`)
  }
}
