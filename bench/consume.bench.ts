/**
 * What consuming a subscription's chunks costs, by the way the consumer is written, without any
 * socket: a Mailbox (as a subscription's) is offered one chunk of fresh updates per macrotask (as a
 * socket wake-up does) and drained by the stream consumer under test.
 *
 *   npx tsx bench/consume.bench.ts [chunks=3000] [updatesPerChunk=1088]
 *
 * Prints, per variant, CPU ns per update (process.cpuUsage over the run) and the time V8 spent in
 * young- and full-generation collections (perf_hooks "gc" entries). Each variant runs in a fresh
 * process, so V8's allocation-site feedback from one does not leak into the next.
 */
import { execFileSync } from "node:child_process"
import { constants, PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Mailbox from "effect/Mailbox"
import * as Stream from "effect/Stream"
import * as Connection from "../src/Connection.js"

const VARIANTS = {
  "Stream.runForEachChunk + Effect.sync": (s: Stream.Stream<Upd>, body: Body) =>
    Stream.runForEachChunk(s, (c) => Effect.sync(() => body(c))),
  "Stream.runForEach + Effect.sync (per update)": (s: Stream.Stream<Upd>, body: Body) =>
    Stream.runForEach(s, (u) => Effect.sync(() => body(Chunk.of(u)))),
  "Connection.forEachChunk": (s: Stream.Stream<Upd>, body: Body) => Connection.forEachChunk(s, body)
} as const
type Name = keyof typeof VARIANTS
interface Upd {
  readonly topic: string
  readonly payload: Uint8Array
  readonly sequence: number
}
type Body = (c: Chunk.Chunk<Upd>) => void

const runOne = async (name: Name, chunks: number, perChunk: number) => {
  const data = new ArrayBuffer(perChunk * 64)
  let consumed = 0
  const body: Body = (c) => {
    for (const u of c) consumed += u.payload[0] === 0 ? 1 : 0
  }
  const gc = { minor: 0, major: 0 }
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as any).detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor += e.duration
      else gc.major += e.duration
    }
  })
  obs.observe({ entryTypes: ["gc"] })
  const cpu0 = process.cpuUsage()
  await Effect.runPromise(
    Effect.gen(function* () {
      const mailbox = yield* Mailbox.make<Upd>()
      const consumer = yield* Effect.fork(VARIANTS[name](Mailbox.toStream(mailbox), body))
      yield* Effect.async<void>((resume) => {
        let n = 0
        const tick = () => {
          if (n++ === chunks) return resume(Effect.void)
          const batch: Array<Upd> = new Array(perChunk)
          for (let i = 0; i < perChunk; i++) {
            batch[i] = { topic: "/bench/t", payload: new Uint8Array(data, i * 64, 64), sequence: n }
          }
          mailbox.unsafeOfferAll(Chunk.unsafeFromArray(batch))
          setImmediate(tick)
        }
        tick()
      })
      yield* mailbox.end
      yield* consumer.await
    })
  )
  const cpu = process.cpuUsage(cpu0)
  obs.disconnect()
  const updates = chunks * perChunk
  if (consumed !== updates) throw new Error(`${name}: consumed ${consumed} of ${updates}`)
  return { cpuNs: ((cpu.user + cpu.system) * 1000) / updates, minorMs: gc.minor, majorMs: gc.major }
}

// `consume.bench.ts [chunks] [perChunk]` runs every variant, each in a child started as
// `consume.bench.ts <variant> chunks perChunk`.
const child = process.argv[2] !== undefined && process.argv[2] in VARIANTS ? (process.argv[2] as Name) : undefined
const [c = 3000, p = 1088] = process.argv.slice(child === undefined ? 2 : 3).map(Number)
if (child !== undefined) {
  process.stdout.write(JSON.stringify(await runOne(child, c, p)))
} else {
  console.log(`${c} chunks of ${p} updates, one chunk per macrotask; node ${process.version}\n`)
  console.log("| consumer | CPU ns/update | young-gen GC ms | full GC ms |")
  console.log("| --- | ---: | ---: | ---: |")
  const self = fileURLToPath(import.meta.url)
  for (const name of Object.keys(VARIANTS) as Array<Name>) {
    const out = execFileSync(process.execPath, [...process.execArgv, self, name, String(c), String(p)], {
      encoding: "utf8"
    })
    const r = JSON.parse(out) as { cpuNs: number; minorMs: number; majorMs: number }
    console.log(`| ${name} | ${r.cpuNs.toFixed(0)} | ${r.minorMs.toFixed(0)} | ${r.majorMs.toFixed(0)} |`)
  }
}
