/**
 * End-to-end tests of the public API over `Transport.layerMemory`: two Distributors (two
 * "processes") on one simulated, lossy network.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Connection from "../src/Connection.js"
import * as ConnectionModule from "../src/Connection.js"
import * as Distributor from "../src/Distributor.js"
import {
  InvalidOption,
  InvalidPayload,
  type IrrecoverableLoss,
  type SubscriberOverflow
} from "../src/DistributorError.js"
import * as Transport from "../src/Transport.js"

const group = { group: "239.255.10.1", port: 7001 }
const fast = { nakBackoffMs: 5, nakRetryIntervalMs: 20, heartbeatIntervalMs: 200, senderTimeoutMs: 2_000 }

const twoNodes = (options: { readonly connection?: Record<string, unknown> } = {}) =>
  Effect.gen(function* () {
    const a = yield* Distributor.make({ application: "node-a", host: "host-a", console: { enabled: false } })
    const b = yield* Distributor.make({ application: "node-b", host: "host-b", console: { enabled: false } })
    const ca = yield* a.connection({ ...group, ...fast, ...options.connection })
    const cb = yield* b.connection({ ...group, ...fast, ...options.connection })
    return { a, b, ca, cb }
  })

/** Wait until the connection has registered `n` subscriptions (a forked stream has started). */
const awaitSubscriptions = (conn: Connection.ConnectionService, n: number) =>
  Effect.repeat(conn.stats, { until: (s) => s.subscriptions.length >= n }).pipe(Effect.asVoid)

/** What an untyped (JavaScript) caller can pass where the types say otherwise. */
const untyped = <T>(u: unknown): T => u as T

const payloadOf = (i: number) => new TextEncoder().encode(`update-${i}`)
const decode = (u: Connection.Update) => new TextDecoder().decode(u.payload)

describe("Connection over Transport.layerMemory", () => {
  it.scopedLive("delivers every update in order across a lossy network", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const n = 2_000
      const received = yield* cb.subscribe("/prices/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const publisher = yield* ca.publisher
      for (let i = 0; i < n; i++) yield* publisher.publish(`/prices/eq/${i % 7}`, payloadOf(i))
      const updates = Chunk.toReadonlyArray(yield* Fiber.join(received))
      expect(updates.map(decode)).toEqual(Array.from({ length: n }, (_, i) => `update-${i}`))
      expect(updates.every((u) => u.source.application === "node-a" && u.source.host === "host-a")).toBe(true)
      const stats = yield* cb.stats
      expect(stats.retransmissionsReceived).toBeGreaterThan(0)
      expect(stats.lostSegments).toBe(0)
    }).pipe(Effect.provide(Transport.layerMemory({ seed: 7, link: { loss: 0.05, reorder: 0.02, duplicate: 0.02 } })))
  )

  it.scopedLive("filters by pattern and reaches the process's own subscribers", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const local = yield* ca.subscribe("/a/*").pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      const remote = yield* cb.subscribe("/b/...").pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(ca, 1)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      yield* p.publishAll([
        ["/a/1", "x"],
        ["/a/1/deeper", "not for /a/*"],
        ["/b", "not for /b/..."],
        ["/b/1", "y"],
        ["/a/2", "z"],
        ["/b/2/3", "w"]
      ])
      expect(Chunk.toReadonlyArray(yield* Fiber.join(local)).map((u) => u.topic)).toEqual(["/a/1", "/a/2"])
      expect(Chunk.toReadonlyArray(yield* Fiber.join(remote)).map(decode)).toEqual(["y", "w"])
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("publishAll: an array, a Set and a generator alike; the same effect run twice publishes twice", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const received = yield* cb.subscribe("/r/...").pipe(Stream.take(7), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      const twice = p.publishAll([
        ["/r/a", "1"],
        ["/r/b", "2"]
      ])
      yield* twice
      yield* twice
      yield* p.publishAll(new Set([["/r/c", "3"] as const, ["/r/d", "4"] as const]))
      yield* p.publishAll(
        (function* () {
          yield ["/r/e", "5"] as const
        })()
      )
      expect(Chunk.toReadonlyArray(yield* Fiber.join(received)).map(decode)).toEqual([
        "1",
        "2",
        "1",
        "2",
        "3",
        "4",
        "5"
      ])
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("segments and reassembles a 1 MiB update under loss", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const big = new Uint8Array(1 << 20)
      for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff
      const received = yield* cb.subscribe("/big").pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      yield* p.publish("/big", big)
      const [update] = Chunk.toReadonlyArray(yield* Fiber.join(received))
      expect(update.payload.length).toBe(big.length)
      expect(Buffer.compare(Buffer.from(update.payload), Buffer.from(big))).toBe(0)
    }).pipe(Effect.provide(Transport.layerMemory({ seed: 3, link: { loss: 0.05 } })))
  )

  it.scopedLive("fails the stream with IrrecoverableLoss when retransmissions never arrive", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes({ connection: { nakMaxRetries: 2 } })
      const result = yield* cb.subscribe("/t").pipe(Stream.runCollect, Effect.either, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      for (let i = 0; i < 5; i++) yield* p.publish("/t", payloadOf(i))
      const either = yield* Fiber.join(result)
      expect(either._tag).toBe("Left")
      if (either._tag === "Left") {
        const error = either.left as IrrecoverableLoss
        expect(error._tag).toBe("IrrecoverableLoss")
        expect(error.reason).toBe("RetriesExhausted")
        expect(error.application).toBe("node-a")
        expect([error.firstSeq, error.lastSeq]).toEqual([2, 2])
      }
    }).pipe(
      Effect.provide(
        Transport.layerMemory({
          // Data segment #2 and every retransmission from A to B are lost.
          link: {
            drop: (_bytes, ctx) =>
              ctx.from.startsWith("mem-1") && ctx.class === "data" && (ctx.classIndex === 2 || ctx.retransmission)
          }
        })
      )
    )
  )

  it.scopedLive("with onLoss: notify, delivers the loss as a value and goes on", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes({ connection: { nakMaxRetries: 1, holdbackDelayMs: 0 } })
      const items = yield* cb.subscribe("/t", { onLoss: "notify" }).pipe(Stream.take(5), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      for (let i = 0; i < 5; i++) yield* p.publish("/t", payloadOf(i))
      const out = Chunk.toReadonlyArray(yield* Fiber.join(items))
      const tags = out.map((x) => ("_tag" in x ? x._tag : decode(x as Connection.Update)))
      expect(tags).toEqual(["update-0", "IrrecoverableLoss", "update-2", "update-3", "update-4"])
    }).pipe(
      Effect.provide(
        Transport.layerMemory({
          link: {
            drop: (_bytes, ctx) =>
              ctx.from.startsWith("mem-1") && ctx.class === "data" && (ctx.classIndex === 2 || ctx.retransmission)
          }
        })
      )
    )
  )

  it.scopedLive("typed publish/subscribe round-trips dates and nested values; bad payloads are typed errors", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const Trade = Schema.Struct({
        at: Schema.Date,
        price: Schema.Number,
        legs: Schema.Array(Schema.Struct({ venue: Schema.String, qty: Schema.Int }))
      })
      const received = yield* cb
        .subscribe("/trades/*", { schema: Trade })
        .pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      const failing = yield* cb.subscribe("/raw", { schema: Trade }).pipe(Stream.runCollect, Effect.either, Effect.fork)
      yield* awaitSubscriptions(cb, 2)
      const p = yield* ca.publisher
      const trade = { at: new Date("2026-11-24T10:00:00.123Z"), price: 42.17, legs: [{ venue: "X", qty: 3 }] }
      yield* p.typed(Trade).publish("/trades/abc", trade)
      const [update] = Chunk.toReadonlyArray(yield* Fiber.join(received))
      expect(update.value).toEqual(trade)
      expect(update.value.at).toBeInstanceOf(Date)
      yield* p.publish("/raw", "{not json")
      const either = yield* Fiber.join(failing)
      expect(either._tag === "Left" && either.left._tag).toBe("PayloadCodecError")
      if (either._tag === "Left" && either.left._tag === "PayloadCodecError") {
        expect(either.left.reason).toBe("InvalidJson")
      }
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive(
    "a fail-mode subscriber that overflows fails at its next pull, backlog discarded; others unaffected",
    () =>
      Effect.gen(function* () {
        const { ca, cb } = yield* twoNodes()
        // Subscribed but never consumed until publishing is over.
        const slowScope = yield* Scope.make()
        const slowStream = yield* cb.subscribeScoped("/x", { bufferSize: 10 }).pipe(Scope.extend(slowScope))
        const slow = yield* Stream.toPull(slowStream).pipe(Scope.extend(slowScope))
        const fast = yield* cb.subscribe("/x").pipe(Stream.take(100), Stream.runCollect, Effect.fork)
        yield* awaitSubscriptions(cb, 2)
        const p = yield* ca.publisher
        for (let i = 0; i < 100; i++) yield* p.publish("/x", payloadOf(i))
        expect(Chunk.size(yield* Fiber.join(fast))).toBe(100)
        // The slow one: its ten buffered updates were discarded; the very first pull fails.
        const exit = yield* Effect.exit(slow)
        const failure = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
        const error = failure?._tag === "Some" ? (failure.value as SubscriberOverflow) : undefined
        expect(error?._tag).toBe("SubscriberOverflow")
        expect(error?.capacity).toBe(10)
        // Everything routed to it up to the overflow: the ten buffered and the drive that did not fit
        // (how many updates one drive carries depends on how the network batched them).
        expect(error?.dropped).toBeGreaterThanOrEqual(11)
        const stats = yield* cb.stats
        expect(stats.subscriberOverflows).toBe(1)
        expect(stats.subscriberDrops).toBe(error?.dropped)
        expect(stats.subscriptions).toEqual([]) // the slow one failed, the fast one took its 100
        yield* Scope.close(slowScope, Exit.void)
      }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("an onLoss: notify subscriber stays within bufferSize + 1 and its notices count every drop", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const scope = yield* Scope.make()
      const stream = yield* cb.subscribeScoped("/x", { bufferSize: 10, onLoss: "notify" }).pipe(Scope.extend(scope))
      // The reader outlives the subscription's scope, to read what is left after it ends.
      const pull = yield* Stream.toPull(stream)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      const buffered = () => Effect.map(cb.stats, (s) => s.subscriptions[0].buffered)
      const updates: Array<string> = []
      const notices: Array<number> = []
      const take = Effect.map(pull, (chunk) => {
        for (const item of chunk) {
          if ("payload" in item) updates.push(decode(item))
          else if (item._tag === "SubscriberOverflow") notices.push(item.dropped)
        }
      })
      let sent = 0
      const publishSome = (n: number) =>
        Effect.gen(function* () {
          for (let i = 0; i < n; i++) {
            yield* p.publish("/x", payloadOf(sent++))
            // every update in a drive of its own: the old fan-out added a notice per drive
            yield* Effect.repeat(cb.stats, { until: (s) => s.updatesIn >= sent })
            expect(yield* buffered()).toBeLessThanOrEqual(11)
          }
        })
      yield* publishSome(100)
      expect(yield* buffered()).toBe(11)
      // Consume a little (one pull takes everything buffered), then overflow again.
      yield* take
      yield* publishSome(50)
      while ((yield* buffered()) > 0) yield* take
      // Overflow once more, and end the subscription with drops still unreported: a last notice
      // reports them before the stream ends.
      yield* publishSome(30)
      yield* Scope.close(scope, Exit.void)
      const end = yield* Effect.exit(Effect.forever(take))
      expect(Exit.isFailure(end)).toBe(true)
      const dropped = notices.reduce((a, b) => a + b, 0)
      expect(updates.length + dropped).toBe(sent)
      // In order, with gaps exactly where the notices said.
      const seqs = updates.map((u) => Number(u.slice("update-".length)))
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
      const stats = yield* cb.stats
      expect(stats.subscriberDrops).toBe(dropped)
      expect(stats.subscriberOverflows).toBe(notices.length)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("reports session events: joined and closed", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const events = yield* cb.events.pipe(
        Stream.filter((e) => e._tag === "Joined" || e._tag === "Closed"),
        Stream.take(2),
        Stream.runCollect,
        Effect.fork
      )
      yield* Effect.sleep("10 millis")
      yield* Effect.scoped(Effect.flatMap(ca.publisher, (p) => p.publish("/hello", "world")))
      const out = Chunk.toReadonlyArray(yield* Fiber.join(events))
      expect(out.map((e) => e._tag)).toEqual(["Joined", "Closed"])
      expect(out[0]._tag === "Joined" && out[0].session.application).toBe("node-a")
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("rejects bad topics, patterns and oversized updates with typed errors", () =>
    Effect.gen(function* () {
      const { ca } = yield* twoNodes({ connection: { maxUpdateSize: 1024 } })
      const p = yield* ca.publisher
      const badTopic = yield* Effect.flip(p.publish("/a/*", "x"))
      expect(badTopic._tag).toBe("InvalidTopic")
      const badPattern = yield* Effect.flip(Stream.runDrain(ca.subscribe("no-slash")))
      expect(badPattern._tag === "InvalidTopic" && badPattern.reason).toBe("NoLeadingSlash")
      const tooLarge = yield* Effect.flip(p.publish("/a", new Uint8Array(2048)))
      expect(tooLarge._tag === "UpdateTooLarge" && tooLarge.maxSize).toBe(1024)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("untyped callers' topics and payloads are typed errors, never a TypeError", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const received = yield* cb.subscribe("/ok").pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      const surrogate = yield* Effect.flip(p.publish("/a/\ud800", "x"))
      expect(surrogate._tag === "InvalidTopic" && surrogate.reason).toBe("LoneSurrogate")
      for (const topic of [42, undefined, null, {}]) {
        const error = yield* Effect.flip(p.publish(untyped(topic), "x"))
        expect(error._tag === "InvalidTopic" && error.reason).toBe("NotAString")
        const inBatch = yield* Effect.flip(p.publishAll([[untyped(topic), "x"]]))
        expect(inBatch._tag === "InvalidTopic" && inBatch.reason).toBe("NotAString")
      }
      for (const payload of [42, undefined, null, { a: 1 }, [1, 2], new Uint16Array(2), new ArrayBuffer(4)]) {
        const error = yield* Effect.flip(p.publish("/a", untyped(payload)))
        expect(error).toBeInstanceOf(InvalidPayload)
        expect(error._tag === "InvalidPayload" && [error.reason, error.topic]).toEqual(["NotStringOrBytes", "/a"])
        const inBatch = yield* Effect.flip(
          p.publishAll([
            ["/a", "fine"],
            ["/a", untyped(payload)]
          ])
        )
        expect(inBatch._tag === "InvalidPayload" && inBatch.reason).toBe("NotStringOrBytes")
      }
      const notEntry = yield* Effect.flip(p.publishAll([untyped(null)]))
      expect(notEntry._tag === "InvalidPayload" && notEntry.reason).toBe("NotAnEntry")
      for (const updates of [null, 42, {}]) {
        const error = yield* Effect.flip(p.publishAll(untyped(updates)))
        expect(error._tag === "InvalidPayload" && error.reason).toBe("NotIterable")
      }
      const throwing = {
        [Symbol.iterator]: () => {
          throw new Error("boom")
        }
      }
      const thrown = yield* Effect.flip(p.publishAll(untyped(throwing)))
      expect(thrown._tag === "InvalidPayload" && thrown.detail).toContain("boom")
      // A Buffer is a Uint8Array; and the publisher still works after all of that.
      yield* p.publish("/ok", Buffer.from("fine"))
      expect(Chunk.toReadonlyArray(yield* Fiber.join(received)).map(decode)).toEqual(["fine"])
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("bad subscribe options fail subscribe and subscribeScoped with InvalidOption", () =>
    Effect.gen(function* () {
      const { cb } = yield* twoNodes()
      const bad: Array<[options: unknown, option: string, reason: string]> = [
        [{ bufferSize: Number.NaN }, "bufferSize", "InvalidValue"],
        [{ bufferSize: 0 }, "bufferSize", "InvalidValue"],
        [{ bufferSize: -5 }, "bufferSize", "InvalidValue"],
        [{ bufferSize: 1.5 }, "bufferSize", "InvalidValue"],
        [{ bufferSize: Number.POSITIVE_INFINITY }, "bufferSize", "InvalidValue"],
        [{ bufferSize: "10" }, "bufferSize", "InvalidValue"],
        [{ bufferSize: 2 ** 24 + 1 }, "bufferSize", "InvalidValue"],
        [{ onLoss: "bogus" }, "onLoss", "InvalidValue"],
        [{ schema: "Trade" }, "schema", "InvalidValue"],
        [{ bufersize: 10 }, "bufersize", "UnknownOption"],
        [42, "", "InvalidValue"],
        [null, "", "InvalidValue"]
      ]
      for (const [options, option, reason] of bad) {
        const scoped = yield* Effect.flip(
          Effect.scoped(cb.subscribeScoped("/a", untyped<Connection.SubscribeOptions>(options)))
        )
        expect(scoped).toBeInstanceOf(InvalidOption)
        expect(scoped._tag === "InvalidOption" && [scoped.operation, scoped.option, scoped.reason]).toEqual([
          "subscribe",
          option,
          reason
        ])
        const streamed = yield* Effect.flip(
          Stream.runDrain(cb.subscribe("/a", untyped<Connection.SubscribeOptions>(options)))
        )
        expect(streamed._tag === "InvalidOption" && streamed.option).toBe(option)
      }
      // Nothing was registered by the failed attempts; the edges of the range are fine.
      expect((yield* cb.stats).subscriptions).toEqual([])
      yield* cb.subscribeScoped("/a", { bufferSize: 1, onLoss: "fail" })
      yield* cb.subscribeScoped("/a", { bufferSize: 2 ** 24, onLoss: "notify" })
      yield* cb.subscribeScoped(
        "/a",
        untyped<Connection.SubscribeOptions>({ bufferSize: undefined, onLoss: undefined })
      )
      expect((yield* cb.stats).subscriptions.length).toBe(3)
      const patternSurrogate = yield* Effect.flip(Effect.scoped(cb.subscribeScoped("/a/\ud800/...")))
      expect(patternSurrogate._tag === "InvalidTopic" && patternSurrogate.reason).toBe("LoneSurrogate")
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("closing the connection ends subscriptions and refuses further publishes", () =>
    Effect.gen(function* () {
      const d = yield* Distributor.make({ application: "solo", console: { enabled: false } })
      const scope = yield* Scope.make()
      const conn = yield* d.connection(group).pipe(Scope.extend(scope))
      const p = yield* conn.publisher.pipe(Scope.extend(scope))
      const sub = yield* conn.subscribe("/...").pipe(Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(conn, 1)
      yield* p.publish("/a", "1")
      yield* Scope.close(scope, Exit.void)
      const delivered = yield* Fiber.join(sub)
      expect(Chunk.toReadonlyArray(delivered).map(decode)).toEqual(["1"])
      const error = yield* Effect.flip(p.publish("/a", "2"))
      expect(error._tag).toBe("ConnectionClosed")
      expect((yield* d.connections).length).toBe(0)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scoped("timers run on the TestClock: a lost datagram is recovered when the clock advances", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const received = yield* cb.subscribe("/t").pipe(Stream.take(3), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const p = yield* ca.publisher
      for (let i = 0; i < 3; i++) yield* p.publish("/t", payloadOf(i))
      // The gap is noticed, but the NAK waits for its back-off: nothing past update-0 yet.
      yield* Effect.yieldNow()
      expect((yield* cb.stats).naksSent).toBe(0)
      yield* TestClock.adjust("1 second")
      const out = Chunk.toReadonlyArray(yield* Fiber.join(received))
      expect(out.map(decode)).toEqual(["update-0", "update-1", "update-2"])
      expect((yield* cb.stats).naksSent).toBeGreaterThan(0)
    }).pipe(
      Effect.provide(
        Transport.layerMemory({
          link: { drop: (_b, ctx) => ctx.from.startsWith("mem-1") && ctx.class === "data" && ctx.classIndex === 2 }
        })
      )
    )
  )

  describe("channels: data on port, NAKs and Status on controlPort", () => {
    const updates = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => [`${prefix}/${i}`, String(i)] as const)

    it.scopedLive("a publish-only connection receives no data; its first subscription joins the data channel", () =>
      Effect.gen(function* () {
        const { ca, cb } = yield* twoNodes()
        const atB = yield* cb.subscribeScoped("/t/...")
        const pa = yield* ca.publisher
        // b's Status reaches a on the control channel: flow control and presence work publish-only.
        yield* pa.awaitReceivers(1)
        const pb = yield* cb.publisher
        yield* pb.publishAll(updates("/t/b", 50))
        yield* pa.publishAll(updates("/t/a", 50))
        expect(Chunk.size(yield* Stream.runCollect(Stream.take(atB, 100)))).toBe(100)
        const before = yield* ca.stats
        // a heard b's reports and nothing of b's data: every datagram in was a control packet.
        expect(before.statusReceived).toBeGreaterThan(0)
        expect(before.datagramsIn).toBe(before.statusReceived + before.naksReceived)
        expect(before.remoteSessions).toEqual([])
        // Subscribing joins the data channel: b's session is heard from its next packet on.
        const atA = yield* ca.subscribeScoped("/u/...")
        yield* pb.publish("/u/1", "after")
        const first = yield* Stream.runHead(atA)
        expect(first._tag === "Some" && first.value.topic).toBe("/u/1")
        const after = yield* ca.stats
        expect(after.remoteSessions.map((r) => r.session.sessionId)).toEqual([pb.source.sessionId])
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 11 })))
    )

    it.scopedLive("an events stream joins the data channel too: remote senders show up without subscriptions", () =>
      Effect.gen(function* () {
        const { ca, cb } = yield* twoNodes()
        const joined = yield* ca.presence.pipe(
          Stream.filter((e) => e._tag === "Joined"),
          Stream.runHead,
          Effect.fork
        )
        yield* Effect.repeat(Effect.sleep("5 millis"), { times: 20 })
        const pb = yield* cb.publisher
        yield* pb.publish("/v/1", "x")
        const event = yield* Fiber.join(joined).pipe(Effect.timeout("5 seconds"))
        expect(event._tag === "Some" && event.value._tag === "Joined" && event.value.session.sessionId).toBe(
          pb.source.sessionId
        )
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 12 })))
    )

    it.scopedLive("connections on adjacent ports in different processes keep their traffic apart", () =>
      Effect.gen(function* () {
        // a: data 7101, control 7102. b: data 7102 (a's control port), control 7103.
        const { a, b } = yield* twoNodes()
        const ca = yield* a.connection({ ...group, port: 7101 })
        const cb = yield* b.connection({ ...group, port: 7102 })
        const atA = yield* ca.subscribeScoped("/...")
        const atB = yield* cb.subscribeScoped("/...")
        const pa = yield* ca.publisher
        const pb = yield* cb.publisher
        yield* pa.publishAll(updates("/from/a", 20))
        yield* pb.publishAll(updates("/from/b", 20))
        const gotA = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(atA, 20)))
        const gotB = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(atB, 20)))
        expect(gotA.every((u) => u.topic.startsWith("/from/a/"))).toBe(true)
        expect(gotB.every((u) => u.topic.startsWith("/from/b/"))).toBe(true)
        // b's data reached a's control socket, a's status b's data socket: dropped and counted
        // (a reports every statusIntervalMs while receiving).
        const [sa, sb] = yield* Effect.all([ca.stats, cb.stats]).pipe(
          Effect.delay("20 millis"),
          Effect.repeat({ until: ([x, y]) => x.wrongChannel > 0 && y.wrongChannel > 0 }),
          Effect.timeout("5 seconds")
        )
        expect(sa.wrongChannel).toBeGreaterThan(0)
        expect(sb.wrongChannel).toBeGreaterThan(0)
        expect(sa.remoteSessions).toEqual([])
        expect(sb.remoteSessions).toEqual([])
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 14 })))
    )

    it.scoped("one Distributor refuses a connection whose data or control port another one on the group uses", () =>
      Effect.gen(function* () {
        const d = yield* Distributor.make({ application: "x", console: { enabled: false } })
        yield* d.connection({ ...group, port: 7201 })
        const clash = yield* Effect.flip(d.connection({ ...group, port: 7202 }))
        expect(clash._tag).toBe("InvalidConfig")
        expect(clash._tag === "InvalidConfig" && clash.path).toBe("port")
        const clash2 = yield* Effect.flip(d.connection({ ...group, port: 7300, controlPort: 7201 }))
        expect(clash2._tag === "InvalidConfig" && clash2.path).toBe("controlPort")
        // Two apart is fine; so is the same port on another group.
        yield* d.connection({ ...group, port: 7203 })
        yield* d.connection({ group: "239.255.10.2", port: 7202 })
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 15 })))
    )

    it.scopedLive("controlPort = port: one channel, every connection joined from the start", () =>
      Effect.gen(function* () {
        const { ca, cb } = yield* twoNodes({ connection: { controlPort: group.port } })
        expect(ca.config.effectiveControlPort).toBe(group.port)
        const pb = yield* cb.publisher
        yield* pb.publishAll(updates("/w", 10))
        const stats = yield* Effect.repeat(ca.stats, { until: (s) => s.remoteSessions.length > 0 }).pipe(
          Effect.timeout("5 seconds")
        )
        expect(stats.remoteSessions.map((r) => r.session.sessionId)).toEqual([pb.source.sessionId])
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 13 })))
    )
  })

  it.scoped("unsafePublish: published, blocked while pacing would suspend publish, or the typed error", () =>
    Effect.gen(function* () {
      // 20 kB/s: the first datagrams use up the burst, then publish would sleep.
      const { ca, cb } = yield* twoNodes({ connection: { maxBandwidth: 20_000, holdbackDelayMs: 0 } })
      const received = yield* cb.subscribeScoped("/s/...")
      const p = yield* ca.publisher
      const invalid = p.unsafePublish("no-slash", "x")
      expect(typeof invalid === "object" && invalid._tag).toBe("InvalidTopic")
      const results: Array<string> = []
      for (let i = 0; i < 200; i++) {
        const r = p.unsafePublish(`/s/${i}`, new Uint8Array(500))
        results.push(typeof r === "string" ? r : r._tag)
        if (r === "blocked") break
      }
      expect(results.at(-1)).toBe("blocked")
      const published = results.filter((r) => r === "published").length
      expect(published).toBeGreaterThan(0)
      // What was published arrives (the clock moves on so the paced datagrams leave); publish waits.
      const fiber = yield* Effect.fork(p.publish("/s/last", "after the wait"))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(fiber)
      const got = yield* Stream.runCollect(Stream.take(received, published + 1))
      expect(Chunk.toReadonlyArray(got).map((u) => u.topic)).toEqual([
        ...Array.from({ length: published }, (_, i) => `/s/${i}`),
        "/s/last"
      ])
    }).pipe(Effect.provide(Transport.layerMemory({ seed: 21 })))
  )

  it.scoped("unsafePublishAll: takes what publishAll would not wait for, says how many, or the typed error", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes({ connection: { maxBandwidth: 20_000, holdbackDelayMs: 0 } })
      const received = yield* cb.subscribeScoped("/s/...")
      const p = yield* ca.publisher
      // Not an array at all, then a bad topic: the update before it is published, as with publishAll.
      const notArray = p.unsafePublishAll(42 as unknown as ReadonlyArray<readonly [string, string]>)
      expect(typeof notArray === "object" && notArray._tag).toBe("InvalidPayload")
      const invalid = p.unsafePublishAll([
        ["/s/first", "x"],
        ["no-slash", "y"],
        ["/s/never", "z"]
      ])
      expect(typeof invalid === "object" && invalid._tag).toBe("InvalidTopic")
      // 200 × 500 B at 20 kB/s: the burst allowance takes some, then publishAll would sleep.
      const batch = Array.from({ length: 200 }, (_, i) => [`/s/${i}`, new Uint8Array(500)] as const)
      const taken = p.unsafePublishAll(batch)
      expect(typeof taken).toBe("number")
      const n = taken as number
      expect(n).toBeGreaterThan(0)
      expect(n).toBeLessThan(batch.length)
      // Nothing more is taken while pacing holds (the clock has not moved).
      expect(p.unsafePublishAll(batch.slice(n))).toBe(0)
      const fiber = yield* Effect.fork(p.publishAll(batch.slice(n)))
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.join(fiber)
      const got = yield* Stream.runCollect(Stream.take(received, batch.length + 1))
      expect(Chunk.toReadonlyArray(got).map((u) => u.topic)).toEqual(["/s/first", ...batch.map(([t]) => t)])
    }).pipe(Effect.provide(Transport.layerMemory({ seed: 22 })))
  )

  it.scopedLive("unsafeOnReady: a loop outside a fiber waits for the window, then publishes the rest", () =>
    Effect.gen(function* () {
      // b accepts 64 KiB in flight: 300 × 1 KiB cannot leave in one go.
      const { ca, cb } = yield* twoNodes({ connection: { receiverWindowBytes: 64 * 1024 } })
      const received = yield* cb.subscribeScoped("/w/...")
      const p = yield* ca.publisher
      yield* p.awaitReceivers(1)
      const batch = Array.from({ length: 300 }, (_, i) => [`/w/${i}`, new Uint8Array(1024)] as const)
      let calls = 0
      const first = p.unsafePublishAll(batch) as number
      expect(first).toBeGreaterThan(0)
      expect(first).toBeLessThan(batch.length)
      // A cancelled call never comes, even once the window has opened.
      let cancelledCalls = 0
      p.unsafeOnReady(() => cancelledCalls++)()
      const rounds = yield* Effect.promise(async () => {
        let from = first
        let waits = 0
        while (from < batch.length) {
          await new Promise<void>((resolve) =>
            p.unsafeOnReady(() => {
              calls++
              resolve()
            })
          )
          waits++
          const taken = p.unsafePublishAll(batch.slice(from))
          if (typeof taken !== "number") throw taken
          from += taken
        }
        return waits
      })
      expect(rounds).toBeGreaterThan(0)
      expect(calls).toBe(rounds)
      const got = yield* Stream.runCollect(Stream.take(received, batch.length))
      expect(Chunk.toReadonlyArray(got).map((u) => u.topic)).toEqual(batch.map(([t]) => t))
      expect(cancelledCalls).toBe(0)
      // Ready now: the call comes, but never synchronously.
      let now = 0
      const done = yield* Effect.promise(
        () =>
          new Promise<boolean>((resolve) => {
            p.unsafeOnReady(() => resolve(now === 1))
            now = 1
          })
      )
      expect(done).toBe(true)
    }).pipe(Effect.provide(Transport.layerMemory({ seed: 23 })))
  )
})

describe("Connection.forEachChunk", () => {
  it.effect("runs f on every chunk in order, synchronously, and ends with the stream", () =>
    Effect.gen(function* () {
      const seen: Array<ReadonlyArray<number>> = []
      const stream = Stream.fromChunks(Chunk.make(1, 2), Chunk.make(3), Chunk.make(4, 5, 6))
      yield* ConnectionModule.forEachChunk(stream, (chunk) => {
        seen.push(Chunk.toReadonlyArray(chunk))
      })
      expect(seen).toEqual([[1, 2], [3], [4, 5, 6]])
      // data-last, as in a pipe
      let n = 0
      yield* stream.pipe(
        ConnectionModule.forEachChunk((chunk) => {
          n += chunk.length
        })
      )
      expect(n).toBe(6)
    })
  )

  it.effect("fails with the stream's error after the chunks before it; a throw from f is a defect", () =>
    Effect.gen(function* () {
      const seen: Array<number> = []
      const failing = Stream.concat(Stream.make(1, 2), Stream.fail("boom" as const))
      const exit = yield* Effect.exit(
        ConnectionModule.forEachChunk(failing, (chunk) => {
          for (const x of chunk) seen.push(x)
        })
      )
      expect(exit).toStrictEqual(Exit.fail("boom"))
      expect(seen).toEqual([1, 2])

      const thrown = new Error("handler bug")
      const defect = yield* Effect.exit(
        ConnectionModule.forEachChunk(Stream.make(1, 2, 3), () => {
          throw thrown
        })
      )
      expect(defect).toStrictEqual(Exit.die(thrown))
    })
  )

  it.scopedLive(
    "on a subscription's own stream, f runs from the connection's drive, and the subscription ends with it",
    () =>
      Effect.gen(function* () {
        const { ca } = yield* twoNodes()
        const seen: Array<string> = []
        // `subscribe`: registered when the consumer starts, ended with it.
        const consumer = yield* ConnectionModule.forEachChunk(ca.subscribe("/d/..."), (chunk) => {
          for (const u of chunk) seen.push(decode(u as Connection.Update))
        }).pipe(Effect.fork)
        yield* awaitSubscriptions(ca, 1)
        const publisher = yield* ca.publisher
        yield* publisher.publish("/d/1", payloadOf(1))
        // A local publish is delivered by the publish's own drive: seen before anything yields.
        expect(seen).toEqual(["update-1"])
        yield* publisher.publishAll([
          ["/d/2", payloadOf(2)],
          ["/e/x", payloadOf(-1)],
          ["/d/3", payloadOf(3)]
        ])
        expect(seen).toEqual(["update-1", "update-2", "update-3"])
        yield* Fiber.interrupt(consumer)
        expect((yield* ca.stats).subscriptions).toEqual([])
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 12 })))
  )

  it.scopedLive("consumes a subscription over the memory transport", () =>
    Effect.gen(function* () {
      const { ca, cb } = yield* twoNodes()
      const n = 500
      const received: Array<string> = []
      const stream = yield* cb.subscribeScoped("/f/...")
      const done = yield* ConnectionModule.forEachChunk(Stream.take(stream, n), (chunk) => {
        for (const u of chunk) received.push(decode(u as Connection.Update))
      }).pipe(Effect.fork)
      const publisher = yield* ca.publisher
      for (let i = 0; i < n; i++) yield* publisher.publish(`/f/${i % 3}`, payloadOf(i))
      yield* Fiber.join(done)
      expect(received).toEqual(Array.from({ length: n }, (_, i) => `update-${i}`))
    }).pipe(Effect.provide(Transport.layerMemory({ seed: 11, link: { loss: 0.05, reorder: 0.02 } })))
  )
})
