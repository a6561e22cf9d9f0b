/**
 * Gateway clients in the web console: a Gateway made with a Distributor in context registers with
 * it, so `/api/stats` (decoded with the published Schema) lists its clients while it runs: name,
 * address, connected or resumable, subscriptions, delivered, buffered, published, dropped; and
 * forgets it when the gateway's scope closes. Real WebSocket and HTTP on 127.0.0.1, the multicast
 * side on a simulated network.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Distributor from "../src/Distributor.js"
import * as Gateway from "../src/Gateway.js"
import * as GatewayClient from "../src/GatewayClient.js"
import * as Transport from "../src/Transport.js"
import * as WebConsole from "../src/WebConsole.js"

const group = { group: "239.255.21.1", port: 7121 }
const key = "239.255.21.1:7121"
const fast = { nakBackoffMs: 5, nakRetryIntervalMs: 20, heartbeatIntervalMs: 200, senderTimeoutMs: 5_000 }
const decodeStats = Schema.decodeUnknown(WebConsole.StatsResponse)

const fetchStats = (consoleUrl: string) =>
  Effect.flatMap(
    Effect.promise(() => fetch(`${consoleUrl}api/stats`).then((r) => r.json())),
    decodeStats
  )

/** Polls `/api/stats` until `until` holds (the gateway's state changes asynchronously). */
const statsUntil = (consoleUrl: string, until: (s: WebConsole.StatsResponse) => boolean) =>
  Effect.repeat(Effect.delay(fetchStats(consoleUrl), "50 millis"), { until }).pipe(Effect.timeout("10 seconds"))

describe("WebConsole: gateway clients", () => {
  it.scopedLive(
    "a gateway's clients appear in /api/stats and the page while it runs, resumable after their socket drops, gone with the gateway",
    () =>
      Effect.gen(function* () {
        const a = yield* Distributor.make({ application: "console-gw", console: { port: 0 } })
        const b = yield* Distributor.make({ application: "console-gw-b", console: { enabled: false } })
        const consoleUrl = a.consoleUrl ?? ""
        const ca = yield* a.connection({ ...group, ...fast })
        const cb = yield* b.connection({ ...group, ...fast })
        const before = yield* fetchStats(consoleUrl)
        expect(before.gateways).toEqual([])

        const gatewayScope = yield* Scope.make()
        const gateway = yield* Gateway.make({ connections: [ca] }).pipe(
          Effect.provideService(Distributor.Distributor, a),
          Scope.extend(gatewayScope)
        )
        const clientScope = yield* Scope.make()
        const client = yield* GatewayClient.make({ url: gateway.url, name: "dash-1" }).pipe(Scope.extend(clientScope))
        const stream = yield* client.subscribeScoped("/g/...").pipe(Scope.extend(clientScope))
        const publisher = yield* client.publisher.pipe(Scope.extend(clientScope))
        yield* publisher.publish("/up/1", "from the browser side")
        yield* publisher.flush

        const pub = yield* cb.publisher
        for (let i = 1; i <= 5; i++) yield* pub.publish(`/g/${i}`, `u${i}`)
        const got = yield* Stream.runCollect(Stream.take(stream, 5))
        expect(Chunk.toArray(got).map((u) => u.topic)).toEqual(["/g/1", "/g/2", "/g/3", "/g/4", "/g/5"])

        const live = yield* statsUntil(consoleUrl, (s) => (s.gateways[0]?.clients[0]?.delivered ?? 0) >= 5)
        expect(live.gateways).toHaveLength(1)
        const g = live.gateways[0]
        expect(g.url).toBe(gateway.url)
        expect(g.counters.hellos).toBe(1)
        expect(g.counters.publishesIn).toBe(1)
        expect(g.clients).toHaveLength(1)
        expect(g.clients[0]).toMatchObject({
          name: "dash-1",
          connected: true,
          address: "127.0.0.1",
          detachedAt: null,
          subscriptions: [{ pattern: "/g/...", connection: key }],
          published: 1,
          dropped: 0
        })
        expect(g.clients[0].connectedAt).toBeGreaterThan(0)

        // The page renders the table from the same JSON.
        const page = yield* Effect.promise(() => fetch(consoleUrl).then((r) => r.text()))
        expect(page).toContain("Gateway clients")

        // Socket closed: the session stays for its resume window, and updates for it are buffered.
        yield* Scope.close(clientScope, Exit.void)
        yield* pub.publish("/g/6", "while away")
        const away = yield* statsUntil(
          consoleUrl,
          (s) => s.gateways[0]?.clients[0]?.connected === false && s.gateways[0].clients[0].buffered >= 1
        )
        expect(away.gateways[0].clients[0]).toMatchObject({ name: "dash-1", connected: false, address: null })
        expect(away.gateways[0].clients[0].detachedAt).toBeGreaterThan(0)
        expect(away.gateways[0].clients[0].delivered).toBe(6)

        yield* Scope.close(gatewayScope, Exit.void)
        expect((yield* fetchStats(consoleUrl)).gateways).toEqual([])
      }).pipe(Effect.provide(Transport.layerMemory()), Effect.provide(NodeSocket.layerWebSocketConstructor)),
    30_000
  )
})
