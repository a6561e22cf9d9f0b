/**
 * `distributor sub`: subscribe to one or more patterns and verify what arrives from each
 * publisher (order, gaps, duplicates, payload integrity) and how long delivery took. On an
 * irrecoverable loss it either stops (the library's default: the stream fails) or reports it and
 * goes on (`onLoss: "notify"`). With `--gateway ws://…` it reads through a `GatewayClient`
 * instead of a multicast connection: the same verification, output and exit codes.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Connection from "../Connection.js"
import * as Distributor from "../Distributor.js"
import {
  type GatewayError,
  type GatewayLoss,
  InvalidConfig,
  type InvalidOption,
  type InvalidTopic
} from "../DistributorError.js"
import * as GatewayClient from "../GatewayClient.js"
import * as Topic from "../Topic.js"
import * as Transport from "../Transport.js"
import * as Opt from "./internal/options.js"
import { commandHelp, ExitCode, fmtInt, fmtMs, Reporter } from "./internal/output.js"
import { preciseNow } from "./internal/payload.js"
import { distributorLayer, transportLayer } from "./internal/transport.js"
import { Verifier, type VerifierSummary } from "./internal/verify.js"

/** After the last expected end marker, how long to keep reading (the other topics' markers follow it). */
const SETTLE_MS = 200

export interface SubOptions {
  readonly patterns: ReadonlyArray<string>
  /** `ws://host:port/path` of a gateway to read through instead of multicast. */
  readonly gateway: Option.Option<string>
  /** Name of the environment variable holding the gateway's token. */
  readonly tokenEnv: Option.Option<string>
  readonly security: Opt.SecurityOption | undefined
  readonly group: string
  readonly port: number
  readonly controlPort: Option.Option<number>
  readonly iface: string
  readonly application: string
  readonly dialect: Opt.DialectName
  readonly name: Option.Option<string>
  readonly onLoss: "stop" | "report"
  readonly receiveLoss: number
  readonly seed: number
  readonly count: Option.Option<number>
  readonly publishers: Option.Option<number>
  readonly duration: Option.Option<number>
  readonly consolePort: Option.Option<number>
  readonly json: boolean
  readonly jsonLines: boolean
}

type StopReason = "count" | "publishers" | "duration" | "loss" | "ended"

/** How long `sub --gateway` waits for the first connection before giving up. */
const GATEWAY_CONNECT_TIMEOUT = "10 seconds"

/** `sub --gateway` could not reach the gateway (the client keeps retrying; the command does not). */
export class GatewayUnreachable extends Schema.TaggedError<GatewayUnreachable>()("GatewayUnreachable", {
  reason: Schema.Literal("Timeout"),
  url: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `gateway ${this.url} unreachable (${this.reason}): ${this.detail}`
  }
}

type Notice = Connection.LossNotice | GatewayLoss

/** Recovery counters and remote session states of a feed, for the progress line and the summary. */
interface FeedStats {
  readonly naksSent: number
  readonly retransmissionsReceived: number
  readonly duplicatesDropped: number
  readonly simulatedReceiveDrops: number
  readonly sessions: ReadonlyArray<{ readonly sessionId: string; readonly state: string }>
}

/** Where `sub` reads from: a multicast connection or a gateway; everything else is shared. */
interface Feed {
  /** `group:port`, or the gateway's URL. */
  readonly key: string
  /** Said after "Subscribed to … on <key>". */
  readonly via: string
  readonly subscribe: (
    pattern: string,
    notify: boolean
  ) => Effect.Effect<
    Stream.Stream<Connection.Update | Notice, Notice | GatewayError>,
    InvalidTopic | InvalidOption,
    Scope.Scope
  >
  readonly stats: Effect.Effect<FeedStats>
  /** Conflict events of the connection (forged or corrupted packets); none through a gateway. */
  readonly conflicts?: Stream.Stream<Extract<Connection.ConnectionEvent, { _tag: "Conflict" }>>
}

const multicastFeed = (o: SubOptions, reporter: Reporter) => {
  const open = Effect.gen(function* () {
    const distributor = yield* Distributor.Distributor
    if (distributor.consoleUrl) reporter.info(`Web console: ${distributor.consoleUrl}`)
    const connection = yield* distributor.connection({
      group: o.group,
      port: o.port,
      ...Opt.controlPortConfig(o.controlPort),
      interface: o.iface,
      ...Opt.dialectConfig(o.dialect),
      ...(Option.isSome(o.name) ? { name: o.name.value } : {}),
      ...(o.security === undefined ? {} : { security: o.security })
    })
    return {
      key: connection.key,
      via:
        `(interface ${o.iface}${o.dialect === "pycast" ? ", pycast dialect" : ""})` +
        (o.receiveLoss > 0 ? ` with ${o.receiveLoss * 100}% simulated receive loss` : ""),
      subscribe: (pattern, notify) =>
        notify ? connection.subscribeScoped(pattern, { onLoss: "notify" }) : connection.subscribeScoped(pattern),
      stats: Effect.map(connection.stats, (s) => ({
        naksSent: s.naksSent,
        retransmissionsReceived: s.retransmissionsReceived,
        duplicatesDropped: s.duplicates,
        simulatedReceiveDrops: Transport.simulatedDrops(s.socket)?.receive ?? 0,
        sessions: s.remoteSessions.map((r) => ({ sessionId: r.session.sessionIdHex, state: r.state }))
      })),
      conflicts: Stream.filter(
        connection.events,
        (e): e is Extract<Connection.ConnectionEvent, { _tag: "Conflict" }> => e._tag === "Conflict"
      )
    } satisfies Feed
  })
  // Built into the caller's scope: the Distributor lives as long as the subscription, not only
  // while the feed is made (as `Effect.provide` would have it).
  const layer = distributorLayer({
    application: o.application,
    consolePort: Option.getOrUndefined(o.consolePort),
    transport: transportLayer({ sendLoss: 0, receiveLoss: o.receiveLoss, seed: o.seed })
  })
  return Effect.flatMap(Layer.build(layer), (context) => Effect.provide(open, context))
}

const gatewayFeed = (url: string, o: SubOptions) =>
  Effect.gen(function* () {
    const token = Option.isSome(o.tokenEnv) ? process.env[o.tokenEnv.value] : undefined
    const client = yield* GatewayClient.make({
      url,
      name: Option.getOrElse(o.name, () => `${o.application}-${process.pid}`),
      ...(token === undefined ? {} : { token })
    })
    // The client retries forever (a refused handshake looks like a network failure to a
    // WebSocket: no status code); a command gives up and says so.
    yield* client.awaitConnected.pipe(
      Effect.timeout(GATEWAY_CONNECT_TIMEOUT),
      Effect.catchTag("TimeoutException", () =>
        Effect.flatMap(client.status, (s) =>
          Effect.fail(
            new GatewayUnreachable({
              reason: "Timeout",
              url,
              detail:
                `not connected within ${GATEWAY_CONNECT_TIMEOUT} (${s.state._tag === "Connecting" ? s.state.attempt : 0} attempts); ` +
                "is it running, and are the token (--token-env) and address right?"
            })
          )
        )
      )
    )
    const status = yield* client.status
    const connection = status.state._tag === "Connected" ? ` (connection ${status.state.connection})` : ""
    return {
      key: url,
      via: `as ${client.name}${connection}`,
      subscribe: (pattern, notify) =>
        notify ? client.subscribeScoped(pattern, { onLoss: "notify" }) : client.subscribeScoped(pattern),
      // Recovery happens behind the gateway; a resume after a dropped socket is not a loss.
      stats: Effect.succeed({
        naksSent: 0,
        retransmissionsReceived: 0,
        duplicatesDropped: 0,
        simulatedReceiveDrops: 0,
        sessions: []
      })
    } satisfies Feed
  }).pipe(Effect.provide(NodeSocket.layerWebSocketConstructor))

const lossLine = (l: { reason: string; sessionId: string; firstSeq: number; lastSeq: number }) =>
  `  lost segments ${l.firstSeq}..${l.lastSeq} of session ${l.sessionId}: ${l.reason}`

/** Human lines describing one verifier's result. */
export const describe = (v: VerifierSummary, indent = ""): Array<string> => {
  const lines = [
    `${indent}${fmtInt(v.received)} updates from ${v.publishers.length} publisher(s): ` +
      `${fmtInt(v.missing)} missing (${fmtInt(v.unreportedMissing)} without a reported loss), ` +
      `${fmtInt(v.duplicates)} duplicates, ${fmtInt(v.outOfOrder)} out of order, ${fmtInt(v.corrupt)} corrupt` +
      (v.foreign > 0 ? `, ${fmtInt(v.foreign)} not in the tools' format` : "") +
      "."
  ]
  for (const p of v.publishers) {
    lines.push(
      `${indent}  ${p.application}@${p.host} session ${p.sessionId}: received ${fmtInt(p.received)}` +
        (p.published !== null ? ` of ${fmtInt(p.published)} published` : "") +
        (p.missing > 0 ? `, missing ${fmtInt(p.missing)}` : "") +
        (p.lossReports > 0 ? `, ${p.lossReports} loss report(s) (${fmtInt(p.lostSegments)} segments)` : "") +
        (p.joinedLate ? " (joined after it started)" : "")
    )
    for (const g of p.gaps.slice(0, 10)) {
      lines.push(`${indent}    missing on ${g.topic}: ${g.first === g.last ? g.first : `${g.first}..${g.last}`}`)
    }
  }
  for (const l of v.losses.slice(0, 20)) lines.push(indent + lossLine(l))
  if (v.losses.length > 20) lines.push(`${indent}  … and ${v.losses.length - 20} more losses`)
  if (v.overflows > 0)
    lines.push(`${indent}  subscriber overflowed ${v.overflows} time(s), ${fmtInt(v.overflowDropped)} dropped`)
  for (const l of v.gatewayLosses.slice(0, 20))
    lines.push(`${indent}  gateway lost client updates ${l.firstSeq}..${l.lastSeq ?? "(unknown)"}: ${l.reason}`)
  return lines
}

const run = (o: SubOptions) =>
  Effect.gen(function* () {
    const reporter = new Reporter("sub", o)
    const patterns = o.patterns.length > 0 ? Array.from(new Set(o.patterns)) : ["/..."]
    for (const p of patterns) {
      const invalid = Topic.validatePattern(p)
      if (invalid) return yield* Effect.fail(invalid)
    }
    const verifiers = patterns.map(() => new Verifier())
    const ended = new Set<string>()
    const startedAt = Date.now()
    let stopReason: StopReason | undefined
    let stats: Effect.Effect<FeedStats> | undefined
    let key = Option.getOrElse(o.gateway, () => `${o.group}:${o.port}`)
    let connectionClosed = false
    /** Remote session states, as last seen while the connection was open. */
    const sessionStates = new Map<string, string>()
    // Conflict events (forged or corrupted packets, docs/PROTOCOL.md "Hostile networks"): printed as
    // they come, the first MAX_CONFLICTS kept for the summary, all counted.
    const conflicts: Array<Record<string, string>> = []
    let conflictCount = 0
    const onConflict = (e: Extract<Connection.ConnectionEvent, { _tag: "Conflict" }>) => {
      conflictCount++
      const fields = {
        reason: e.reason,
        sessionId: e.session.sessionIdHex,
        host: e.session.host,
        application: e.session.application,
        address: e.session.address,
        detail: e.detail
      }
      if (conflicts.length < MAX_CONFLICTS) conflicts.push(fields)
      reporter.info(
        `Conflict (${e.reason}): session ${fields.sessionId} ${fields.application}@${fields.host} from ${fields.address}: ${e.detail}`
      )
      reporter.event("conflict", fields)
    }
    const received = () => verifiers.reduce((n, v) => n + v.received, 0)
    const losses = () => verifiers.reduce((n, v) => n + v.losses.length + v.overflows, 0)

    const body = Effect.gen(function* () {
      // Registered before the connection opens, so it runs after the connection closed (socket included).
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          connectionClosed = true
        })
      )
      const feed: Feed = Option.isSome(o.gateway)
        ? yield* gatewayFeed(o.gateway.value, o)
        : yield* multicastFeed(o, reporter)
      key = feed.key
      stats = feed.stats
      if (feed.conflicts !== undefined)
        yield* Effect.forkScoped(Stream.runForEach(feed.conflicts, (e) => Effect.sync(() => onConflict(e))))
      const done = yield* Deferred.make<StopReason>()
      let settleAt = Number.POSITIVE_INFINITY

      verifiers.forEach((v) => {
        v.onEnd = (sessionId) => {
          ended.add(sessionId)
          if (
            Option.isSome(o.publishers) &&
            ended.size >= o.publishers.value &&
            settleAt === Number.POSITIVE_INFINITY
          ) {
            settleAt = Date.now() + SETTLE_MS
          }
        }
      })

      const handle = (v: Verifier) => (chunk: Iterable<Connection.Update | Notice>) => {
        const now = preciseNow()
        for (const item of chunk) v.onItem(item, now)
        if (Option.isSome(o.count) && received() >= o.count.value) Deferred.unsafeDone(done, Exit.succeed("count"))
      }

      // Registered now, before anything is published that we must not miss.
      const consumers: Array<Effect.Effect<void, GatewayError>> = []
      for (let i = 0; i < patterns.length; i++) {
        const v = verifiers[i]
        const stream = yield* feed.subscribe(patterns[i], o.onLoss === "report")
        consumers.push(
          Connection.forEachChunk(stream, handle(v)).pipe(
            Effect.catchAll((error) =>
              // A stopped gateway client (taken over, refused) is a failure of the run, not a loss.
              error._tag === "GatewayError"
                ? Effect.fail(error)
                : Effect.sync(() => {
                    v.onNotice(error)
                    Deferred.unsafeDone(done, Exit.succeed("loss"))
                  })
            )
          )
        )
      }
      // Publishers that start from now on are expected in full, from their first update.
      const subscribedAt = preciseNow()
      for (const v of verifiers) v.subscribedAt = subscribedAt
      reporter.info(`Subscribed to ${patterns.join(" ")} on ${key} ${feed.via}; on irrecoverable loss: ${o.onLoss}.`)
      reporter.event("ready", { connection: key, patterns })

      const progress = Effect.gen(function* () {
        const s = yield* feed.stats
        for (const r of s.sessions) sessionStates.set(r.sessionId, r.state)
        const now = Date.now()
        if (now >= settleAt) Deferred.unsafeDone(done, Exit.succeed("publishers"))
        const latency = verifiers[0].latency.summary()
        const fields = {
          received: received(),
          elapsedMs: now - startedAt,
          publishers: new Set(verifiers.flatMap((v) => Array.from(v.publishers.keys()))).size,
          naksSent: s.naksSent,
          retransmissionsReceived: s.retransmissionsReceived,
          losses: losses(),
          p50Ms: latency.p50Ms
        }
        reporter.progress(
          `received ${fmtInt(fields.received)} · publishers ${fields.publishers} · NAKs sent ${fmtInt(s.naksSent)} · ` +
            `retransmissions received ${fmtInt(s.retransmissionsReceived)} · losses ${fields.losses} · ` +
            `p50 ${fmtMs(latency.p50Ms)} ms`,
          now
        )
        return fields
      })
      yield* reporter.forkProgress(progress, "50 millis")
      const all = Effect.as(Effect.all(consumers, { concurrency: "unbounded", discard: true }), "ended" as const)
      const timer = Option.isSome(o.duration)
        ? Effect.as(Effect.sleep(o.duration.value), "duration" as const)
        : Effect.never
      stopReason = yield* Effect.raceAll([Deferred.await(done), all, timer])
      yield* progress
    })

    const summarize = Effect.gen(function* () {
      const s = stats ? yield* stats : undefined
      // Session state as the connection last saw it: "closed" means the publisher said goodbye.
      const states = new Map(sessionStates)
      for (const r of s?.sessions ?? []) states.set(r.sessionId, r.state)
      const perPattern = verifiers.map((v) => {
        const summary = v.summary()
        return {
          ...summary,
          publishers: summary.publishers.map((p) => ({ ...p, state: states.get(p.sessionId) ?? "unknown" }))
        }
      })
      const total = (f: (v: VerifierSummary) => number) => perPattern.reduce((n, v) => n + f(v), 0)
      const latency = verifiers[0].latency
      for (const v of verifiers.slice(1)) latency.merge(v.latency)
      return {
        perPattern,
        summary: {
          connection: key,
          interface: Option.isSome(o.gateway) ? null : o.iface,
          patterns,
          durationMs: Date.now() - startedAt,
          received: total((v) => v.received),
          bytes: total((v) => v.bytes),
          publishers: new Set(perPattern.flatMap((v) => v.publishers.map((p) => p.sessionId))).size,
          missing: total((v) => v.missing),
          unreportedMissing: total((v) => v.unreportedMissing),
          duplicates: total((v) => v.duplicates),
          outOfOrder: total((v) => v.outOfOrder),
          corrupt: total((v) => v.corrupt),
          foreign: total((v) => v.foreign),
          lossReports: total((v) => v.losses.length),
          overflows: total((v) => v.overflows),
          latency: latency.summary(),
          naksSent: s?.naksSent ?? 0,
          retransmissionsReceived: s?.retransmissionsReceived ?? 0,
          duplicatesDropped: s?.duplicatesDropped ?? 0,
          simulatedReceiveDrops: s?.simulatedReceiveDrops ?? 0,
          conflicts: conflictCount,
          conflictEvents: conflicts,
          gatewayLosses: total((v) => v.gatewayLosses.length),
          ok: perPattern.every((v) => v.ok),
          connectionClosed,
          subscriptions: patterns.map((pattern, i) => ({ pattern, ...perPattern[i] }))
        }
      }
    })

    const exitCodeFor = (summary: { ok: boolean; lossReports: number; overflows: number }, interrupted: boolean) => {
      if (!summary.ok) return ExitCode.VerificationFailed
      if (stopReason === "loss") return ExitCode.LossReported
      if (!interrupted && stopReason === "duration" && (Option.isSome(o.count) || Option.isSome(o.publishers))) {
        return ExitCode.Incomplete
      }
      return ExitCode.Ok
    }

    if (Option.isSome(o.gateway)) {
      // The gateway side owns multicast: these options would silently do nothing here.
      const ignored = [
        o.receiveLoss > 0 && "--receive-loss",
        Option.isSome(o.consolePort) && "--console-port",
        o.security !== undefined && "--key-file/--passphrase-env",
        o.dialect !== "native" && "--dialect"
      ].filter((x) => x !== false)
      if (ignored.length > 0) {
        return yield* new InvalidConfig({
          reason: "Inconsistent",
          path: "gateway",
          detail: `--gateway reads through a gateway; ${ignored.join(", ")} apply to multicast only`
        })
      }
    }

    yield* body.pipe(
      Effect.scoped,
      Effect.onExit((exit) =>
        Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)
          ? Effect.flatMap(summarize, ({ perPattern, summary }) =>
              Effect.sync(() => {
                const interrupted = Exit.isFailure(exit)
                const code = exitCodeFor(summary, interrupted)
                process.exitCode = code
                const l = summary.latency
                const verdict = !summary.ok
                  ? "FAILED: updates went missing without a reported loss, or arrived duplicated, reordered or corrupt."
                  : summary.missing > 0 || summary.lossReports > 0 || summary.overflows > 0 || summary.gatewayLosses > 0
                    ? "Every gap was reported by the library as an irrecoverable loss; everything else arrived in order."
                    : "Everything received arrived in order, without gaps or duplicates."
                reporter.summary(
                  {
                    ...summary,
                    stopReason: interrupted ? "interrupted" : (stopReason ?? null),
                    interrupted,
                    exitCode: code
                  },
                  [
                    `${interrupted ? "Interrupted. " : ""}Received ${fmtInt(summary.received)} updates ` +
                      `(${fmtInt(summary.bytes)} B) on ${key} in ${(summary.durationMs / 1000).toFixed(1)} s.`,
                    ...(patterns.length === 1
                      ? describe(perPattern[0])
                      : perPattern.flatMap((v, i) => [`${patterns[i]}:`, ...describe(v, "  ")])),
                    `Latency (send → delivery): p50 ${fmtMs(l.p50Ms)} ms, p90 ${fmtMs(l.p90Ms)} ms, ` +
                      `p99 ${fmtMs(l.p99Ms)} ms, max ${fmtMs(l.maxMs)} ms (${fmtInt(l.samples)} samples).`,
                    `NAKs sent ${fmtInt(summary.naksSent)}, retransmissions received ${fmtInt(summary.retransmissionsReceived)}` +
                      (o.receiveLoss > 0 ? `, simulated receive drops ${fmtInt(summary.simulatedReceiveDrops)}` : "") +
                      ".",
                    ...(summary.conflicts > 0
                      ? [
                          `Conflicts (forged or corrupted packets): ${fmtInt(summary.conflicts)} ` +
                            `(${Array.from(new Set(conflicts.map((c) => c.reason))).join(", ")}).`
                        ]
                      : []),
                    verdict + (code === ExitCode.Ok ? "" : ` (exit code ${code})`)
                  ]
                )
              })
            )
          : Effect.void
      )
    )
  })

/** Conflict events kept for the summary (all are printed and counted). */
const MAX_CONFLICTS = 100

export const command = Command.make(
  "sub",
  {
    patterns: Args.text({ name: "pattern" }).pipe(
      Args.withDescription("Topic patterns to subscribe to (* = one level, trailing ... = one or more). Default: /..."),
      Args.repeated
    ),
    gateway: Options.text("gateway").pipe(
      Options.withDescription(
        "Subscribe through a gateway (`distributor gateway`) at this ws:// URL instead of multicast; " +
          "--name names the client's session (it resumes after a dropped socket)."
      ),
      Options.mapEffect((url) =>
        /^wss?:\/\//.test(url)
          ? Effect.succeed(url)
          : Opt.invalid(`--gateway: expected a ws:// or wss:// URL, got '${url}'`)
      ),
      Options.optional
    ),
    tokenEnv: Opt.tokenEnv("With --gateway: the environment variable holding the gateway's token."),
    group: Opt.group("239.192.0.1"),
    port: Opt.port(5197),
    controlPort: Opt.controlPort,
    iface: Opt.iface("0.0.0.0"),
    security: Opt.security,
    application: Opt.application("distributor-sub"),
    dialect: Opt.dialect,
    name: Options.text("name").pipe(
      Options.withDescription(
        "This subscriber's name as a receiver, shown to publishers (presence, console); with --gateway, " +
          "the client's session name (default: <application>-<pid>)."
      ),
      Options.optional
    ),
    onLoss: Options.choice("on-loss", ["stop", "report"]).pipe(
      Options.withDescription(
        "On an irrecoverable loss: stop (print the summary, exit code 4) or report it and go on (onLoss: notify)."
      ),
      Options.withDefault("stop" as const)
    ),
    receiveLoss: Opt.percent(
      "receive-loss",
      "Simulated loss: received datagrams dropped before the protocol sees them.",
      0
    ),
    seed: Opt.seed,
    count: Opt.integerAtLeast("count", "Stop after this many updates.", 1).pipe(
      Options.withAlias("n"),
      Options.optional
    ),
    publishers: Opt.integerAtLeast(
      "publishers",
      "Stop once this many publishers have finished (their end markers arrived).",
      1
    ).pipe(Options.optional),
    duration: Opt.duration("duration", "Stop after this long (10s, 500ms, 2m; a plain number is seconds)."),
    consolePort: Opt.consolePort,
    json: Opt.json,
    jsonLines: Opt.jsonLines
  },
  run
).pipe(
  Command.withDescription(
    commandHelp(
      "Subscribe and verify: per publisher, updates must arrive in publishing order without gaps or duplicates " +
        "(gaps are only allowed where the library reported an irrecoverable loss); reports delivery latency " +
        "percentiles from the send time in each payload. Reads payloads of `distributor pub`.",
      [
        "distributor sub -i 127.0.0.1 '/distributor/...'",
        "distributor sub -i 127.0.0.1 --publishers 1 --receive-loss 5 --json",
        "distributor sub -i 127.0.0.1 --name risk-engine '/prices/...'",
        "distributor sub --gateway ws://127.0.0.1:8787/ --name dashboard '/prices/...'",
        "distributor sub --dialect pycast -g 224.10.11.12 -p 5656 -i 127.0.0.1 '/test/...'",
        "distributor sub -g 239.192.0.2 -p 6000 '/prices/*/ABC' '/prices/fx/...' --on-loss report --duration 1m"
      ]
    )
  )
)
