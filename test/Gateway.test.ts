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
import * as Stream from "effect/Stream"
import type * as Connection from "../src/Connection.js"
import * as Distributor from "../src/Distributor.js"
import * as Gateway from "../src/Gateway.js"
import * as GatewayClient from "../src/GatewayClient.js"
import * as Transport from "../src/Transport.js"

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
})
