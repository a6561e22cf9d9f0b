/**
 * The web console's HTTP server: `@effect/platform` routes on a Node `http.Server`, living in the
 * scope it is started in (the Distributor's). A sampler fiber in the same scope snapshots the
 * statistics once a second into the rate history and pushes each snapshot to `/api/events`.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as PubSub from "effect/PubSub"
import type * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ConnectionStats } from "../../Connection.js"
import type { DistributorStats } from "../../Distributor.js"
import { WebConsoleError } from "../../DistributorError.js"
import { pickConnectionCounters } from "../counters.js"
import type { GatewayStats } from "../gateway/server.js"
import * as HttpListen from "../httpListen.js"
import * as Guard from "./guard.js"
import { HISTORY_CAPACITY, RateHistory } from "./history.js"
import { PAGE_CSP, PAGE_HTML } from "./page.js"
import * as Prometheus from "./prometheus.js"
import { type ConnectionView, type GatewayView, StatsResponse } from "./schema.js"

/** How often the sampler takes a snapshot. */
export const SAMPLE_INTERVAL_MS = 1000

/** What the console needs of a Distributor. */
export interface ConsoleSource {
  readonly startedAt: number
  readonly stats: Effect.Effect<DistributorStats>
}

export interface StartOptions {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  /** Bearer token every request must carry; required unless `host` is a loopback address. */
  readonly token?: Redacted.Redacted<string> | string | undefined
  /** Extra `Host` header values to answer: `name` (any port), `name:port`, or `"*"` for any. */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
}

export interface WebConsoleHandle {
  /** `http://host:port/` of the running console. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** The body of `/api/stats` (full history), as a value. */
  readonly stats: Effect.Effect<StatsResponse>
  /** The body of `/metrics`. */
  readonly metrics: Effect.Effect<string>
}

/** Prometheus text of Effect's global metric registry. */
export const metricsText: Effect.Effect<string> = Effect.map(Metric.snapshot, Prometheus.render)

const toGatewayView = (g: GatewayStats): GatewayView => ({
  url: g.url,
  counters: { ...g.counters },
  clients: g.clients.map((c) => ({
    name: c.name,
    connected: c.connected,
    address: c.address ?? null,
    connectedAt: c.connectedAt ?? null,
    detachedAt: c.connected ? null : (c.detachedAt ?? null),
    subscriptions: c.subscriptions.map((s) => ({ pattern: s.pattern, connection: s.connection })),
    delivered: c.nextSeq - 1,
    buffered: c.buffered,
    bufferedBytes: c.bufferedBytes,
    unsent: c.unsent,
    published: c.published,
    dropped: c.framesDropped
  }))
})

const toConnectionView = (c: ConnectionStats, history: RateHistory, historyLimit: number): ConnectionView => {
  const rates = history.view(c.connection, historyLimit)
  return {
    connection: c.connection,
    openedAt: c.openedAt,
    counters: pickConnectionCounters(c),
    kernelReceiveBufferErrors: c.kernelReceiveBufferErrors ?? null,
    socket: {
      sendErrors: c.socket.sendErrors,
      lastSendError: c.socket.lastSendError ?? null,
      queueDrops: c.socket.queueDrops,
      recvBufferSize: c.socket.recvBufferSize,
      sendBufferSize: c.socket.sendBufferSize,
      backend: c.socket.backend ?? null,
      segmentation: c.socket.segmentation ?? null
    },
    rates: { current: rates.current, peak: rates.peak },
    history: rates.history,
    publishers: c.publishers.map((p) => ({
      sessionId: p.source.sessionId,
      senderIndex: p.source.senderIndex,
      highestSeq: p.highestSeq,
      cachedSegments: p.cachedSegments,
      cachedBytes: p.cachedBytes
    })),
    subscriptions: c.subscriptions.map((s) => ({
      pattern: s.pattern,
      buffered: s.buffered,
      delivered: s.delivered,
      dropped: s.dropped
    })),
    remoteSessions: c.remoteSessions.map((r) => ({
      sessionId: r.session.sessionId,
      senderIndex: r.session.senderIndex,
      host: r.session.host,
      application: r.session.application,
      address: r.session.address,
      state: r.state,
      highestSeq: r.highestSeq,
      delivered: r.delivered,
      lastHeardAt: r.lastHeardAt,
      naksSent: r.naksSent,
      retransmissionsReceived: r.retransmissionsReceived,
      lostSegments: r.lostSegments,
      duplicates: r.duplicates
    })),
    remoteReceivers: c.remoteReceivers.map((r) => ({
      sessionId: r.receiver.sessionIdHex,
      name: r.receiver.name,
      host: r.receiver.host,
      application: r.receiver.application,
      address: r.receiver.address,
      joinedAt: r.joinedAt,
      lastHeardAt: r.lastHeardAt,
      windowBytes: r.windowBytes,
      windowSegments: r.windowSegments,
      positions: r.positions.map((p) => ({ sessionId: p.session.sessionId, position: p.position, lag: p.lag }))
    })),
    nakRequesters: [...c.nakRequesters].sort((a, b) => b.naks - a.naks || (a.host < b.host ? -1 : 1)),
    recentLosses: c.recentLosses.map(({ at, loss }) => ({
      at,
      reason: loss.reason,
      sessionId: BigInt(`0x${loss.sessionId}`),
      host: loss.host,
      application: loss.application,
      firstSeq: loss.firstSeq,
      lastSeq: loss.lastSeq
    }))
  }
}

const encodeStats = Schema.encode(StatsResponse)

const formatUrl = (host: string, port: number): string => `http://${host.includes(":") ? `[${host}]` : host}:${port}/`

const HistoryQuery = Schema.Struct({
  history: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(0, HISTORY_CAPACITY)))
})

const noStore = { "cache-control": "no-store", "x-content-type-options": "nosniff" }

const textEncoder = new TextEncoder()

/**
 * Start the console in the current scope: listen on `host:port`, sample once a second, serve.
 * A port in use fails with `WebConsoleError` (reason `PortInUse`); a non-loopback host without a
 * token with `TokenRequired`, before anything is bound. Every request passes `Guard` first.
 */
export const start = (
  source: ConsoleSource,
  options: StartOptions
): Effect.Effect<WebConsoleHandle, WebConsoleError, Scope.Scope> =>
  Effect.gen(function* () {
    const address = `${options.host}:${options.port}`
    const token = Guard.tokenValue(options.token)
    if (token === undefined && !Guard.isLoopback(options.host)) {
      return yield* new WebConsoleError({
        reason: "TokenRequired",
        address,
        detail:
          `${options.host} is not a loopback address, so anyone who can reach it could read the console: ` +
          "set an access token (console.token / DISTRIBUTOR_CONSOLE_TOKEN) or bind to 127.0.0.1"
      })
    }
    const { hostname, nodeServer, port, server } = yield* HttpListen.listen(options.host, options.port).pipe(
      Effect.mapError((failure) => new WebConsoleError({ ...failure, address }))
    )
    const bound = { hostname, port }
    const url = formatUrl(bound.hostname, bound.port)

    // ---- sampling ------------------------------------------------------------------------------

    const history = new RateHistory()
    const events = yield* Effect.acquireRelease(PubSub.sliding<string>(8), PubSub.shutdown)

    const build = (stats: DistributorStats, now: number, historyLimit: number): StatsResponse => ({
      application: stats.application,
      host: stats.host,
      pid: process.pid,
      startedAt: stats.startedAt,
      now,
      uptimeMs: Math.max(0, now - stats.startedAt),
      sampleIntervalMs: SAMPLE_INTERVAL_MS,
      connections: stats.connections.map((c) => toConnectionView(c, history, historyLimit)),
      gateways: (stats.gateways ?? []).map(toGatewayView)
    })

    const snapshot = (historyLimit: number) =>
      Effect.map(Effect.zip(source.stats, Clock.currentTimeMillis), ([stats, now]) => build(stats, now, historyLimit))

    const toJson = (response: StatsResponse) =>
      Effect.map(Effect.orDie(encodeStats(response)), (encoded) => JSON.stringify(encoded))

    const sample = Effect.gen(function* () {
      const stats = yield* source.stats
      const now = yield* Clock.currentTimeMillis
      history.record(stats.connections, now)
      // Live clients already hold the history: each event carries only the newest sample.
      yield* PubSub.publish(events, yield* toJson(build(stats, now, 1)))
    })
    yield* sample
    yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(`${SAMPLE_INTERVAL_MS} millis`)))

    // ---- routes --------------------------------------------------------------------------------

    const statsRoute = Effect.gen(function* () {
      const query = yield* Effect.either(HttpServerRequest.schemaSearchParams(HistoryQuery))
      if (query._tag === "Left") {
        return HttpServerResponse.text(`Bad query: history must be an integer 0..${HISTORY_CAPACITY}\n`, {
          status: 400,
          headers: noStore
        })
      }
      const json = yield* toJson(yield* snapshot(query.right.history ?? HISTORY_CAPACITY))
      return HttpServerResponse.text(json, { contentType: "application/json; charset=utf-8", headers: noStore })
    })

    const eventsRoute = Effect.sync(() => {
      const body = Stream.unwrapScoped(
        Effect.gen(function* () {
          // Subscribe before the first snapshot so no sample falls between the two.
          const queue = yield* PubSub.subscribe(events)
          const first = yield* toJson(yield* snapshot(HISTORY_CAPACITY))
          return Stream.concat(Stream.succeed(first), Stream.fromQueue(queue))
        })
      ).pipe(
        Stream.map((json) => textEncoder.encode(`event: stats\ndata: ${json}\n\n`)),
        Stream.prepend(Chunk.of(textEncoder.encode("retry: 2000\n\n")))
      )
      return HttpServerResponse.stream(body, {
        contentType: "text/event-stream; charset=utf-8",
        headers: { ...noStore, connection: "keep-alive" }
      })
    })

    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/",
        Effect.succeed(
          HttpServerResponse.text(PAGE_HTML, {
            contentType: "text/html; charset=utf-8",
            headers: { ...noStore, "content-security-policy": PAGE_CSP, "referrer-policy": "no-referrer" }
          })
        )
      ),
      HttpRouter.get("/api/stats", statsRoute),
      HttpRouter.get("/api/events", eventsRoute),
      HttpRouter.get(
        "/metrics",
        Effect.map(metricsText, (text) =>
          HttpServerResponse.text(text, { contentType: Prometheus.CONTENT_TYPE, headers: noStore })
        )
      ),
      HttpRouter.get(
        "/healthz",
        Effect.map(Clock.currentTimeMillis, (now) =>
          HttpServerResponse.unsafeJson({ status: "ok", uptimeMs: now - source.startedAt }, { headers: noStore })
        )
      )
    )

    const guard = Guard.make({
      host: options.host,
      boundAddress: bound.hostname,
      port: bound.port,
      token,
      allowedHosts: options.allowedHosts ?? []
    })
    yield* server.serve(
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const refused = guard.check(request)
        return refused === undefined ? router : Effect.succeed(refused)
      })
    )
    // Runs first on close: event streams never end by themselves, and `server.close()` waits for
    // every open connection.
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
    yield* Effect.logDebug(`effect-distributor web console on ${url}`)

    return {
      url,
      host: bound.hostname,
      port: bound.port,
      stats: snapshot(HISTORY_CAPACITY),
      metrics: metricsText
    } satisfies WebConsoleHandle
  })
