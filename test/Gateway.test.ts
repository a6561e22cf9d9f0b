/**
 * The gateway end to end over real WebSockets on 127.0.0.1: two Distributors on a simulated
 * network (`Transport.layerMemory`), one serving a gateway; `GatewayClient`s (Node's `ws`) subscribe
 * and publish through it. Resume after dropped sockets, expiry, replay overflow, a slow client,
 * takeover, auth, and hostile frames (raw `ws` sockets).
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { build } from "esbuild"
import type * as Connection from "../src/Connection.js"
import * as Distributor from "../src/Distributor.js"
import type { GatewayLoss, IrrecoverableLoss } from "../src/DistributorError.js"
import * as Gateway from "../src/Gateway.js"
import * as GatewayClient from "../src/GatewayClient.js"
import * as Transport from "../src/Transport.js"
import { proxy, type Proxy as TcpProxy } from "./fixtures/proxy.js"

const group = { group: "239.255.30.1", port: 7301 }
const fast = { nakBackoffMs: 5, nakRetryIntervalMs: 20, heartbeatIntervalMs: 200, senderTimeoutMs: 5_000 }
const decode = (u: Connection.Update) => new TextDecoder().decode(u.payload)

const awaitSubscriptions = (conn: Connection.ConnectionService, n: number) =>
  Effect.repeat(conn.stats, { until: (s) => s.subscriptions.length >= n }).pipe(Effect.asVoid)

/** Two nodes on one simulated group; node A serves a gateway. */
const setup = (options: Partial<Gateway.GatewayOptions> = {}) =>
  Effect.gen(function* () {
    const a = yield* Distributor.make({ application: "gw-a", host: "host-a", console: { enabled: false } })
    const b = yield* Distributor.make({ application: "gw-b", host: "host-b", console: { enabled: false } })
    const ca = yield* a.connection({ ...group, ...fast })
    const cb = yield* b.connection({ ...group, ...fast })
    const gateway = yield* Gateway.make({ connections: [ca], ...options })
    return { ca, cb, gateway }
  })

const client = (gateway: Gateway.GatewayService, name: string, options: Partial<GatewayClient.ClientOptions> = {}) =>
  GatewayClient.make({ url: gateway.url, name, ...options })

/** Reconnect quickly in tests. */
const quickRetry = Schedule.spaced("20 millis")

const payloadOf = (i: number) => `u-${i}`
const indexOf = (u: Connection.Update) => Number(decode(u).slice(2))

/** Polls `effect` every 5 ms until `until` holds (a tight loop would starve the sockets). */
const poll = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (a: A) => boolean): Effect.Effect<A, E, R> =>
  Effect.flatMap(effect, (a) =>
    until(a) ? Effect.succeed(a) : Effect.zipRight(Effect.sleep("5 millis"), poll(effect, until))
  )

const clientStats = (gateway: Gateway.GatewayService, name: string) =>
  Effect.map(gateway.stats, (s) => s.clients.find((c) => c.name === name))

/** Takes a client away (its socket cut, reconnection refused) while `n` updates reach its session. */
const away = (
  px: TcpProxy,
  gateway: Gateway.GatewayService,
  name: string,
  publish: (i: number) => Effect.Effect<void, unknown>,
  from: number,
  to: number
) =>
  Effect.gen(function* () {
    px.refuse = true
    px.drop()
    yield* poll(clientStats(gateway, name), (s) => s?.connected === false)
    for (let i = from; i < to; i++) yield* publish(i)
    yield* poll(clientStats(gateway, name), (s) => s?.nextSeq === to + 1)
  })

const layers = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.provide(Transport.layerMemory()), Effect.provide(NodeSocket.layerWebSocketConstructor))

describe("Gateway", () => {
  it.scopedLive("a gateway client receives multicast updates, and its publishes reach multicast subscribers", () =>
    layers(
      Effect.gen(function* () {
        const { cb, gateway } = yield* setup()
        expect(gateway.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/$/)
        const c = yield* client(gateway, "slice")
        const n = 500
        const stream = yield* c.subscribeScoped("/prices/...")
        const received = yield* stream.pipe(Stream.take(n), Stream.runCollect, Effect.fork)
        const publisher = yield* cb.publisher
        for (let i = 0; i < n; i++) yield* publisher.publish(`/prices/${i % 3}`, `p-${i}`)
        const updates = Chunk.toReadonlyArray(yield* Fiber.join(received))
        expect(updates.map(decode)).toEqual(Array.from({ length: n }, (_, i) => `p-${i}`))
        expect(updates[0].source.application).toBe("gw-b")
        expect(updates[0].source.host).toBe("host-b")
        expect(updates[0].topic).toBe("/prices/0")

        // The other way: gateway client → connection A → multicast → node B.
        const atB = yield* cb.subscribe("/chat/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
        yield* awaitSubscriptions(cb, 1)
        const p = yield* c.publisher
        for (let i = 0; i < n; i++) yield* p.publish(`/chat/${i % 2}`, `c-${i}`)
        yield* p.flush
        const chat = Chunk.toReadonlyArray(yield* Fiber.join(atB))
        expect(chat.map(decode)).toEqual(Array.from({ length: n }, (_, i) => `c-${i}`))
        expect(chat[0].source.application).toBe("gw-a")
        const stats = yield* gateway.stats
        expect(stats.counters.publishesIn).toBe(n)
        expect(stats.clients.map((s) => s.name)).toEqual(["slice"])
        expect(stats.counters.badFrames).toBe(0)
      })
    )
  )

  it.scopedLive(
    "resume after dropped WebSockets: every update exactly once, in order, while publishing continuously",
    () =>
      layers(
        Effect.gen(function* () {
          const { cb, gateway } = yield* setup({ allowedHosts: ["127.0.0.1"] })
          const px = yield* proxy(gateway)
          const c = yield* GatewayClient.make({ url: px.url, name: "resumer", retry: quickRetry, ackEvery: 64 })
          const n = 4_000
          const stream = yield* c.subscribeScoped("/feed/...")
          const received = yield* stream.pipe(Stream.take(n), Stream.runCollect, Effect.fork)
          const publisher = yield* cb.publisher
          let drops = 0
          for (let i = 0; i < n; i++) {
            yield* publisher.publish(`/feed/${i % 5}`, payloadOf(i))
            if (i % 50 === 49) yield* Effect.sleep("1 millis")
            // Cut the socket four times mid-stream, without a closing handshake, each time once the
            // client is back (a drop while it reconnects would cut nothing: connects would vary).
            if (i % 900 === 450) {
              yield* Effect.repeat(c.status, {
                schedule: Schedule.spaced("2 millis"),
                until: (s) => s.connects > drops
              }).pipe(Effect.timeout("10 seconds"))
              px.drop()
              drops++
            }
          }
          const updates = Chunk.toReadonlyArray(yield* Fiber.join(received).pipe(Effect.timeout("20 seconds")))
          expect(updates.map(indexOf)).toEqual(Array.from({ length: n }, (_, i) => i))
          const status = yield* c.status
          expect(drops).toBe(4)
          expect(status.connects).toBeGreaterThanOrEqual(drops + 1)
          expect(status.gaps).toBe(0)
          const stats = yield* gateway.stats
          // A drop may also hit between a resume and its welcome: the gateway counts that resume too.
          expect(stats.counters.resumes).toBeGreaterThanOrEqual(status.connects - 1)
          expect(stats.counters.gapsSent).toBe(0)
        })
      )
  )

  it.scopedLive("fan-out: 20 clients with overlapping patterns each get every matching update once, in order", () =>
    layers(
      Effect.gen(function* () {
        const { cb, gateway } = yield* setup()
        const n = 1_000
        const fibers = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, k) => k),
          (k) =>
            Effect.gen(function* () {
              const c = yield* client(gateway, `fan-${k}`)
              // Two patterns that both match every update: still one delivery per subscription.
              const all = yield* c.subscribeScoped("/fan/...")
              const alsoAll = yield* c.subscribeScoped("/fan/*")
              const evens = yield* c.subscribeScoped("/fan/0")
              return yield* Effect.all(
                [all, alsoAll, evens].map((s, j) =>
                  s.pipe(Stream.take(j === 2 ? n / 2 : n), Stream.map(indexOf), Stream.runCollect)
                ),
                { concurrency: "unbounded" }
              ).pipe(Effect.fork)
            }),
          { concurrency: 4 }
        )
        const publisher = yield* cb.publisher
        for (let i = 0; i < n; i++) yield* publisher.publish(`/fan/${i % 2}`, payloadOf(i))
        const all = Array.from({ length: n }, (_, i) => i)
        for (const fiber of fibers) {
          const [a, b, evens] = (yield* Fiber.join(fiber).pipe(Effect.timeout("20 seconds"))).map(Chunk.toReadonlyArray)
          expect(a).toEqual(all)
          expect(b).toEqual(all)
          expect(evens).toEqual(all.filter((i) => i % 2 === 0))
        }
        const stats = yield* gateway.stats
        // One frame per update per client, however many of its patterns matched.
        expect(stats.counters.updatesOut).toBe(20 * n)
      })
    )
  )

  it.scopedLive("publishes survive a dropped socket: none lost, none doubled", () =>
    layers(
      Effect.gen(function* () {
        const { cb, gateway } = yield* setup({ allowedHosts: ["127.0.0.1"] })
        const px = yield* proxy(gateway)
        const n = 3_000
        const atB = yield* cb.subscribe("/up/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
        yield* awaitSubscriptions(cb, 1)
        const c = yield* GatewayClient.make({ url: px.url, name: "uploader", retry: quickRetry })
        const p = yield* c.publisher
        yield* c.awaitConnected
        for (let i = 0; i < n; i++) {
          yield* p.publish(`/up/${i % 3}`, payloadOf(i))
          if (i % 700 === 350) px.drop()
          if (i % 50 === 49) yield* Effect.sleep("5 millis")
        }
        yield* p.flush.pipe(Effect.timeout("10 seconds"))
        const updates = Chunk.toReadonlyArray(yield* Fiber.join(atB).pipe(Effect.timeout("10 seconds")))
        expect(updates.map(indexOf)).toEqual(Array.from({ length: n }, (_, i) => i))
        expect((yield* c.status).unacknowledged).toBe(0)
        expect((yield* c.status).connects).toBeGreaterThanOrEqual(3)
        expect((yield* clientStats(gateway, "uploader"))?.published).toBe(n)
      })
    )
  )

  it.scopedLive("a client back after the resume window gets an Expired loss with the exact range, then continues", () =>
    layers(
      Effect.gen(function* () {
        const { cb, gateway } = yield* setup({ allowedHosts: ["127.0.0.1"], resumeWindowMs: 300 })
        const px = yield* proxy(gateway)
        const c = yield* GatewayClient.make({ url: px.url, name: "late", retry: quickRetry })
        const stream = yield* c.subscribeScoped("/x/...", { onLoss: "notify" })
        const items: Array<Connection.Update | GatewayClient.LossNotice> = []
        yield* stream.pipe(
          Stream.runForEach((item) => Effect.sync(() => items.push(item))),
          Effect.fork
        )
        const publisher = yield* cb.publisher
        for (let i = 0; i < 10; i++) yield* publisher.publish("/x/a", payloadOf(i))
        yield* poll(
          Effect.sync(() => items.length),
          (k) => k >= 10
        )
        // Away: refused by the proxy while 7 more arrive and the window passes.
        yield* away(px, gateway, "late", (i) => publisher.publish("/x/a", payloadOf(i)), 10, 17)
        yield* poll(clientStats(gateway, "late"), (s) => s === undefined)
        expect((yield* gateway.stats).counters.expirations).toBe(1)
        px.refuse = false
        // Back: a fresh session (numbering continued), the client subscribes again.
        yield* poll(clientStats(gateway, "late"), (s) => s?.subscriptions.length === 1)
        yield* poll(
          Effect.sync(() => items.length),
          (k) => k >= 11
        )
        for (let i = 17; i < 20; i++) yield* publisher.publish("/x/a", payloadOf(i))
        yield* poll(
          Effect.sync(() => items.length),
          (k) => k >= 14
        )
        const loss = items[10] as GatewayLoss
        expect(loss._tag).toBe("GatewayLoss")
        expect(loss).toMatchObject({ reason: "Expired", client: "late", firstSeq: 11, lastSeq: 17 })
        expect(items.slice(11).map((u) => indexOf(u as Connection.Update))).toEqual([17, 18, 19])
        expect((yield* c.status).lastSeq).toBe(20)
      })
    )
  )

  it.scopedLive(
    "more than the replay buffer holds while away: a ReplayOverflow loss with the exact range, then the rest",
    () =>
      layers(
        Effect.gen(function* () {
          const { cb, gateway } = yield* setup({ allowedHosts: ["127.0.0.1"], replayMaxUpdates: 50 })
          const px = yield* proxy(gateway)
          const c = yield* GatewayClient.make({ url: px.url, name: "overflowed", retry: quickRetry })
          const stream = yield* c.subscribeScoped("/y/...")
          const got: Array<number> = []
          const fiber = yield* stream.pipe(
            Stream.runForEach((u) => Effect.sync(() => got.push(indexOf(u)))),
            Effect.either,
            Effect.fork
          )
          const publisher = yield* cb.publisher
          for (let i = 0; i < 5; i++) yield* publisher.publish("/y/a", payloadOf(i))
          yield* poll(
            Effect.sync(() => got.length),
            (k) => k >= 5
          )
          yield* away(px, gateway, "overflowed", (i) => publisher.publish("/y/a", payloadOf(i)), 5, 85)
          px.refuse = false
          // Default onLoss "fail": the stream fails with the loss, after nothing out of order.
          const result = yield* Fiber.join(fiber).pipe(Effect.timeout("10 seconds"))
          expect(result._tag).toBe("Left")
          expect(result._tag === "Left" && result.left).toMatchObject({
            _tag: "GatewayLoss",
            reason: "ReplayOverflow",
            firstSeq: 6,
            lastSeq: 35
          })
          expect(got).toEqual([0, 1, 2, 3, 4])
        })
      )
  )

  it.scopedLive("over real UDP multicast on 127.0.0.1: gateway client ⇄ multicast subscriber and publisher", () =>
    Effect.gen(function* () {
      const config = { group: "239.255.30.9", port: 47_309, interface: "127.0.0.1", loopback: true }
      const a = yield* Distributor.make({ application: "udp-gw", console: { enabled: false } })
      const b = yield* Distributor.make({ application: "udp-peer", console: { enabled: false } })
      const ca = yield* a.connection(config)
      const cb = yield* b.connection(config)
      const gateway = yield* Gateway.make({ connections: [ca] })
      const c = yield* GatewayClient.make({ url: gateway.url, name: "udp-client" })
      const n = 2_000
      const down = yield* c.subscribeScoped("/m/...")
      const gotDown = yield* down.pipe(Stream.take(n), Stream.runCollect, Effect.fork)
      const gotUp = yield* cb.subscribe("/g/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
      yield* awaitSubscriptions(cb, 1)
      const pb = yield* cb.publisher
      const pc = yield* c.publisher
      for (let i = 0; i < n; i++) {
        yield* pb.publish(`/m/${i % 4}`, payloadOf(i))
        yield* pc.publish(`/g/${i % 4}`, payloadOf(i))
        if (i % 100 === 99) yield* Effect.sleep("1 millis")
      }
      const downUpdates = Chunk.toReadonlyArray(yield* Fiber.join(gotDown).pipe(Effect.timeout("20 seconds")))
      const upUpdates = Chunk.toReadonlyArray(yield* Fiber.join(gotUp).pipe(Effect.timeout("20 seconds")))
      const all = Array.from({ length: n }, (_, i) => i)
      expect(downUpdates.map(indexOf)).toEqual(all)
      expect(upUpdates.map(indexOf)).toEqual(all)
      expect(downUpdates[0].source.application).toBe("udp-peer")
      expect(upUpdates[0].source.application).toBe("udp-gw")
    }).pipe(Effect.provide(Transport.layerUdp), Effect.provide(NodeSocket.layerWebSocketConstructor))
  )

  it.scopedLive("an irrecoverable multicast loss reaches gateway clients as a typed IrrecoverableLoss", () =>
    Effect.gen(function* () {
      const a = yield* Distributor.make({ application: "loss-a", host: "host-a", console: { enabled: false } })
      const b = yield* Distributor.make({ application: "loss-b", host: "host-b", console: { enabled: false } })
      const lossGroup = { group: "239.255.30.3", port: 7303 }
      const ca = yield* a.connection({ ...lossGroup, ...fast })
      // A sender cache of one byte keeps nothing: every NAK is answered "lost".
      const cb = yield* b.connection({ ...lossGroup, ...fast, cacheMaxBytes: 1, flowControl: "none" })
      const gateway = yield* Gateway.make({ connections: [ca] })
      const notified = yield* GatewayClient.make({ url: gateway.url, name: "notified" })
      const failing = yield* GatewayClient.make({ url: gateway.url, name: "failing" })
      let sawEnd = false
      let sawLoss = false
      const items = yield* (yield* notified.subscribeScoped("/feed/...", { onLoss: "notify" })).pipe(
        Stream.takeUntil((u) => {
          if ("topic" in u) sawEnd ||= u.topic === "/feed/end"
          else sawLoss ||= u._tag === "IrrecoverableLoss"
          return sawEnd && sawLoss
        }),
        Stream.runCollect,
        Effect.fork
      )
      const failed = yield* (yield* failing.subscribeScoped("/feed/...")).pipe(
        Stream.runDrain,
        Effect.flip,
        Effect.fork
      )
      const pb = yield* cb.publisher
      for (let i = 0; i < 300; i++) yield* pb.publish(`/feed/${i % 7}`, new Uint8Array(100).fill(i & 0xff))
      yield* pb.publish("/feed/end", "end")
      const got = Chunk.toReadonlyArray(yield* Fiber.join(items).pipe(Effect.timeout("20 seconds")))
      const notices = got.filter((u): u is IrrecoverableLoss => !("topic" in u) && u._tag === "IrrecoverableLoss")
      // Three consecutive data datagrams were dropped (reported as one range or several).
      expect(notices.length).toBeGreaterThanOrEqual(1)
      for (const notice of notices) {
        expect(notice).toMatchObject({ reason: "NotInSenderCache", host: "host-b", application: "loss-b" })
      }
      expect(notices.reduce((sum, l) => sum + l.lastSeq - l.firstSeq + 1, 0)).toBe(3)
      const error = yield* Fiber.join(failed).pipe(Effect.timeout("20 seconds"))
      expect(error).toMatchObject({
        _tag: "IrrecoverableLoss",
        reason: "NotInSenderCache",
        firstSeq: notices[0].firstSeq
      })
    }).pipe(
      Effect.provide(
        Transport.layerMemory({
          seed: 3,
          link: {
            drop: (_bytes, ctx) =>
              ctx.class === "data" && !ctx.retransmission && ctx.classIndex >= 10 && ctx.classIndex <= 12
          }
        })
      ),
      Effect.provide(NodeSocket.layerWebSocketConstructor)
    )
  )

  it.live("the client module bundles for a browser: no node: imports, no Node globals from our code", () =>
    Effect.gen(function* () {
      const result = yield* Effect.promise(() =>
        build({
          entryPoints: [new URL("../src/GatewayClient.ts", import.meta.url).pathname],
          bundle: true,
          platform: "browser",
          format: "esm",
          write: false,
          metafile: true,
          logLevel: "silent"
        })
      )
      expect(result.errors).toEqual([])
      const ours = Object.keys(result.metafile.inputs).filter((f) => f.includes("src/"))
      expect(ours).toContain("src/internal/gateway/client.ts")
      expect(ours.some((f) => f.includes("console/") || f.includes("transport/"))).toBe(false)
      expect(result.outputFiles[0].text).not.toMatch(/from\s*"node:/)
    })
  )
})
