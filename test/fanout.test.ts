/**
 * FanOut's direct consumers (`Connection.forEachChunk` on a subscription stream): the handler runs
 * from the drive itself, after what the mailbox held, in order and never re-entrantly; the
 * subscriber's end, failure and interruption reach the consumer as a stream's would.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { IrrecoverableLoss, SubscriberOverflow } from "../src/DistributorError.js"
import { forEachChunk } from "../src/internal/consume.js"
import { zeroShellStats } from "../src/internal/counters.js"
import { FanOut, type Item, type Subscriber } from "../src/internal/fanout.js"
import type { ReceivedUpdate, SessionInfo } from "../src/internal/protocol/engine.js"
import * as Topic from "../src/Topic.js"

const source: SessionInfo = {
  sessionId: 1n,
  sessionIdHex: "0000000000000001",
  senderIndex: 0,
  host: "h",
  application: "a",
  address: "127.0.0.1:1"
}

const update = (topic: string, n: number): ReceivedUpdate => ({
  topic,
  payload: new Uint8Array([n]),
  source,
  sequence: n
})

const loss = new IrrecoverableLoss({
  reason: "NotInSenderCache",
  connection: "239.1.2.3:7000",
  sessionId: source.sessionIdHex,
  host: source.host,
  application: source.application,
  firstSeq: 5,
  lastSeq: 6
})

const setup = (options: { readonly capacity?: number; readonly notify?: boolean } = {}) => {
  const counters = zeroShellStats()
  const fanout = new FanOut(counters, () => {})
  const pattern = Topic.parsePattern("/t/...")
  if (Either.isLeft(pattern)) throw pattern.left
  const sub: Subscriber = Effect.runSync(
    fanout.add("/t/...", pattern.right, { capacity: options.capacity ?? 1000, notify: options.notify ?? false })
  )
  /** One drive: the updates routed, then flushed. */
  const drive = (...ns: ReadonlyArray<number>) => {
    for (const n of ns) fanout.route(update("/t/x", n))
    fanout.flush()
  }
  return { fanout, sub, drive, counters, stream: fanout.stream(sub) }
}

/** What a consumer saw: update numbers, and loss notices as their tag. */
const record = () => {
  const seen: Array<number | string> = []
  const chunks: Array<number> = []
  const f = (chunk: Chunk.Chunk<Item>) => {
    chunks.push(chunk.length)
    for (const item of chunk) seen.push("payload" in item ? item.payload[0] : item._tag)
  }
  return { seen, chunks, f }
}

describe("FanOut direct consumer (forEachChunk on a subscription)", () => {
  it.effect("takes what the mailbox held first, then each drive's chunk as the drive ends", () =>
    Effect.gen(function* () {
      const { drive, stream } = setup()
      drive(1, 2)
      drive(3)
      const r = record()
      const fiber = yield* Effect.fork(forEachChunk(stream, r.f))
      yield* Effect.yieldNow()
      expect(r.seen).toEqual([1, 2, 3])
      // From now on the drive itself runs the handler: seen before anything yields.
      drive(4, 5)
      expect(r.seen).toEqual([1, 2, 3, 4, 5])
      expect(r.chunks.at(-1)).toBe(2)
      drive(6)
      expect(r.seen).toEqual([1, 2, 3, 4, 5, 6])
      yield* Fiber.interrupt(fiber)
    })
  )

  it.effect("ends when the subscriber ends, and fails with a loss after the updates before it", () =>
    Effect.gen(function* () {
      const ended = setup()
      const r1 = record()
      const f1 = yield* Effect.fork(forEachChunk(ended.stream, r1.f))
      yield* Effect.yieldNow()
      ended.drive(1)
      ended.fanout.end(ended.sub)
      expect(yield* Fiber.await(f1)).toStrictEqual(Exit.void)
      expect(r1.seen).toEqual([1])

      const failed = setup()
      const r2 = record()
      const f2 = yield* Effect.fork(forEachChunk(failed.stream, r2.f))
      yield* Effect.yieldNow()
      failed.fanout.route(update("/t/x", 1))
      failed.fanout.loss(loss, source, true, "/t/x")
      expect(yield* Fiber.await(f2)).toStrictEqual(Exit.fail(loss))
      expect(r2.seen).toEqual([1])

      // Ended before the consumer started: what was buffered, then the end.
      const early = setup()
      early.drive(7, 8)
      early.fanout.loss(loss, source, true, "/t/x")
      const r3 = record()
      expect(yield* Effect.exit(forEachChunk(early.stream, r3.f))).toStrictEqual(Exit.fail(loss))
      expect(r3.seen).toEqual([7, 8])
    })
  )

  it.effect("notify mode: losses come in order as values; no buffer bound applies", () =>
    Effect.gen(function* () {
      const { fanout, drive, stream, counters } = setup({ capacity: 2, notify: true })
      const r = record()
      const fiber = yield* Effect.fork(forEachChunk(stream, r.f))
      yield* Effect.yieldNow()
      drive(1, 2, 3, 4, 5)
      fanout.route(update("/t/x", 6))
      fanout.loss(loss, source, true, "/t/x")
      drive(7)
      expect(r.seen).toEqual([1, 2, 3, 4, 5, 6, "IrrecoverableLoss", 7])
      expect(counters.subscriberDrops).toBe(0)
      yield* Fiber.interrupt(fiber)
    })
  )

  it.effect("notify mode: drops before the consumer started are reported first", () =>
    Effect.gen(function* () {
      const { drive, stream, counters } = setup({ capacity: 2, notify: true })
      drive(1, 2)
      drive(3, 4) // no room: dropped, the notice is the one item beyond capacity
      drive(5) // no room even for a notice: owed
      expect(counters.subscriberDrops).toBe(3)
      const notices: Array<number> = []
      const r = record()
      const fiber = yield* Effect.fork(
        forEachChunk(stream, (chunk) => {
          r.f(chunk)
          for (const item of chunk) if (item instanceof SubscriberOverflow) notices.push(item.dropped)
        })
      )
      yield* Effect.yieldNow()
      drive(6)
      expect(r.seen).toEqual([1, 2, "SubscriberOverflow", "SubscriberOverflow", 6])
      expect(notices).toEqual([2, 1])
      yield* Fiber.interrupt(fiber)
    })
  )

  it.effect("a handler that publishes locally is not re-entered: the nested chunk comes after it returns", () =>
    Effect.gen(function* () {
      const { fanout, stream } = setup()
      const seen: Array<number> = []
      let depth = 0
      let maxDepth = 0
      const fiber = yield* Effect.fork(
        forEachChunk(stream, (chunk) => {
          depth++
          maxDepth = Math.max(maxDepth, depth)
          for (const item of chunk) {
            const n = (item as ReceivedUpdate).payload[0]
            seen.push(n)
            // A local publish from the handler: routed and flushed by a nested drive.
            if (n < 3) {
              fanout.route(update("/t/x", n + 10))
              fanout.flush()
            }
          }
          depth--
        })
      )
      yield* Effect.yieldNow()
      fanout.route(update("/t/x", 1))
      fanout.route(update("/t/x", 2))
      fanout.flush()
      expect(seen).toEqual([1, 2, 11, 12])
      expect(maxDepth).toBe(1)
      yield* Fiber.interrupt(fiber)
    })
  )

  it.effect("a throw is the consumer's defect; interrupted or dead, the subscriber goes back to its mailbox", () =>
    Effect.gen(function* () {
      const thrown = new Error("handler bug")
      const a = setup()
      const dying = yield* Effect.fork(
        forEachChunk(a.stream, () => {
          throw thrown
        })
      )
      yield* Effect.yieldNow()
      a.drive(1)
      expect(yield* Fiber.await(dying)).toStrictEqual(Exit.die(thrown))
      a.drive(2, 3)
      a.fanout.end(a.sub)
      expect(
        Chunk.toReadonlyArray(yield* Stream.runCollect(a.stream)).map((u) => (u as ReceivedUpdate).sequence)
      ).toEqual([2, 3])

      const b = setup()
      const r = record()
      const consumer = yield* Effect.fork(forEachChunk(b.stream, r.f))
      yield* Effect.yieldNow()
      b.drive(1)
      yield* Fiber.interrupt(consumer)
      b.drive(2)
      expect(r.seen).toEqual([1])
      // A new consumer gets what the mailbox kept, then continues directly.
      const r2 = record()
      const again = yield* Effect.fork(forEachChunk(b.stream, r2.f))
      yield* Effect.yieldNow()
      b.drive(3)
      expect(r2.seen).toEqual([2, 3])
      b.fanout.end(b.sub)
      expect(yield* Fiber.await(again)).toStrictEqual(Exit.void)
    })
  )

  it.effect("fail mode: a direct consumer never overflows; a later stream consumer does", () =>
    Effect.gen(function* () {
      const { drive, stream, counters, sub, fanout } = setup({ capacity: 2 })
      const r = record()
      const fiber = yield* Effect.fork(forEachChunk(stream, r.f))
      yield* Effect.yieldNow()
      drive(1, 2, 3, 4)
      expect(r.seen).toEqual([1, 2, 3, 4])
      expect(counters.subscriberOverflows).toBe(0)
      yield* Fiber.interrupt(fiber)
      drive(5, 6, 7)
      const exit = yield* Effect.exit(Stream.runDrain(stream))
      expect(Exit.isFailure(exit) && Exit.causeOption(exit)).toBeTruthy()
      expect(counters.subscriberOverflows).toBe(1)
      expect(sub.done).toBe(true)
      expect(fanout.size).toBe(0)
      expect(exit).toStrictEqual(
        Exit.fail(new SubscriberOverflow({ reason: "BufferFull", pattern: "/t/...", capacity: 2, dropped: 3 }))
      )
    })
  )
})
