/**
 * The GatewayClient in a real browser: `src/GatewayClient.ts` bundled by esbuild for the browser
 * (the global WebSocket, no Node modules), served to Debian's chromium by a page on 127.0.0.1. The
 * page subscribes through a gateway and publishes back while a Node peer publishes and subscribes
 * on real UDP multicast on 127.0.0.1 (239.255.30.21:47321). Halfway, the browser's WebSocket is
 * cut the way a network cuts it (a TCP proxy drops it, no closing handshake): the client must
 * reconnect and resume by itself, so the browser still receives every multicast update exactly
 * once and in order, and every update it published reaches the multicast subscriber exactly once
 * and in order.
 *
 * Skipped where `/usr/bin/chromium` is missing, except in CI (as the console's browser test).
 */
import * as http from "node:http"
import type * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { build } from "esbuild"
import * as Distributor from "../src/Distributor.js"
import * as Gateway from "../src/Gateway.js"
import * as Transport from "../src/Transport.js"
import { available, CHROMIUM, inCI, launch } from "./fixtures/chromium.js"
import { proxy } from "./fixtures/proxy.js"

if (!available && !inCI) {
  console.warn(`[Gateway.browser.test] skipped: ${CHROMIUM} not found (install it with: apt-get install -y chromium)`)
}

const config = { group: "239.255.30.21", port: 47_321, interface: "127.0.0.1", loopback: true }
/** Multicast updates to the browser, and browser publishes to multicast. */
const DOWN = 400
const UP = 300

/** The page's script: a client named `browser-1` on the gateway given in `?gw=`, driven by the test through `window.gw`. */
const APP = `
import * as Socket from "@effect/platform/Socket"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as GatewayClient from "./src/GatewayClient.ts"

const gw = { received: [], ready: false, error: null, published: 0 }
window.gw = gw
const program = Effect.gen(function* () {
  const client = yield* GatewayClient.make({
    url: new URLSearchParams(location.search).get("gw"),
    name: "browser-1",
    retry: Schedule.spaced("50 millis")
  })
  const stream = yield* client.subscribeScoped("/feed/...")
  const publisher = yield* client.publisher
  gw.status = () => Effect.runPromise(client.status)
  gw.publish = (n) =>
    Effect.runPromise(
      Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) =>
          publisher.publish("/up/" + (i % 3), "b-" + i).pipe(
            Effect.tap(() => Effect.sync(() => { gw.published++ })),
            Effect.zipLeft(i % 20 === 19 ? Effect.sleep("5 millis") : Effect.void)
          ),
        { discard: true }
      )
    )
  gw.ready = true
  const decoder = new TextDecoder()
  yield* Stream.runForEach(stream, (u) => Effect.sync(() => gw.received.push(u.topic + "=" + decoder.decode(u.payload))))
}).pipe(Effect.scoped, Effect.provide(Socket.layerWebSocketConstructorGlobal))
Effect.runPromise(program).catch((e) => { gw.error = String(e) })
`

/** The bundle and the page that loads it, on 127.0.0.1 (another origin than the gateway's). */
const servePage = Effect.acquireRelease(
  Effect.promise(async () => {
    const result = await build({
      stdin: { contents: APP, resolveDir: process.cwd(), loader: "ts", sourcefile: "app.ts" },
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      logLevel: "silent"
    })
    const js = result.outputFiles[0].text
    const server = http.createServer((request, response) => {
      if (request.url?.startsWith("/app.js")) {
        response.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(js)
      } else {
        response
          .writeHead(200, { "content-type": "text/html; charset=utf-8" })
          .end('<!doctype html><title>gateway</title><script type="module" src="/app.js"></script>')
      }
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return { server, url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/` }
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)

describe.skipIf(!available && !inCI)("GatewayClient in Chromium", () => {
  it.scopedLive(
    "the browser receives multicast updates in order through the gateway and publishes back, across a dropped socket",
    () =>
      Effect.gen(function* () {
        expect(available, `CI=true but ${CHROMIUM} is missing`).toBe(true)
        const a = yield* Distributor.make({ application: "browser-gw", console: { enabled: false } })
        const b = yield* Distributor.make({ application: "browser-peer", console: { enabled: false } })
        const ca = yield* a.connection(config)
        const cb = yield* b.connection(config)
        // Through the proxy the Host header is 127.0.0.1:<proxy port>.
        const gateway = yield* Gateway.make({ connections: [ca], allowedHosts: ["127.0.0.1"] })
        const px = yield* proxy(gateway)
        const site = yield* servePage

        const { context } = yield* launch
        const page = context.pages()[0] ?? (yield* Effect.promise(() => context.newPage()))
        const problems: Array<string> = []
        page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`))
        yield* Effect.promise(() => page.goto(`${site.url}?gw=${encodeURIComponent(px.url)}`, { waitUntil: "load" }))
        yield* Effect.promise(() =>
          page.waitForFunction(() => (globalThis as any).gw?.ready === true || (globalThis as any).gw?.error, null, {
            timeout: 15_000
          })
        )
        expect(yield* Effect.promise(() => page.evaluate(() => (globalThis as any).gw.error))).toBeNull()

        const up = yield* cb.subscribe("/up/...").pipe(Stream.take(UP), Stream.runCollect, Effect.fork)
        yield* Effect.repeat(cb.stats, { until: (s) => s.subscriptions.length >= 1 })
        // The browser publishes while multicast updates flow the other way.
        const uploading = Effect.promise(() => page.evaluate((n) => (globalThis as any).gw.publish(n), UP))
        const uploaded = yield* Effect.fork(uploading)
        const pb = yield* cb.publisher
        for (let i = 0; i < DOWN; i++) {
          yield* pb.publish(`/feed/${i % 4}`, `m-${i}`)
          if (i === DOWN / 2) px.drop()
          if (i % 20 === 19) yield* Effect.sleep("5 millis")
        }

        yield* Effect.promise(() =>
          page.waitForFunction((n) => (globalThis as any).gw.received.length >= n, DOWN, { timeout: 30_000 })
        )
        const received: Array<string> = yield* Effect.promise(() =>
          page.evaluate(() => (globalThis as any).gw.received)
        )
        expect(received).toEqual(Array.from({ length: DOWN }, (_, i) => `/feed/${i % 4}=m-${i}`))

        yield* Fiber.join(uploaded).pipe(Effect.timeout("30 seconds"))
        const upUpdates = Chunk.toReadonlyArray(yield* Fiber.join(up).pipe(Effect.timeout("30 seconds")))
        const decoder = new TextDecoder()
        expect(upUpdates.map((u) => `${u.topic}=${decoder.decode(u.payload)}`)).toEqual(
          Array.from({ length: UP }, (_, i) => `/up/${i % 3}=b-${i}`)
        )
        // The drop really happened, and the client came back by itself and resumed.
        const status: { connects: number; state: { _tag: string } } = yield* Effect.promise(() =>
          page.evaluate(() => (globalThis as any).gw.status())
        )
        expect(status.connects).toBeGreaterThanOrEqual(2)
        expect(status.state._tag).toBe("Connected")
        const counters = (yield* gateway.stats).counters
        expect(counters.resumes).toBeGreaterThanOrEqual(1)
        expect(counters.gapsSent).toBe(0)
        expect(px.connections).toBeGreaterThanOrEqual(2)
        expect(problems).toEqual([])
      }).pipe(Effect.provide(Transport.layerUdp)),
    90_000
  )
})
