/**
 * The Distributor: one scoped service per process. It holds the process-level configuration, owns
 * the connections opened through it (closing its scope closes them all) and reports statistics.
 *
 * ```ts
 * import { Distributor, Transport } from "effect-distributor"
 *
 * const program = Effect.gen(function*() {
 *   const connection = yield* Distributor.connection({ group: "239.192.0.1", port: 5197 })
 *   const publisher = yield* connection.publisher
 *   yield* publisher.publish("/prices/eq/ABC", "42.17")
 * })
 *
 * program.pipe(
 *   Effect.scoped,
 *   Effect.provide(Distributor.layer({ application: "pricer" })),
 *   Effect.provide(Transport.layerUdp)
 * )
 * ```
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type * as Connection from "./Connection.js"
import {
  ConnectionConfig,
  DistributorConfig,
  decodeConnectionConfig,
  decodeDistributorConfig
} from "./DistributorConfig.js"
import { InvalidConfig, type TransportError, type WebConsoleError } from "./DistributorError.js"
import * as internalConnection from "./internal/connection.js"
import * as internalConsole from "./internal/console/server.js"
import type { GatewayStats } from "./internal/gateway/server.js"
import { Transport } from "./Transport.js"

/**
 * Input accepted where a connection configuration is expected: a `ConnectionConfig`, or the plain
 * fields to decode into one (missing fields get their defaults).
 *
 * @since 0.1.0
 */
export type ConnectionConfigInput = ConnectionConfig | typeof ConnectionConfig.Encoded

/**
 * @since 0.1.0
 */
export type DistributorConfigInput = DistributorConfig | typeof DistributorConfig.Encoded

/**
 * A plain snapshot of the distributor and its connections.
 *
 * @since 0.1.0
 */
export interface DistributorStats {
  readonly application: string
  readonly host: string
  readonly startedAt: number
  readonly connections: ReadonlyArray<Connection.ConnectionStats>
  /** Gateways registered with this Distributor (see `registerGateway`); absent from stats made elsewhere. */
  readonly gateways?: ReadonlyArray<GatewayStats>
}

/**
 * @since 0.1.0
 */
export interface DistributorService {
  readonly config: DistributorConfig
  /** Epoch milliseconds (from Effect's Clock). */
  readonly startedAt: number
  /**
   * Open a connection (one multicast group + port). It is closed when the caller's scope closes,
   * or when the Distributor's scope closes, whichever comes first. One connection per
   * `group:port` at a time.
   */
  readonly connection: (
    config: ConnectionConfigInput
  ) => Effect.Effect<Connection.ConnectionService, TransportError | InvalidConfig, Scope.Scope>
  /** The connections open now. */
  readonly connections: Effect.Effect<ReadonlyArray<Connection.ConnectionService>>
  readonly stats: Effect.Effect<DistributorStats>
  /**
   * Show a gateway in `stats` (and so in the web console) until the caller's scope closes.
   * `Gateway.make` calls it when a Distributor is in its context.
   */
  readonly registerGateway: (stats: Effect.Effect<GatewayStats>) => Effect.Effect<void, never, Scope.Scope>
  /** Where the web console listens (`http://host:port/`), or undefined when it is disabled. */
  readonly consoleUrl: string | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Distributor extends Context.Tag("effect-distributor/Distributor")<Distributor, DistributorService>() {}

const toConnectionConfig = (input: ConnectionConfigInput): Effect.Effect<ConnectionConfig, InvalidConfig> =>
  input instanceof ConnectionConfig ? Effect.succeed(input) : decodeConnectionConfig(input)

const toDistributorConfig = (input: DistributorConfigInput): Effect.Effect<DistributorConfig, InvalidConfig> =>
  input instanceof DistributorConfig ? Effect.succeed(input) : decodeDistributorConfig(input)

/**
 * Build the service in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  input: DistributorConfigInput = {}
): Effect.Effect<DistributorService, InvalidConfig | WebConsoleError, Transport | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* toDistributorConfig(input)
    const transport = yield* Transport
    const scope = yield* Effect.scope
    const startedAt = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const open = new Map<string, Connection.ConnectionService>()

    const connection: DistributorService["connection"] = (input) =>
      Effect.gen(function* () {
        const config_ = yield* toConnectionConfig(input)
        const key = config_.key
        if (open.has(key)) {
          return yield* new InvalidConfig({
            reason: "Inconsistent",
            path: "group",
            detail: `a connection to ${key} is already open in this Distributor`
          })
        }
        // Connections on one group must not share a port, data or control (a connection on port P
        // has its control channel on P + 1 by default): each would hear the other's traffic.
        const ports = [config_.port, config_.effectiveControlPort]
        for (const other of open.values()) {
          const c = other.config
          if (c.group !== config_.group) continue
          const shared = ports.find((p) => p === c.port || p === c.effectiveControlPort)
          if (shared !== undefined) {
            return yield* new InvalidConfig({
              reason: "Inconsistent",
              path: shared === config_.port ? "port" : "controlPort",
              detail:
                `port ${shared} is already used by the connection to ${c.key} (data ${c.port}, control ` +
                `${c.effectiveControlPort}) in this Distributor; on one group, give each connection its own two ports`
            })
          }
        }
        // The connection lives in a child of the Distributor's scope, and the caller's scope
        // closes that child: whichever closes first closes the connection.
        const child = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        yield* Effect.addFinalizer(() => Scope.close(child, Exit.void))
        yield* Scope.addFinalizer(
          child,
          Effect.sync(() => open.delete(key))
        )
        const conn = yield* internalConnection.make({ distributor: config, config: config_ }).pipe(
          Effect.provideService(Transport, transport),
          Scope.extend(child),
          Effect.onError(() => Scope.close(child, Exit.void))
        )
        open.set(key, conn)
        return conn
      })

    const connections = Effect.sync(() => Array.from(open.values()))
    const gateways = new Set<Effect.Effect<GatewayStats>>()
    const registerGateway: DistributorService["registerGateway"] = (gatewayStats) =>
      Effect.acquireRelease(
        Effect.sync(() => gateways.add(gatewayStats)),
        () => Effect.sync(() => gateways.delete(gatewayStats))
      )
    const stats = Effect.map(
      // Suspended: the open connections and gateways are read on every run, not once here.
      Effect.suspend(() =>
        Effect.zip(
          Effect.forEach(Array.from(open.values()), (c) => c.stats),
          Effect.all(Array.from(gateways))
        )
      ),
      ([connections, gateways]): DistributorStats => ({
        application: config.application,
        host: config.host,
        startedAt,
        connections,
        gateways
      })
    )
    const base = { config, startedAt, connection, connections, stats, registerGateway }
    // Started last, so it closes first; a port in use fails `make` with WebConsoleError.
    const webConsole = config.console.enabled ? yield* internalConsole.start(base, config.console) : undefined
    return { ...base, consoleUrl: webConsole?.url } satisfies DistributorService
  })

/**
 * The Distributor as a scoped layer. Needs a `Transport` (`Transport.layerUdp` for real multicast,
 * `Transport.layerMemory` for a simulated network).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: DistributorConfigInput = {}
): Layer.Layer<Distributor, InvalidConfig | WebConsoleError, Transport> => Layer.scoped(Distributor, make(config))

/**
 * The Distributor configured from an Effect `Config` (e.g. `DistributorConfig.distributorConfig`,
 * read from environment variables).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<DistributorConfig>
): Layer.Layer<Distributor, InvalidConfig | WebConsoleError | ConfigError.ConfigError, Transport> =>
  Layer.scoped(Distributor, Effect.flatMap(config, make))

/**
 * Open a connection through the Distributor in context (scoped).
 *
 * @since 0.1.0
 * @category accessors
 */
export const connection = (
  config: ConnectionConfigInput
): Effect.Effect<Connection.ConnectionService, TransportError | InvalidConfig, Distributor | Scope.Scope> =>
  Effect.flatMap(Distributor, (d) => d.connection(config))

/**
 * @since 0.1.0
 * @category accessors
 */
export const stats: Effect.Effect<DistributorStats, never, Distributor> = Effect.flatMap(Distributor, (d) => d.stats)
