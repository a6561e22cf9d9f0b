/**
 * The web console: one HTTP server per Distributor showing its connections, remote senders,
 * traffic and retransmission statistics, live.
 *
 * The Distributor starts it by itself when `config.console.enabled` (the default: 127.0.0.1:8888)
 * and closes it with its scope; `DistributorService.consoleUrl` says where it listens. Endpoints:
 *
 * - `GET /` — a self-contained HTML page that follows `/api/events` and draws rate charts;
 * - `GET /api/stats` — JSON, the `Encoded` side of `StatsResponse` (`?history=N`: newest N rate
 *   samples, default all, at most 300 = 5 minutes);
 * - `GET /api/events` — server-sent events: a `stats` event with a `StatsResponse` once a second
 *   (the first with the full rate history, later ones with only the newest sample);
 * - `GET /metrics` — Prometheus text format 0.0.4 of Effect's metric registry (the connection
 *   counters, labelled `connection`, and any other Effect metric of the application);
 * - `GET /healthz` — `{"status":"ok","uptimeMs":…}`.
 *
 * Access control, on every request (all routes, unknown paths included), before routing:
 *
 * - the `Host` header must name the console itself — `localhost`, `127.0.0.1`, `[::1]` or its bind
 *   address (for `0.0.0.0` also this machine's addresses and host name), with its port — or be
 *   listed in `allowedHosts`; anything else gets `421 Misdirected Request`. This stops DNS
 *   rebinding: a page on `evil.example` that re-points its name at 127.0.0.1 still sends
 *   `Host: evil.example`.
 * - with a `token`, a request must carry it: `Authorization: Bearer <token>` (scripts, Prometheus'
 *   `authorization` setting), `?token=<token>`, or the cookie set when a browser opens
 *   `/?token=<token>` (answered with a redirect to `./` that sets an HttpOnly, SameSite=Lax cookie
 *   for that port, so the page, its event stream and its links work without the token in the URL).
 *   Otherwise `401 Unauthorized`. Compared in constant time.
 * - a token is required to listen on anything but a loopback address: without one the console
 *   refuses to start (`WebConsoleError` with reason `TokenRequired`).
 *
 * ```ts
 * // A console on another port for a Distributor started with `console: { enabled: false }`:
 * const console = yield* WebConsole.make({ port: 9090 })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Distributor from "./Distributor.js"
import type { WebConsoleError } from "./DistributorError.js"
import type { StatsResponse as StatsResponseType } from "./internal/console/schema.js"
import * as internal from "./internal/console/server.js"

export {
  /**
   * Per-connection view: counters, socket, rates (current and peak), history, publishers,
   * subscriptions, remote sessions, NAK requesters, recent losses.
   *
   * @since 0.1.0
   */
  ConnectionView,
  /**
   * Every counter of a connection.
   *
   * @since 0.1.0
   */
  Counters,
  /**
   * One irrecoverable loss.
   *
   * @since 0.1.0
   */
  LossView,
  /**
   * NAKs received from one host.
   *
   * @since 0.1.0
   */
  NakRequester,
  /**
   * A local publishing session.
   *
   * @since 0.1.0
   */
  PublisherView,
  /**
   * One second of rate history.
   *
   * @since 0.1.0
   */
  RateSample,
  /**
   * Per-second rates of the traffic and recovery counters.
   *
   * @since 0.1.0
   */
  Rates,
  /**
   * A remote sending session as this Distributor sees it.
   *
   * @since 0.1.0
   */
  RemoteSessionView,
  /**
   * A 64-bit session id: `bigint` in TypeScript, 16 hex digits in JSON.
   *
   * @since 0.1.0
   */
  SessionId,
  /**
   * Socket statistics.
   *
   * @since 0.1.0
   */
  SocketView,
  /**
   * The body of `GET /api/stats` and of each `/api/events` event.
   *
   * @since 0.1.0
   */
  StatsResponse,
  /**
   * A subscription on a connection.
   *
   * @since 0.1.0
   */
  SubscriptionView
} from "./internal/console/schema.js"

/**
 * A running console.
 *
 * @since 0.1.0
 */
export interface WebConsoleService {
  /** `http://host:port/`, with the port actually bound (useful with port 0). */
  readonly url: string
  readonly host: string
  readonly port: number
  /** What `GET /api/stats` returns, as a value (`Type` side of `StatsResponse`). */
  readonly stats: Effect.Effect<StatsResponseType>
  /** What `GET /metrics` returns. */
  readonly metrics: Effect.Effect<string>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class WebConsole extends Context.Tag("effect-distributor/WebConsole")<WebConsole, WebConsoleService>() {}

/**
 * @since 0.1.0
 */
export interface MakeOptions {
  /** Bind address. Default: the Distributor's `console.host`. */
  readonly host?: string
  /** TCP port, 0 for a free one. Default: the Distributor's `console.port`. */
  readonly port?: number
  /** Access token; required for a non-loopback `host`. Default: the Distributor's `console.token`. */
  readonly token?: Redacted.Redacted<string> | string
  /** Extra `Host` header values to answer. Default: the Distributor's `console.allowedHosts`. */
  readonly allowedHosts?: ReadonlyArray<string>
}

/**
 * Start a console for `distributor` in the current scope (this is what the Distributor does when
 * `console.enabled`). Fails with `WebConsoleError` (`PortInUse`, `Bind`) if it cannot listen, or
 * (`TokenRequired`) if `host` is not a loopback address and there is no `token`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (
  distributor: Pick<Distributor.DistributorService, "startedAt" | "stats">,
  options: {
    readonly host: string
    readonly port: number
    readonly token?: Redacted.Redacted<string> | string | undefined
    readonly allowedHosts?: ReadonlyArray<string> | undefined
  }
): Effect.Effect<WebConsoleService, WebConsoleError, Scope.Scope> => internal.start(distributor, options)

/**
 * Start a console for the Distributor in context, in the current scope. Host and port default to
 * the Distributor's `console` configuration (whether or not it is enabled there).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: MakeOptions = {}
): Effect.Effect<WebConsoleService, WebConsoleError, Distributor.Distributor | Scope.Scope> =>
  Effect.flatMap(Distributor.Distributor, (d) =>
    start(d, {
      host: options.host ?? d.config.console.host,
      port: options.port ?? d.config.console.port,
      token: options.token ?? d.config.console.token,
      allowedHosts: options.allowedHosts ?? d.config.console.allowedHosts
    })
  )

/**
 * A console for the Distributor in context, closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MakeOptions = {}): Layer.Layer<WebConsole, WebConsoleError, Distributor.Distributor> =>
  Layer.scoped(WebConsole, make(options))

/**
 * The Prometheus text (format 0.0.4) of Effect's global metric registry, as served on `/metrics`.
 *
 * @since 0.1.0
 */
export const prometheusText: Effect.Effect<string> = internal.metricsText
