/**
 * The web console of a live Distributor: two Distributors on a lossy simulated network exchange
 * traffic both ways, and the console's HTTP endpoints (JSON decoded with the published Schema,
 * Prometheus text, HTML page, server-sent events) must show it; an irrecoverable loss shows with its
 * range and reason; over real UDP multicast on 127.0.0.1 (239.255.70.1:7701) the socket figures
 * appear. Also: typed startup errors, a clean close with a client still streaming, and the pure
 * parts (rate history, exposition format).
 */
import { existsSync } from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricState from "effect/MetricState"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Connection from "../src/Connection.js"
import * as Distributor from "../src/Distributor.js"
import { type IrrecoverableLoss, WebConsoleError } from "../src/DistributorError.js"
import * as Guard from "../src/internal/console/guard.js"
import { RateHistory } from "../src/internal/console/history.js"
import * as Transport from "../src/Transport.js"
import * as WebConsole from "../src/WebConsole.js"

const group = { group: "239.255.20.1", port: 7101 }
const key = "239.255.20.1:7101"
const fast = { nakBackoffMs: 5, nakRetryIntervalMs: 20, heartbeatIntervalMs: 200, senderTimeoutMs: 5_000 }
const lossGroup = { group: "239.255.70.3", port: 7703 }
const lossKey = "239.255.70.3:7703"
const lossy = Transport.layerMemory({ seed: 11, link: { loss: 0.05 } })

interface Fetched {
  readonly status: number
  readonly contentType: string
  readonly headers: Headers
  readonly body: string
}

const get = (url: string): Effect.Effect<Fetched> =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      headers: response.headers,
      body: await response.text()
    }
  })

const decodeStats = Schema.decodeUnknown(WebConsole.StatsResponse)

/** A console access token (16+ URL-safe characters). */
const TOKEN = "test-token-0123456789abcdef"

interface Raw {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/**
 * A GET with full control of the headers (fetch does not let us set Host). An event stream is
 * answered with its status and headers only.
 */
const raw = (url: string, headers: http.OutgoingHttpHeaders = {}, setHost = true): Effect.Effect<Raw> =>
  Effect.async<Raw>((resume) => {
    const request = http.get(url, { headers, setHost }, (response) => {
      if ((response.headers["content-type"] ?? "").startsWith("text/event-stream")) {
        resume(Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, body: "" }))
        response.destroy()
        return
      }
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        body += chunk
      })
      response.on("end", () =>
        resume(Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, body }))
      )
    })
    request.on("error", (error) => resume(Effect.die(error)))
    return Effect.sync(() => request.destroy())
  })

const ROUTES = ["", "api/stats", "api/events", "metrics", "healthz", "no-such-page"]

const awaitSubscriptions = (conn: Connection.ConnectionService, n: number) =>
  Effect.repeat(conn.stats, { until: (s) => s.subscriptions.length >= n }).pipe(Effect.asVoid)

/** Prometheus sample lines as `name{labels}` → value. */
const parseExposition = (text: string): Map<string, number> => {
  const samples = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const at = line.lastIndexOf(" ")
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
}

/** Two nodes publishing to each other through 5% loss; returns once both sides received everything. */
const exchange = (n: number) =>
  Effect.gen(function* () {
    const a = yield* Distributor.make({ application: "console-a", host: "host-a", console: { port: 0 } })
    const b = yield* Distributor.make({ application: "console-b", host: "host-b", console: { enabled: false } })
    const ca = yield* a.connection({ ...group, ...fast })
    const cb = yield* b.connection({ ...group, ...fast })
    const atA = yield* ca.subscribe("/from-b/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
    const atB = yield* cb.subscribe("/from-a/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
    yield* awaitSubscriptions(ca, 1)
    yield* awaitSubscriptions(cb, 1)
    const pa = yield* ca.publisher
    const pb = yield* cb.publisher
    const payload = new Uint8Array(200).fill(7)
    for (let i = 0; i < n; i++) {
      yield* pa.publish(`/from-a/${i % 5}`, payload)
      yield* pb.publish(`/from-b/${i % 5}`, payload)
    }
    expect(Chunk.size(yield* Fiber.join(atA))).toBe(n)
    expect(Chunk.size(yield* Fiber.join(atB))).toBe(n)
    return { a, b, ca, cb, pa, pb }
  })

describe("WebConsole over a live Distributor", () => {
  it.scopedLive(
    "/api/stats, /api/events, /metrics, / and /healthz show the traffic",
    () =>
      Effect.gen(function* () {
        const n = 1_500
        const { a, b, pa, pb } = yield* exchange(n)
        expect(b.consoleUrl).toBeUndefined()
        const url = a.consoleUrl
        expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
        if (url === undefined) return
        // Let the sampler (1 s) and the metric sync (1 s) see the finished exchange.
        yield* Effect.sleep("2200 millis")

        // ---- /api/stats, decoded with the published schema
        const statsResponse = yield* get(`${url}api/stats`)
        expect(statsResponse.status).toBe(200)
        expect(statsResponse.contentType).toMatch(/^application\/json/)
        const raw = JSON.parse(statsResponse.body)
        const stats = yield* decodeStats(raw)
        expect(stats.application).toBe("console-a")
        expect(stats.host).toBe("host-a")
        expect(stats.uptimeMs).toBeGreaterThan(2_000)
        expect(stats.connections.map((c) => c.connection)).toEqual([key])
        const [conn] = stats.connections
        const c = conn.counters
        expect(c.updatesOut).toBe(n)
        expect(c.updatesIn).toBe(n)
        expect(c.datagramsIn).toBeGreaterThan(0)
        expect(c.bytesOut).toBeGreaterThan(n * 200)
        // a lost some of b's datagrams and recovered them, and retransmitted what b lost.
        expect(c.naksSent).toBeGreaterThan(0)
        expect(c.retransmissionsReceived).toBeGreaterThan(0)
        expect(c.naksReceived).toBeGreaterThan(0)
        expect(c.retransmissionsSent).toBeGreaterThan(0)
        expect(c.lostSegments).toBe(0)
        expect(conn.recentLosses).toEqual([])
        expect(conn.nakRequesters.map((r) => r.host)).toEqual(["host-b"])
        expect(conn.nakRequesters[0].naks).toBe(c.naksReceived)

        // Session ids are bigints after decoding and 16 hex digits on the wire.
        const remote = conn.remoteSessions.find((r) => r.sessionId === pb.source.sessionId)
        expect(remote).toMatchObject({ host: "host-b", application: "console-b", state: "active" })
        expect(remote?.highestSeq).toBeGreaterThan(0)
        expect(remote?.delivered).toBe(n)
        expect(remote?.retransmissionsReceived).toBeGreaterThan(0)
        expect(raw.connections[0].remoteSessions[0].sessionId).toMatch(/^[0-9a-f]{16}$/)
        expect(conn.publishers.map((p) => p.sessionId)).toEqual([pa.source.sessionId])
        expect(conn.publishers[0].highestSeq).toBeGreaterThan(0)
        expect(conn.subscriptions).toEqual([])

        // Rates come from the sampler's history: the exchange shows up as a peak.
        expect(conn.history.length).toBeGreaterThanOrEqual(1)
        expect(conn.rates.peak.updatesIn).toBeGreaterThan(0)
        expect(conn.rates.peak.retransmissionsSent).toBeGreaterThan(0)
        expect(conn.history.every((s, i) => i === 0 || s.at > conn.history[i - 1].at)).toBe(true)

        // The history can be limited; bad queries are refused.
        const limited = yield* decodeStats(JSON.parse((yield* get(`${url}api/stats?history=1`)).body))
        expect(limited.connections[0].history.length).toBe(1)
        expect((yield* get(`${url}api/stats?history=x`)).status).toBe(400)

        // ---- /api/events: server-sent events carrying the same schema
        const firstEvent = yield* Effect.promise(async () => {
          const controller = new AbortController()
          const response = await fetch(`${url}api/events`, { signal: controller.signal })
          const reader = response.body!.getReader()
          let text = ""
          while (!/event: stats\ndata: .*\n\n/.test(text)) {
            const { value, done } = await reader.read()
            if (done) break
            text += new TextDecoder().decode(value)
          }
          controller.abort()
          return { contentType: response.headers.get("content-type"), text }
        })
        expect(firstEvent.contentType).toMatch(/^text\/event-stream/)
        const data = /event: stats\ndata: (.*)\n\n/.exec(firstEvent.text)?.[1] ?? "null"
        const streamed = yield* decodeStats(JSON.parse(data))
        expect(streamed.connections[0].counters.updatesOut).toBe(n)

        // ---- /metrics: Prometheus text of the Effect metrics
        const metrics = yield* get(`${url}metrics`)
        expect(metrics.status).toBe(200)
        expect(metrics.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
        expect(metrics.body).toContain("# HELP distributor_naks_received_total ")
        expect(metrics.body).toContain("# TYPE distributor_naks_received_total counter")
        const samples = parseExposition(metrics.body)
        // Both Distributors of this process use the same connection key; the application label keeps
        // their counters apart.
        const sample = (name: string, application: string) =>
          samples.get(`${name}{connection="${key}",application="${application}"}`)
        expect(sample("distributor_updates_out_total", "console-a")).toBe(n)
        expect(sample("distributor_updates_out_total", "console-b")).toBe(n)
        expect(
          (sample("distributor_retransmissions_sent_total", "console-a") ?? 0) +
            (sample("distributor_retransmissions_sent_total", "console-b") ?? 0)
        ).toBeGreaterThan(0)
        // What any Effect metrics exporter reads: the same counter in Effect's metric registry.
        const pair = (yield* Metric.snapshot).find(
          (p) =>
            p.metricKey.name === "distributor_updates_out_total" &&
            p.metricKey.tags.some((t) => t.key === "connection" && t.value === key) &&
            p.metricKey.tags.some((t) => t.key === "application" && t.value === "console-a")
        )
        expect(pair !== undefined && MetricState.isCounterState(pair.metricState) && pair.metricState.count).toBe(n)
        // The shell's own counters are metrics too, exported from the start even while zero.
        for (const name of [
          "subscriber_overflows",
          "invalid_topics_dropped",
          "engine_faults",
          "receive_queue_drops",
          "send_errors",
          "out_of_window",
          "loss_events"
        ]) {
          expect(sample(`distributor_${name}_total`, "console-a"), name).toBe(0)
        }

        // ---- the page and health
        const page = yield* get(url)
        expect(page.status).toBe(200)
        expect(page.contentType).toBe("text/html; charset=utf-8")
        expect(page.body).toMatch(/^<!doctype html>/)
        expect(page.body).toContain("api/events")
        expect(page.body).not.toMatch(/<(script|link|img)[^>]+(src|href)=["']?https?:/)
        expect(page.headers.get("content-security-policy")).toContain("default-src 'none'")
        const health = yield* get(`${url}healthz`)
        expect(health.status).toBe(200)
        expect(JSON.parse(health.body).status).toBe("ok")
        expect((yield* get(`${url}no-such-page`)).status).toBe(404)
      }).pipe(Effect.provide(lossy)),
    30_000
  )

  it.scopedLive(
    "remote receivers show in /api/stats with their name, host, position and lag, and on the page",
    () =>
      Effect.gen(function* () {
        const n = 200
        const a = yield* Distributor.make({ application: "recv-a", host: "host-a", console: { port: 0 } })
        const b = yield* Distributor.make({ application: "recv-b", host: "host-b", console: { enabled: false } })
        const ca = yield* a.connection({ ...group, ...fast, statusIntervalMs: 20 })
        const cb = yield* b.connection({ ...group, ...fast, statusIntervalMs: 20, name: "quotes-reader" })
        const received = yield* cb.subscribe("/q/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
        const pa = yield* ca.publisher
        yield* pa.awaitReceivers(1)
        for (let i = 0; i < n; i++) yield* pa.publish(`/q/${i % 3}`, new Uint8Array(100).fill(i & 0xff))
        expect(Chunk.size(yield* Fiber.join(received))).toBe(n)
        const url = a.consoleUrl
        if (url === undefined) return expect.unreachable("console url")
        // b's subscription ended: it reports that it leaves, and the receiver disappears.
        const view = (stats: WebConsole.StatsResponse) => stats.connections[0].remoteReceivers
        const fetchStats = get(`${url}api/stats`).pipe(Effect.flatMap((r) => decodeStats(JSON.parse(r.body))))
        const gone = yield* Effect.repeat(fetchStats, { until: (s) => view(s).length === 0 }).pipe(
          Effect.timeout("3 seconds")
        )
        expect(view(gone)).toEqual([])

        // Subscribed again: present, caught up with what was published, lag 0.
        const again = yield* cb.subscribe("/q/...").pipe(Stream.take(1), Stream.runCollect, Effect.fork)
        yield* pa.awaitReceivers(1)
        const highest = (yield* ca.stats).publishers[0].highestSeq
        const seen = yield* Effect.repeat(fetchStats, {
          until: (s) => view(s).length === 1 && view(s)[0].positions.some((p) => p.position === highest)
        }).pipe(Effect.timeout("3 seconds"))
        const [r] = view(seen)
        expect(r).toMatchObject({ name: "quotes-reader", host: "host-b", application: "recv-b" })
        expect(r.sessionId).toMatch(/^[0-9a-f]{16}$/)
        expect(r.windowBytes).toBeGreaterThan(0)
        expect(r.windowSegments).toBeGreaterThan(0)
        expect(r.lastHeardAt).toBeGreaterThanOrEqual(r.joinedAt)
        expect(r.positions).toEqual([{ sessionId: pa.source.sessionId, position: highest, lag: 0 }])
        expect(seen.connections[0].counters.statusReceived).toBeGreaterThan(0)
        yield* pa.publish("/q/last", "x")
        yield* Fiber.join(again)

        const page = yield* get(url)
        expect(page.body).toContain("Remote receivers")
        expect(page.body).toContain("data-receiver")
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 3 }))),
    30_000
  )

  it.scopedLive(
    "an irrecoverable loss shows in /api/stats and /metrics with its range and reason",
    () =>
      Effect.gen(function* () {
        const n = 300
        const a = yield* Distributor.make({ application: "loss-a", host: "host-a", console: { port: 0 } })
        const b = yield* Distributor.make({ application: "loss-b", host: "host-b", console: { enabled: false } })
        const ca = yield* a.connection({ ...lossGroup, ...fast })
        // A sender cache of one byte keeps nothing: every NAK is answered "lost".
        const cb = yield* b.connection({ ...lossGroup, ...fast, cacheMaxBytes: 1 })
        // Until the end marker and the loss notice (which may come after the updates behind the gap).
        let sawEnd = false
        let sawLoss = false
        const received = yield* ca.subscribe("/feed/...", { onLoss: "notify" }).pipe(
          Stream.takeUntil((u) => {
            if ("topic" in u) sawEnd ||= u.topic === "/feed/end"
            else sawLoss ||= u._tag === "IrrecoverableLoss"
            return sawEnd && sawLoss
          }),
          Stream.runCollect,
          Effect.fork
        )
        yield* awaitSubscriptions(ca, 1)
        const pb = yield* cb.publisher
        // ~36 kB of updates: more than 12 data datagrams of at most 1 400 B, however they are packed.
        for (let i = 0; i < n; i++) yield* pb.publish(`/feed/${i % 7}`, new Uint8Array(100).fill(i & 0xff))
        yield* pb.publish("/feed/end", "end")
        const items = Chunk.toReadonlyArray(yield* Fiber.join(received))
        const notices = items.filter((u): u is IrrecoverableLoss => !("topic" in u) && u._tag === "IrrecoverableLoss")
        expect(items.filter((u) => !("topic" in u))).toEqual(notices)
        expect(notices).toHaveLength(1)
        const [notice] = notices
        expect(notice).toMatchObject({ reason: "NotInSenderCache", host: "host-b", application: "loss-b" })
        expect(notice.lastSeq - notice.firstSeq + 1).toBe(3)
        // Let the sampler and the metric sync (once a second each) catch up.
        yield* Effect.sleep("1200 millis")

        const url = a.consoleUrl ?? ""
        const stats = yield* decodeStats(JSON.parse((yield* get(`${url}api/stats`)).body))
        const [conn] = stats.connections
        expect(conn.connection).toBe(lossKey)
        expect(conn.counters.lossEvents).toBe(1)
        expect(conn.counters.lostSegments).toBe(3)
        expect(conn.counters.naksSent).toBeGreaterThan(0)
        expect(conn.recentLosses).toHaveLength(1)
        expect(conn.recentLosses[0]).toMatchObject({
          reason: "NotInSenderCache",
          sessionId: pb.source.sessionId,
          host: "host-b",
          application: "loss-b",
          firstSeq: notice.firstSeq,
          lastSeq: notice.lastSeq
        })
        const remote = conn.remoteSessions.find((r) => r.sessionId === pb.source.sessionId)
        expect(remote).toMatchObject({ host: "host-b", state: "active", lostSegments: 3 })
        // The updates packed into the three lost datagrams are missing, every other one arrived.
        const delivered = items.length - notices.length
        expect(delivered).toBeLessThan(n + 1)
        expect(remote?.delivered).toBe(delivered)

        const samples = parseExposition((yield* get(`${url}metrics`)).body)
        const sample = (name: string, application: string) =>
          samples.get(`${name}{connection="${lossKey}",application="${application}"}`)
        expect(sample("distributor_loss_events_total", "loss-a")).toBe(1)
        expect(sample("distributor_lost_segments_total", "loss-a")).toBe(3)
        // b answered every NAK of a with "lost".
        expect(sample("distributor_lost_packets_sent_total", "loss-b")).toBeGreaterThan(0)
      }).pipe(
        Effect.provide(
          Transport.layerMemory({
            seed: 3,
            link: {
              // Three consecutive original data datagrams (the 10th to 12th of a link) never arrive.
              drop: (_bytes, ctx) =>
                ctx.class === "data" && !ctx.retransmission && ctx.classIndex >= 10 && ctx.classIndex <= 12
            }
          })
        )
      ),
    30_000
  )

  it.scopedLive(
    "over real UDP multicast on loopback with dropped datagrams: socket buffers, kernel drops, recovery",
    () =>
      Effect.gen(function* () {
        const n = 2_000
        const config = { group: "239.255.70.1", port: 7701, interface: "127.0.0.1", loopback: true, ...fast }
        const a = yield* Distributor.make({ application: "udp-console-a", host: "host-a", console: { port: 0 } })
        const b = yield* Distributor.make({ application: "udp-console-b", host: "host-b", console: { enabled: false } })
        const ca = yield* a.connection(config)
        const cb = yield* b.connection(config)
        const received = yield* ca.subscribe("/udp/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
        yield* awaitSubscriptions(ca, 1)
        const pb = yield* cb.publisher
        for (let i = 0; i < n; i += 50) {
          yield* pb.publishAll(Array.from({ length: 50 }, (_, j) => [`/udp/${(i + j) % 10}`, String(i + j)] as const))
          yield* Effect.sleep("1 millis")
        }
        expect(Chunk.size(yield* Fiber.join(received))).toBe(n)

        const stats = yield* decodeStats(JSON.parse((yield* get(`${a.consoleUrl}api/stats`)).body))
        const [conn] = stats.connections
        expect(conn.connection).toBe("239.255.70.1:7701")
        expect(conn.counters.updatesIn).toBe(n)
        // Datagrams dropped on receive were recovered with NAKs and retransmissions.
        expect(conn.counters.naksSent).toBeGreaterThan(0)
        expect(conn.counters.retransmissionsReceived).toBeGreaterThan(0)
        expect(conn.counters.lostSegments).toBe(0)
        // A real socket reports its buffer sizes; Linux exposes the kernel's receive-buffer drops.
        expect(conn.socket.recvBufferSize).toBeGreaterThan(0)
        expect(conn.socket.sendBufferSize).toBeGreaterThan(0)
        expect(conn.socket.backend).toBe(Transport.udpBackend().backend)
        if (existsSync("/proc/net/snmp")) expect(conn.kernelReceiveBufferErrors).toBeGreaterThanOrEqual(0)
        else expect(conn.kernelReceiveBufferErrors).toBeNull()
        const remote = conn.remoteSessions.find((r) => r.sessionId === pb.source.sessionId)
        expect(remote).toMatchObject({ host: "host-b", application: "udp-console-b", state: "active", delivered: n })
      }).pipe(
        Effect.provide(Transport.layerLossy({ receiveLoss: 0.05, seed: 7 }).pipe(Layer.provide(Transport.layerUdp)))
      ),
    30_000
  )

  it.scopedLive("a port in use or an address that cannot be bound is a typed WebConsoleError", () =>
    Effect.gen(function* () {
      const first = yield* Distributor.make({ application: "first", console: { port: 0 } })
      const port = Number(new URL(first.consoleUrl ?? "").port)
      expect(port).toBeGreaterThan(0)
      const inUse = yield* Effect.flip(Distributor.make({ application: "second", console: { port } }))
      expect(inUse).toBeInstanceOf(WebConsoleError)
      expect(inUse).toMatchObject({ _tag: "WebConsoleError", reason: "PortInUse", address: `127.0.0.1:${port}` })
      // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
      const bind = yield* Effect.flip(Distributor.make({ console: { host: "192.0.2.1", port: 0, token: TOKEN } }))
      expect(bind).toMatchObject({ _tag: "WebConsoleError", reason: "Bind" })
      // The first console is unaffected.
      expect((yield* get(`${first.consoleUrl}healthz`)).status).toBe(200)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("closing the Distributor's scope closes the console, even with an event stream open", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const d = yield* Distributor.make({ console: { port: 0 } }).pipe(Scope.extend(scope))
      const url = d.consoleUrl ?? ""
      // An event stream that never ends by itself.
      const reading = yield* Effect.promise(async () => {
        const response = await fetch(`${url}api/events`)
        const reader = response.body!.getReader()
        await reader.read()
        return reader
      })
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("3 seconds"), Effect.exit)
      expect(Exit.isSuccess(closed)).toBe(true)
      // The stream ended and the port is free again.
      const rest = yield* Effect.promise(() =>
        reading.read().then(
          (r) => r.done,
          () => true
        )
      )
      expect(rest).toBe(true)
      const port = Number(new URL(url).port)
      const free = yield* Effect.promise(
        () =>
          new Promise<boolean>((resolve) => {
            const server = net.createServer()
            server.once("error", () => resolve(false))
            server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
          })
      )
      expect(free).toBe(true)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("WebConsole.make starts a console for a Distributor that has none", () =>
    Effect.gen(function* () {
      const d = yield* Distributor.make({ application: "later", console: { enabled: false } })
      expect(d.consoleUrl).toBeUndefined()
      const console = yield* WebConsole.make({ port: 0 }).pipe(Effect.provideService(Distributor.Distributor, d))
      const stats = yield* decodeStats(JSON.parse((yield* get(`${console.url}api/stats`)).body))
      expect(stats.application).toBe("later")
      expect((yield* console.stats).connections).toEqual([])
    }).pipe(Effect.provide(Transport.layerMemory()))
  )
})

describe("WebConsole access control", () => {
  const consoleOf = (console: Record<string, unknown>) =>
    Effect.gen(function* () {
      const d = yield* Distributor.make({ application: "guarded", console: { port: 0, ...console } })
      const url = d.consoleUrl ?? ""
      return { d, url, port: Number(new URL(url).port) }
    })

  it.scopedLive("answers only its own Host names (DNS rebinding), on every route", () =>
    Effect.gen(function* () {
      const { url, port } = yield* consoleOf({})
      for (const route of ROUTES) {
        const evil = yield* raw(`${url}${route}`, { host: `evil.example:${port}` })
        expect([route, evil.status]).toEqual([route, 421])
        expect(evil.body).not.toContain('"connections"')
      }
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
        expect([host, (yield* raw(`${url}healthz`, { host })).status]).toEqual([host, 200])
      }
      // The port is part of the name; no port means 80.
      for (const host of [
        "127.0.0.1",
        `127.0.0.1:${port + 1}`,
        "evil.example",
        `127.0.0.1.evil.example:${port}`,
        "::1"
      ]) {
        expect([host, (yield* raw(`${url}api/stats`, { host })).status]).toEqual([host, 421])
      }
      // No Host at all: Node's HTTP server answers 400 itself (HTTP/1.1 requires the header).
      expect((yield* raw(`${url}api/stats`, {}, false)).status).toBe(400)
      expect((yield* raw(`${url}api/stats`)).status).toBe(200)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive('allowedHosts adds names, with or without a port; "*" turns the check off', () =>
    Effect.gen(function* () {
      const { url, port } = yield* consoleOf({ allowedHosts: ["console.example", "proxy.example:443"] })
      expect((yield* raw(`${url}healthz`, { host: `console.example:${port}` })).status).toBe(200)
      expect((yield* raw(`${url}healthz`, { host: "console.example" })).status).toBe(200)
      expect((yield* raw(`${url}healthz`, { host: "proxy.example:443" })).status).toBe(200)
      expect((yield* raw(`${url}healthz`, { host: "proxy.example:444" })).status).toBe(421)
      expect((yield* raw(`${url}healthz`, { host: "evil.example" })).status).toBe(421)
      const open = yield* consoleOf({ allowedHosts: ["*"] })
      expect((yield* raw(`${open.url}healthz`, { host: "anything.example" })).status).toBe(200)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("with a token every route needs it: bearer header, ?token=, or the cookie the page sets", () =>
    Effect.gen(function* () {
      const { url, port } = yield* consoleOf({ token: TOKEN })
      for (const route of ROUTES) {
        const none = yield* raw(`${url}${route}`)
        expect([route, none.status]).toEqual([route, 401])
        expect(none.headers["www-authenticate"]).toMatch(/^Bearer /)
        expect(none.body).not.toContain('"connections"')
        for (const wrong of ["Bearer wrong", `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
          expect((yield* raw(`${url}${route}`, { authorization: wrong })).status).toBe(401)
        }
      }
      for (const route of ["", "api/stats", "api/events", "metrics", "healthz"]) {
        const ok = yield* raw(`${url}${route}`, { authorization: `Bearer ${TOKEN}` })
        expect([route, ok.status]).toEqual([route, 200])
      }
      expect((yield* raw(`${url}no-such-page`, { authorization: `bearer ${TOKEN}` })).status).toBe(404)
      // ?token= authorises any route; on the page it becomes a cookie and leaves the address bar.
      expect((yield* raw(`${url}api/stats?token=${TOKEN}&history=1`)).status).toBe(200)
      expect((yield* raw(`${url}api/stats?token=nope`)).status).toBe(401)
      expect((yield* raw(`${url}?token=nope`)).status).toBe(401)
      const page = yield* raw(`${url}?token=${TOKEN}`)
      expect(page.status).toBe(303)
      expect(page.headers.location).toBe("./")
      const setCookie = page.headers["set-cookie"]?.[0] ?? ""
      expect(setCookie).toBe(`distributor_console_${port}=${TOKEN}; Path=/; HttpOnly; SameSite=Lax`)
      const cookie = setCookie.split(";")[0]
      for (const route of ["", "api/stats", "api/events", "metrics", "healthz"]) {
        expect([route, (yield* raw(`${url}${route}`, { cookie: `other=1; ${cookie}` })).status]).toEqual([route, 200])
      }
      const html = yield* raw(url, { cookie })
      expect(html.body).toContain("<!doctype html>")
      expect((yield* raw(`${url}api/stats`, { cookie: `distributor_console_${port}=wrong` })).status).toBe(401)
      expect((yield* raw(`${url}api/stats`, { cookie: `distributor_console_${port + 1}=${TOKEN}` })).status).toBe(401)
      // The Host check comes first: the right token from the wrong origin is still refused.
      expect((yield* raw(`${url}api/stats`, { host: "evil.example", authorization: `Bearer ${TOKEN}` })).status).toBe(
        421
      )
    }).pipe(Effect.provide(Transport.layerMemory()))
  )

  it.scopedLive("a non-loopback address without a token refuses to start (TokenRequired), before binding", () =>
    Effect.gen(function* () {
      // 192.0.2.1 (TEST-NET-1) is not an address of this machine: with a token it gets as far as Bind.
      for (const host of ["0.0.0.0", "192.0.2.1", "::", "console.example"]) {
        const error = yield* Effect.flip(Distributor.make({ console: { host, port: 0 } }))
        expect(error).toMatchObject({ _tag: "WebConsoleError", reason: "TokenRequired" })
        expect(error.message).toContain("token")
      }
      const withToken = yield* Effect.flip(Distributor.make({ console: { host: "192.0.2.1", port: 0, token: TOKEN } }))
      expect(withToken).toMatchObject({ _tag: "WebConsoleError", reason: "Bind" })
      const d = yield* Distributor.make({ application: "later", console: { enabled: false } })
      const started = WebConsole.make({ host: "192.0.2.1", port: 0 }).pipe(
        Effect.provideService(Distributor.Distributor, d)
      )
      expect(yield* Effect.flip(started)).toMatchObject({ reason: "TokenRequired" })
      // Loopback needs none; WebConsole.make takes a token too.
      const local = yield* WebConsole.make({ host: "127.0.0.1", port: 0, token: TOKEN }).pipe(
        Effect.provideService(Distributor.Distributor, d)
      )
      expect((yield* raw(`${local.url}healthz`)).status).toBe(401)
      expect((yield* raw(`${local.url}healthz`, { authorization: `Bearer ${TOKEN}` })).status).toBe(200)
    }).pipe(Effect.provide(Transport.layerMemory()))
  )
})

describe("WebConsole Host check of a wildcard bind (no socket)", () => {
  const request = (host: string | undefined, url = "/api/stats") =>
    ({
      headers: host === undefined ? {} : { host },
      url,
      method: "GET"
    }) as unknown as HttpServerRequest.HttpServerRequest
  it("0.0.0.0 also answers this machine's addresses and host name, never another name", () => {
    const guard = Guard.make({ host: "0.0.0.0", boundAddress: "0.0.0.0", port: 8888, token: TOKEN, allowedHosts: [] })
    const status = (host: string | undefined) => guard.check(request(host))?.status
    const addresses = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a !== undefined && a.family === "IPv4")
      .map((a) => a?.address ?? "")
    for (const address of [...addresses, os.hostname(), "localhost", "127.0.0.1"]) {
      expect([address, status(`${address}:8888`)]).toEqual([address, 401]) // past the Host check
    }
    expect(status("evil.example:8888")).toBe(421)
    expect(status(undefined)).toBe(421)
    expect(status("[::1]:8888")).toBe(401)
    expect(status("::1:8888")).toBe(421)
    expect(Guard.isLoopback("127.0.0.53") && Guard.isLoopback("[::1]") && Guard.isLoopback("localhost")).toBe(true)
    expect(Guard.isLoopback("0.0.0.0") || Guard.isLoopback("10.0.0.1") || Guard.isLoopback("::")).toBe(false)
  })
})

describe("Prometheus exposition", () => {
  it.effect("renders HELP/TYPE once per name and escapes label values", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("console_test_events_total", { description: "Events\\seen\nso far" })
      yield* Metric.incrementBy(Metric.tagged(counter, "path", 'C:\\tmp\\"x"\nnext'), 3)
      yield* Metric.incrementBy(Metric.tagged(counter, "path", "plain"), 2)
      const gauge = Metric.gauge("console-test gauge")
      yield* Metric.set(gauge, 1.5)
      const histogram = Metric.histogram("console_test_latency", MetricBoundaries.fromIterable([1, 2]))
      yield* Metric.update(histogram, 1.5)
      const text = yield* WebConsole.prometheusText
      const lines = text.split("\n")
      expect(lines.filter((l) => l === "# TYPE console_test_events_total counter")).toHaveLength(1)
      expect(lines).toContain("# HELP console_test_events_total Events\\\\seen\\nso far")
      expect(lines).toContain('console_test_events_total{path="C:\\\\tmp\\\\\\"x\\"\\nnext"} 3')
      expect(lines).toContain('console_test_events_total{path="plain"} 2')
      // Names are sanitised to [a-zA-Z_:][a-zA-Z0-9_:]*.
      expect(lines).toContain("# TYPE console_test_gauge gauge")
      expect(lines).toContain("console_test_gauge 1.5")
      expect(lines).toContain("# TYPE console_test_latency histogram")
      expect(lines).toContain('console_test_latency_bucket{le="1"} 0')
      expect(lines).toContain('console_test_latency_bucket{le="2"} 1')
      expect(lines).toContain('console_test_latency_bucket{le="+Inf"} 1')
      expect(lines).toContain("console_test_latency_count 1")
      expect(text.endsWith("\n")).toBe(true)
    })
  )
})

describe("RateHistory", () => {
  const snapshot = (values: Partial<Connection.ConnectionStats>) => values as Connection.ConnectionStats
  const counters = (k: number) => ({
    datagramsIn: 10 * k,
    datagramsOut: 5 * k,
    bytesIn: 1000 * k,
    bytesOut: 500 * k,
    updatesIn: 20 * k,
    updatesOut: 10 * k,
    naksSent: k,
    naksReceived: 0,
    retransmissionsSent: 0,
    retransmissionsReceived: k
  })

  it("computes per-second rates, peaks and a bounded history; a reopened connection starts over", () => {
    const history = new RateHistory(3)
    const at = (t: number, k: number, openedAt = 0) =>
      history.record([snapshot({ connection: "g:1", openedAt, ...counters(k) })], t)
    at(1_000, 0)
    expect(history.view("g:1").history).toEqual([])
    at(2_000, 1) // +1 unit in 1 s
    at(2_500, 3) // +2 units in 0.5 s: 4 units/s
    at(3_500, 3) // idle
    at(4_500, 4)
    const v = history.view("g:1")
    expect(v.history.map((s) => s.at)).toEqual([2_500, 3_500, 4_500])
    expect(v.current.updatesIn).toBe(20)
    expect(v.peak.updatesIn).toBe(80)
    expect(v.peak.bytesIn).toBe(4_000)
    expect(v.history[1].rates.datagramsIn).toBe(0)
    expect(history.view("g:1", 1).history.map((s) => s.at)).toEqual([4_500])
    // Reopened (new openedAt): a new baseline, no negative rates.
    at(5_500, 0, 5_000)
    expect(history.view("g:1").history).toEqual([])
    expect(history.view("g:1").peak.updatesIn).toBe(0)
    // Closed connections are forgotten.
    history.record([], 6_000)
    expect(history.view("g:1")).toEqual({ current: expect.any(Object), peak: expect.any(Object), history: [] })
  })
})
