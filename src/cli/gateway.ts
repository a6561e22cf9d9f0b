/**
 * `distributor gateway`: open one or more multicast connections and serve them over WebSocket
 * with `Gateway`, for clients multicast cannot reach (`distributor sub --gateway`, browsers,
 * `GatewayClient`). Prints its URL, a line per client joining and leaving, and on Ctrl-C
 * (SIGINT/SIGTERM) closes the client sockets, the connections and the server, then prints the
 * gateway's counters.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Distributor from "../Distributor.js"
import * as Gateway from "../Gateway.js"
import * as Opt from "./internal/options.js"
import { commandHelp, fmtInt, Reporter } from "./internal/output.js"
import { distributorLayer, transportLayer } from "./internal/transport.js"

export interface GatewayCommandOptions {
  readonly group: string
  readonly port: number
  readonly iface: string
  /** More connections (`group:port`), served as indexes 1, 2, … */
  readonly connections: ReadonlyArray<{ readonly group: string; readonly port: number }>
  readonly security: Opt.SecurityOption | undefined
  readonly application: string
  readonly dialect: Opt.DialectName
  readonly listen: { readonly host: string; readonly port: number }
  readonly path: string
  readonly tokenEnv: Option.Option<string>
  readonly resumeWindowMs: number
  readonly replayMaxUpdates: Option.Option<number>
  readonly replayMaxBytes: Option.Option<number>
  readonly maxClients: Option.Option<number>
  readonly consolePort: Option.Option<number>
  readonly json: boolean
  readonly jsonLines: boolean
}

/** How often the client list is compared with the last one, for the join/leave lines. */
const WATCH_INTERVAL = "100 millis"

const hostPort = (name: string, text: string) => {
  const m = /^\s*(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})\s*$/.exec(text)
  const port = m === null ? Number.NaN : Number(m[3])
  return m !== null && port <= 65_535
    ? Effect.succeed({ host: m[1] ?? m[2], port })
    : Opt.invalid(`--${name}: expected host:port (e.g. 127.0.0.1:8787), got '${text}'`)
}

const run = (o: GatewayCommandOptions) =>
  Effect.gen(function* () {
    const reporter = new Reporter("gateway", o)
    const startedAt = Date.now()
    let stats: Gateway.GatewayStats | undefined
    const body = Effect.gen(function* () {
      const distributor = yield* Distributor.Distributor
      if (distributor.consoleUrl) reporter.info(`Web console: ${distributor.consoleUrl}`)
      const common = {
        interface: o.iface,
        ...Opt.dialectConfig(o.dialect),
        ...(o.security === undefined ? {} : { security: o.security })
      }
      const connections = yield* Effect.forEach([{ group: o.group, port: o.port }, ...o.connections], (c) =>
        distributor.connection({ ...c, ...common })
      )
      const token = Option.isSome(o.tokenEnv) ? process.env[o.tokenEnv.value] : undefined
      const gateway = yield* Gateway.make({
        connections,
        host: o.listen.host,
        port: o.listen.port,
        path: o.path,
        resumeWindowMs: o.resumeWindowMs,
        ...(token === undefined ? {} : { token }),
        ...Option.match(o.replayMaxUpdates, { onNone: () => ({}), onSome: (n) => ({ replayMaxUpdates: n }) }),
        ...Option.match(o.replayMaxBytes, { onNone: () => ({}), onSome: (n) => ({ replayMaxBytes: n }) }),
        ...Option.match(o.maxClients, { onNone: () => ({}), onSome: (n) => ({ maxClients: n }) })
      })
      reporter.info(
        `Gateway on ${gateway.url} serving ${gateway.connections.map((c, i) => `[${i}] ${c}`).join(", ")} ` +
          `(interface ${o.iface}${token === undefined ? "" : ", token required"}; ` +
          `resume window ${o.resumeWindowMs / 1000} s). Ctrl-C stops it.`
      )
      reporter.event("ready", { url: gateway.url, connections: gateway.connections })

      // Join/leave lines from the difference between two snapshots: state per client name.
      let last = new Map<string, Gateway.ClientStats>()
      const watch = Effect.flatMap(gateway.stats, (s) =>
        Effect.sync(() => {
          stats = s
          const now = new Map(s.clients.map((c) => [c.name, c]))
          for (const [name, c] of now) {
            const before = last.get(name)
            if (c.connected && (before === undefined || !before.connected || before.address !== c.address)) {
              const resumed = before !== undefined
              reporter.info(`client ${name} joined from ${c.address ?? "?"}${resumed ? " (resumed)" : ""}`)
              reporter.event("client", { name, state: "joined", address: c.address ?? null, resumed })
            } else if (!c.connected && before?.connected === true) {
              reporter.info(`client ${name} left (resumable for ${o.resumeWindowMs / 1000} s)`)
              reporter.event("client", { name, state: "left" })
            }
          }
          for (const name of last.keys()) {
            if (!now.has(name)) {
              reporter.info(`client ${name} expired`)
              reporter.event("client", { name, state: "expired" })
            }
          }
          last = now
        })
      )
      yield* Effect.forkScoped(Effect.repeat(watch, Schedule.spaced(WATCH_INTERVAL)))
      // Final counters, taken while the gateway is still open (finalizers run in reverse order).
      yield* Effect.addFinalizer(() => Effect.ignore(watch))
      return yield* Effect.never
    })

    yield* body.pipe(
      Effect.scoped,
      Effect.provide(
        distributorLayer({
          application: o.application,
          consolePort: Option.getOrUndefined(o.consolePort),
          transport: transportLayer({ sendLoss: 0, receiveLoss: 0, seed: 1 })
        })
      ),
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          const c = stats?.counters
          reporter.summary(
            { url: stats?.url ?? null, durationMs: Date.now() - startedAt, counters: c ?? null, interrupted: true },
            [
              `Stopped after ${((Date.now() - startedAt) / 1000).toFixed(1)} s.` +
                (c === undefined
                  ? ""
                  : ` Clients: ${fmtInt(c.hellos)} hello(s), ${fmtInt(c.resumes)} resume(s), ${fmtInt(c.socketsRefused)} refused; ` +
                    `updates sent ${fmtInt(c.updatesOut)}, publishes received ${fmtInt(c.publishesIn)}, ` +
                    `gaps ${fmtInt(c.gapsSent)}, frames dropped ${fmtInt(c.framesDropped)}.`)
            ]
          )
        })
      )
    )
  })

export const command = Command.make(
  "gateway",
  {
    group: Opt.group("239.192.0.1"),
    port: Opt.port(5197),
    iface: Opt.iface("0.0.0.0"),
    connections: Options.text("connection").pipe(
      Options.withDescription(
        "Another connection to serve, group:port (repeatable); clients choose by index (1, 2, …; -g/-p is 0)."
      ),
      Options.repeated,
      Options.mapEffect((texts) =>
        Effect.forEach(texts, (text) =>
          Effect.map(hostPort("connection", text), ({ host, port }) => ({ group: host, port }))
        )
      )
    ),
    security: Opt.security,
    application: Opt.application("distributor-gateway"),
    dialect: Opt.dialect,
    listen: Options.text("listen").pipe(
      Options.withDescription(
        "WebSocket address, host:port (port 0 picks a free one). Anything but loopback needs --token-env."
      ),
      Options.withDefault("127.0.0.1:8787"),
      Options.mapEffect((text) => hostPort("listen", text))
    ),
    path: Options.text("path").pipe(
      Options.withDescription("URL path of the WebSocket endpoint."),
      Options.withDefault("/")
    ),
    tokenEnv: Opt.tokenEnv("The environment variable holding the bearer token clients must present."),
    resumeWindowMs: Opt.durationWithDefault(
      "resume-window",
      "How long a disconnected client's session (subscriptions, missed updates) is kept for it to resume.",
      "60s"
    ),
    replayMaxUpdates: Opt.integerAtLeast("replay-max-updates", "Replay buffer per client: updates (10000).", 1).pipe(
      Options.optional
    ),
    replayMaxBytes: Opt.integerAtLeast("replay-max-bytes", "Replay buffer per client: bytes (16 MiB).", 1024).pipe(
      Options.optional
    ),
    maxClients: Opt.integerAtLeast("max-clients", "Client sessions, connected or resumable (1000).", 1).pipe(
      Options.optional
    ),
    consolePort: Opt.consolePort,
    json: Opt.json,
    jsonLines: Opt.jsonLines
  },
  run
).pipe(
  Command.withDescription(
    commandHelp(
      "Serve multicast connections over WebSocket: clients (`distributor sub --gateway`, GatewayClient, browsers) " +
        "subscribe and publish with named sessions that resume after a dropped socket. Prints a line per client " +
        "joining and leaving; Ctrl-C stops it and prints its counters.",
      [
        "distributor gateway -i 127.0.0.1",
        "distributor sub --gateway ws://127.0.0.1:8787/ --name dash '/distributor/...'",
        "GW_TOKEN=$(openssl rand -hex 16) distributor gateway --listen 0.0.0.0:8787 --token-env GW_TOKEN",
        "distributor gateway -g 239.192.0.1 -p 5197 --connection 239.192.0.2:6000 --resume-window 5m --console-port 8888"
      ]
    )
  )
)
