/**
 * The gateway: publish and subscribe from where multicast cannot reach (browsers, other networks,
 * cloud hosts without multicast), over WebSocket, with named sessions that resume.
 *
 * A gateway serves one or more of a Distributor's connections on a port of its own (default
 * `127.0.0.1`, port 0 = a free one; `url` says which). Clients (`GatewayClient`, or anything that
 * speaks docs/PROTOCOL.md "Gateway") say their name in `hello`, subscribe with topic patterns and
 * publish. Each client's session (its subscriptions and a replay buffer bounded by
 * `replayMaxUpdates` and `replayMaxBytes`) outlives its socket by `resumeWindowMs` (default 60 s):
 * a client that comes back with the same name and the last sequence number it received gets
 * exactly what it missed, in order, then live. What the bounds or the window could not keep
 * reaches it as a typed `GatewayLoss` with the exact range. A second socket with the same name
 * takes the session over (the first is closed with code 4001).
 *
 * Access control is the web console's: the `Host` header must name the gateway (DNS rebinding),
 * and with a `token` every WebSocket handshake must carry it (`Authorization: Bearer <token>`, or
 * `?token=<token>` since browsers cannot set headers on a WebSocket); a non-loopback `host`
 * without a token fails with `GatewayError` (`TokenRequired`).
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const connection = yield* Distributor.connection({ group: "239.192.0.1", port: 5197 })
 *   const gateway = yield* Gateway.make({ connections: [connection], port: 8787 })
 *   yield* Effect.log(`gateway on ${gateway.url}`)
 *   yield* Effect.never
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Connection from "./Connection.js"
import * as Distributor from "./Distributor.js"
import type { GatewayError, InvalidConfig, TransportError } from "./DistributorError.js"
import { decodeOptions, type GatewayOptionsInput } from "./internal/gateway/options.js"
import * as internal from "./internal/gateway/server.js"

/**
 * Counters of a gateway: sockets accepted and refused (Host, token, too many clients), hellos,
 * resumes, takeovers, expired sessions, update frames queued to clients, publish frames received,
 * bad frames from clients (malformed, truncated, oversized, unknown type, out of order), error
 * frames sent, gaps sent, frames dropped from client buffers before they were sent.
 *
 * @since 0.1.0
 */
export type GatewayCounters = internal.GatewayCounters

/**
 * One client session, connected or within its resume window.
 *
 * @since 0.1.0
 */
export type ClientStats = internal.ClientStats

/**
 * @since 0.1.0
 */
export type GatewayStats = internal.GatewayStats

/**
 * Options of a gateway. Every field is optional; a bad value fails `make` with `InvalidConfig`
 * (`path` e.g. `gateway.port`; an unknown field is `UnknownField`).
 *
 * | option | default | meaning |
 * | --- | --- | --- |
 * | `host` / `port` | `127.0.0.1` / `0` | bind address; 0 picks a free port |
 * | `path` | `/` | URL path of the WebSocket endpoint |
 * | `token` | none | bearer token (string or `Redacted`, 8+ characters); required for a non-loopback host |
 * | `allowedHosts` | `[]` | extra `Host` header values (`name`, `name:port`, `*`) |
 * | `resumeWindowMs` | 60 000 | how long a disconnected client's session is kept |
 * | `replayMaxUpdates` / `replayMaxBytes` | 10 000 / 16 MiB | per-client replay buffer (also its outgoing queue) |
 * | `sendQueueMaxBytes` | 1 MiB | bytes handed to a client's socket and not yet written |
 * | `maxClients` | 1 000 | sessions, connected or resumable |
 * | `maxFrameBytes` | 16 MiB | largest frame accepted from a client (closed with 1009 beyond) |
 * | `maxSubscriptionsPerClient` | 1 000 | |
 * | `publishWindowBytes` | 4 MiB | publish bytes a client may send ahead of acknowledgements |
 * | `maxErrorsPerSocket` | 100 | bad frames tolerated before the socket is closed (1008) |
 * | `helloTimeoutMs` | 10 000 | time a new socket has to say `hello` |
 * | `tombstones` | 10 000 | expired sessions remembered, for exact `Expired` ranges |
 * | `subscriberBufferSize` | the connection's | buffer of the gateway's own subscription per connection |
 *
 * @since 0.1.0
 */
export type GatewayOptions = GatewayOptionsInput

/**
 * @since 0.1.0
 */
export interface MakeOptions extends GatewayOptions {
  /** The connections to serve; clients name them by index (0 is the default). */
  readonly connections: ReadonlyArray<Connection.ConnectionService>
}

/**
 * A running gateway.
 *
 * @since 0.1.0
 */
export interface GatewayService {
  /** `ws://host:port/path`, with the port actually bound. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** The connections served, by index (`group:port`). */
  readonly connections: ReadonlyArray<string>
  /** Counters and every client session now. */
  readonly stats: Effect.Effect<GatewayStats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Gateway extends Context.Tag("effect-distributor/Gateway")<Gateway, GatewayService>() {}

/**
 * Start a gateway for `connections` in the current scope; closing the scope closes every client
 * socket (1001 Going Away), the sessions and the server. Fails with `InvalidConfig` for a bad
 * option and `GatewayError` (`PortInUse`, `Bind`, `TokenRequired`, `NoConnection`). With a
 * `Distributor` in context, the gateway registers with it for as long as it runs, so its clients
 * appear in the Distributor's `stats` and web console.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MakeOptions): Effect.Effect<GatewayService, GatewayError | InvalidConfig, Scope.Scope> =>
  Effect.suspend(() => {
    const { connections, ...rest } = options
    return Effect.flatMap(decodeOptions(rest), (decoded) =>
      Effect.map(
        internal
          .start(connections, decoded)
          .pipe(
            Effect.tap((handle) =>
              Effect.serviceOption(Distributor.Distributor).pipe(
                Effect.flatMap(
                  Option.match({ onNone: () => Effect.void, onSome: (d) => d.registerGateway(handle.stats) })
                )
              )
            )
          ),
        (handle): GatewayService => ({ ...handle, connections: connections.map((c) => c.key) })
      )
    )
  })

/**
 * A gateway as a layer: opens `connections` (configs, opened through the Distributor in context)
 * and serves them, all closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: GatewayOptions & { readonly connections: ReadonlyArray<Distributor.ConnectionConfigInput> }
): Layer.Layer<Gateway, GatewayError | InvalidConfig | TransportError, Distributor.Distributor> =>
  Layer.scoped(
    Gateway,
    Effect.gen(function* () {
      const connections = yield* Effect.forEach(options.connections, Distributor.connection)
      return yield* make({ ...options, connections })
    })
  )
