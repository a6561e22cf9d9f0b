/**
 * `distributor demo`: one publisher and two subscribers on loopback multicast (interface
 * 127.0.0.1), with simulated loss on the way, a live progress line, the web console, and a
 * summary that says whether everything published was delivered in order — or exactly what was
 * lost, and whether the library reported it.
 *
 * The three are three Distributors in this one process, each on its own (lossy) Transport. Why
 * not three processes: one command starts in about a second with no child processes to manage
 * or orphan; the summary compares every subscriber with the publisher's exact record (per topic)
 * rather than with what it announced; and one web console shows all three. The datagrams still go
 * through the kernel's multicast loopback, exactly as between processes.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Connection from "../Connection.js"
import * as Distributor from "../Distributor.js"
import * as Topic from "../Topic.js"
import * as Transport from "../Transport.js"
import * as WebConsole from "../WebConsole.js"
import * as Opt from "./internal/options.js"
import { commandHelp, ExitCode, fmtInt, fmtMs, Reporter } from "./internal/output.js"
import { preciseNow } from "./internal/payload.js"
import { transportLayer } from "./internal/transport.js"
import { Verifier } from "./internal/verify.js"
import { linger, makePubState, publishLoop, sendEndMarkers } from "./pub.js"

const PATTERN = "/demo/..."

export interface DemoOptions {
  readonly group: string
  readonly port: number
  readonly duration: number
  readonly rate: number
  readonly topics: number
  readonly size: Opt.SizeRange
  readonly loss: number
  readonly sendLoss: number
  readonly seed: number
  readonly dialect: Opt.DialectName
  readonly drain: number
  readonly consolePort: Option.Option<number>
  readonly noConsole: boolean
  readonly json: boolean
  readonly jsonLines: boolean
}

interface SubscriberSide {
  readonly name: string
  readonly verifier: Verifier
  stats: Effect.Effect<Connection.ConnectionStats> | undefined
}

const run = (o: DemoOptions) =>
  Effect.gen(function* () {
    const reporter = new Reporter("demo", o)
    const topics = Array.from({ length: o.topics }, (_, i) => `/demo/${i}`)
    const config = {
      group: o.group,
      port: o.port,
      interface: "127.0.0.1",
      loopback: true,
      ...Opt.dialectConfig(o.dialect)
    }
    const key = `${o.group}:${o.port}`
    const state = makePubState()
    let source: Connection.Source | undefined
    let consoleUrl: string | undefined
    let drained = false
    const subscribers: Array<SubscriberSide> = [
      { name: "A", verifier: new Verifier(), stats: undefined },
      { name: "B", verifier: new Verifier(), stats: undefined }
    ]

    const body = Effect.gen(function* () {
      const startedAt = Date.now()
      const make = (application: string, loss: { sendLoss: number; receiveLoss: number; seed: number }) =>
        Distributor.make({ application, console: { enabled: false } }).pipe(Effect.provide(transportLayer(loss)))
      const pubD = yield* make("demo-publisher", { sendLoss: o.sendLoss, receiveLoss: 0, seed: o.seed })
      const subDs = yield* Effect.forEach(subscribers, (s, i) =>
        make(`demo-subscriber-${s.name.toLowerCase()}`, { sendLoss: 0, receiveLoss: o.loss, seed: o.seed + i + 1 })
      )

      // One console for all three: their connections side by side, labelled by role.
      if (!o.noConsole) {
        const label = (role: string, stats: Distributor.DistributorStats) =>
          stats.connections.map((c) => ({ ...c, connection: `${role} ${c.connection}` }))
        const source = {
          startedAt,
          stats: Effect.map(Effect.all([pubD.stats, ...subDs.map((d) => d.stats)]), ([p, ...s]) => ({
            application: "distributor-demo",
            host: p.host,
            startedAt,
            connections: [
              ...label("publisher", p),
              ...s.flatMap((stats, i) => label(`subscriber ${subscribers[i].name}`, stats))
            ]
          }))
        }
        const port = Option.getOrElse(o.consolePort, () => 8888)
        const console = yield* WebConsole.start(source, { host: "127.0.0.1", port }).pipe(
          // The default port may be taken (another demo, another tool): any free port will do.
          Effect.catchTag("WebConsoleError", (e) =>
            e.reason === "PortInUse" && Option.isNone(o.consolePort)
              ? WebConsole.start(source, { host: "127.0.0.1", port: 0 })
              : Effect.fail(e)
          )
        )
        consoleUrl = console.url
        reporter.info(`Web console: ${console.url}`)
      }

      // Subscribers first, registered before anything is published.
      for (let i = 0; i < subscribers.length; i++) {
        const side = subscribers[i]
        const connection = yield* subDs[i].connection({ ...config, name: `subscriber-${side.name}` })
        side.stats = connection.stats
        const stream = yield* connection.subscribeScoped(PATTERN, { onLoss: "notify" })
        yield* Effect.forkScoped(
          Connection.forEachChunk(stream, (chunk) => {
            const now = preciseNow()
            for (const item of chunk) side.verifier.onItem(item, now)
          })
        )
      }
      const connection = yield* pubD.connection(config)
      state.stats = connection.stats
      reporter.info(
        `Demo on ${key} via 127.0.0.1 (loopback multicast): 1 publisher → 2 subscribers, ` +
          `${fmtInt(o.rate)} updates/s on ${o.topics} topics for ${o.duration / 1000} s, ` +
          `${o.loss * 100}% simulated receive loss per subscriber` +
          (o.sendLoss > 0 ? `, ${o.sendLoss * 100}% send loss at the publisher` : "") +
          ". Ctrl-C stops early."
      )

      const progress = Effect.gen(function* () {
        const p = yield* connection.stats
        const subs = yield* Effect.forEach(subscribers, (s) => s.stats ?? Effect.succeed(undefined))
        const now = Date.now()
        const fields = {
          elapsedMs: now - state.startedAt,
          published: state.published,
          delivered: subscribers.map((s) => s.verifier.received),
          naks: subs.reduce((n, s) => n + (s?.naksSent ?? 0), 0),
          retransmissions: p.retransmissionsSent,
          losses: subscribers.reduce((n, s) => n + s.verifier.losses.length, 0)
        }
        reporter.progress(
          `${((now - state.startedAt) / 1000).toFixed(1)} s · published ${fmtInt(fields.published)} · delivered ` +
            subscribers.map((s, i) => `${s.name} ${fmtInt(fields.delivered[i])}`).join(" ") +
            ` · NAKs ${fmtInt(fields.naks)} · retransmissions ${fmtInt(fields.retransmissions)} · losses ${fields.losses}`,
          now
        )
        return fields
      })
      yield* reporter.forkProgress(progress, "250 millis")

      yield* Effect.scoped(
        Effect.gen(function* () {
          const publisher = yield* connection.publisher
          source = publisher.source
          state.session = publisher.source.sessionIdHex
          yield* Effect.addFinalizer(() => sendEndMarkers(publisher, topics, state))
          if (o.dialect === "pycast") {
            // No status reports in pycast: the subscribers were registered first; give their
            // sockets a moment, then go (no flow control).
            yield* Effect.sleep(200)
            reporter.info("pycast dialect: no presence or flow control")
          } else {
            // Flow control paces the publisher by its receivers: start once both report status.
            yield* publisher.awaitReceivers(subscribers.length).pipe(Effect.timeout("2 seconds"), Effect.ignore)
            const present = yield* connection.receivers
            reporter.info(
              `Receivers present: ${present.map((r) => `${r.receiver.name}@${r.receiver.host}`).join(", ") || "none"}`
            )
          }
          state.startedAt = Date.now()
          yield* publishLoop(publisher, topics, { rate: o.rate, size: o.size, durationMs: o.duration }, state)
          yield* sendEndMarkers(publisher, topics, state)
          // With the session still open (after a goodbye receivers soon give up their gaps), wait
          // (bounded) until both subscribers have every end marker: all data before them arrived
          // or was reported lost.
          const drainStart = Date.now()
          while (!complete() && Date.now() - drainStart < o.drain) yield* Effect.sleep(20)
          drained = complete()
          yield* linger(connection.stats, 1000, 100)
        })
      )
      yield* progress
    })

    function complete(): boolean {
      return subscribers.every((s) => {
        const p = state.session ? s.verifier.publishers.get(state.session) : undefined
        if (!p?.ended) return false
        return Array.from(p.topics.values()).filter((t) => t.total !== undefined).length === topics.length
      })
    }

    const summarize = (interrupted: boolean) =>
      Effect.gen(function* () {
        const p = state.stats ? yield* state.stats : undefined
        const published = state.published
        const subs = []
        for (const s of subscribers) {
          // The publisher's exact record: what a subscriber lacks is missing, tail included.
          if (!interrupted && source !== undefined) {
            s.verifier.expect(source, state.perTopic, (t) => Topic.matches(PATTERN, t))
          }
          const v = s.verifier.summary()
          const st = s.stats ? yield* s.stats : undefined
          subs.push({
            name: s.name,
            gaps: v.publishers.flatMap((p) => p.gaps),
            delivered: v.received,
            missing: v.missing,
            unreportedMissing: v.unreportedMissing,
            duplicates: v.duplicates,
            outOfOrder: v.outOfOrder,
            corrupt: v.corrupt,
            lossReports: v.losses.length,
            losses: v.losses,
            overflows: v.overflows,
            latency: s.verifier.latency.summary(),
            naksSent: st?.naksSent ?? 0,
            retransmissionsReceived: st?.retransmissionsReceived ?? 0,
            simulatedReceiveDrops: (st && Transport.simulatedDrops(st.socket)?.receive) ?? 0,
            ok: v.ok
          })
        }
        const elapsed = Math.max(1, (state.finishedAt || Date.now()) - state.startedAt)
        return {
          connection: key,
          interface: "127.0.0.1",
          consoleUrl: consoleUrl ?? null,
          topics: o.topics,
          durationMs: Math.round(elapsed),
          loss: o.loss,
          sendLoss: o.sendLoss,
          published,
          rate: Math.round((published * 1000) / elapsed),
          drained,
          publisher: {
            session: state.session ?? null,
            datagramsOut: p?.datagramsOut ?? 0,
            naksReceived: p?.naksReceived ?? 0,
            retransmissionsSent: p?.retransmissionsSent ?? 0,
            lostPacketsSent: p?.lostPacketsSent ?? 0,
            simulatedSendDrops: (p && Transport.simulatedDrops(p.socket)?.send) ?? 0
          },
          subscribers: subs,
          unreportedMissing: subs.reduce((n, s) => n + s.unreportedMissing, 0),
          ok: subs.every((s) => s.ok)
        }
      })

    yield* body.pipe(
      Effect.scoped,
      Effect.onExit((exit) =>
        Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)
          ? Effect.flatMap(summarize(Exit.isFailure(exit)), (summary) =>
              Effect.sync(() => {
                const interrupted = Exit.isFailure(exit)
                const code = summary.ok ? ExitCode.Ok : ExitCode.VerificationFailed
                process.exitCode = code
                const lines = [
                  `${interrupted ? "Interrupted. " : ""}Published ${fmtInt(summary.published)} updates on ` +
                    `${summary.topics} topics in ${(summary.durationMs / 1000).toFixed(1)} s (${fmtInt(summary.rate)}/s); ` +
                    `${fmtInt(summary.publisher.datagramsOut)} datagrams, ${fmtInt(summary.publisher.naksReceived)} NAKs received, ` +
                    `${fmtInt(summary.publisher.retransmissionsSent)} retransmissions.`
                ]
                for (const s of summary.subscribers) {
                  lines.push(
                    `Subscriber ${s.name}: delivered ${fmtInt(s.delivered)}/${fmtInt(summary.published)}` +
                      (s.missing > 0
                        ? `, missing ${fmtInt(s.missing)} (${fmtInt(s.unreportedMissing)} unreported)`
                        : "") +
                      (s.duplicates > 0 ? `, ${fmtInt(s.duplicates)} duplicates` : "") +
                      (s.outOfOrder > 0 ? `, ${fmtInt(s.outOfOrder)} out of order` : "") +
                      `; ${fmtInt(s.simulatedReceiveDrops)} datagrams dropped on purpose, ${fmtInt(s.naksSent)} NAKs sent, ` +
                      `${fmtInt(s.retransmissionsReceived)} retransmissions received; latency p50 ${fmtMs(s.latency.p50Ms)} ms, ` +
                      `p99 ${fmtMs(s.latency.p99Ms)} ms, max ${fmtMs(s.latency.maxMs)} ms.`
                  )
                  for (const g of s.gaps.slice(0, 10)) {
                    lines.push(`  missing on ${g.topic}: ${g.first === g.last ? g.first : `${g.first}..${g.last}`}`)
                  }
                  for (const l of s.losses.slice(0, 10)) {
                    lines.push(
                      `  reported loss: segments ${l.firstSeq}..${l.lastSeq} of session ${l.sessionId} (${l.reason})`
                    )
                  }
                }
                const lost = summary.subscribers.reduce((n, s) => n + s.missing, 0)
                if (!interrupted && !summary.drained) {
                  lines.push(`The subscribers had not caught up ${o.drain / 1000} s after publishing ended (--drain).`)
                }
                lines.push(
                  !summary.ok
                    ? `FAILED: ${fmtInt(summary.unreportedMissing)} update(s) went missing without a reported loss, or ` +
                        "arrived duplicated, reordered or corrupt."
                    : interrupted
                      ? "Everything delivered so far arrived in order, without gaps or duplicates."
                      : lost === 0
                        ? "Everything published was delivered, in order, to both subscribers."
                        : `${fmtInt(lost)} update(s) could not be recovered, and every one was reported as an irrecoverable loss.`
                )
                reporter.summary({ ...summary, interrupted, exitCode: code }, lines)
              })
            )
          : Effect.void
      )
    )
  })

export const command = Command.make(
  "demo",
  {
    group: Opt.group("239.255.0.1"),
    port: Opt.port(5197),
    duration: Opt.durationWithDefault(
      "duration",
      "How long to publish (10s, 500ms, 2m; a plain number is seconds).",
      "10s"
    ),
    rate: Opt.nonNegativeNumber("rate", "Updates per second (0: as fast as possible).", 2000),
    topics: Opt.integerAtLeast("topics", "Number of topics (/demo/0 …).", 1).pipe(Options.withDefault(16)),
    size: Opt.sizeRange("64-512"),
    loss: Opt.percent(
      "loss",
      "Simulated loss at each subscriber: received datagrams dropped before the protocol sees them.",
      5
    ),
    sendLoss: Opt.percent("send-loss", "Simulated loss at the publisher: datagrams dropped before the socket.", 0),
    seed: Opt.seed,
    dialect: Opt.dialect,
    drain: Opt.durationWithDefault(
      "drain",
      "After publishing, wait at most this long for the subscribers to catch up.",
      "5s"
    ),
    consolePort: Opt.consolePort.pipe(
      Options.withDescription("Web console port (default 8888, or a free port if 8888 is taken; 0 = a free port).")
    ),
    noConsole: Options.boolean("no-console").pipe(Options.withDescription("Do not start the web console.")),
    json: Opt.json,
    jsonLines: Opt.jsonLines
  },
  run
).pipe(
  Command.withDescription(
    commandHelp(
      "One publisher and two subscribers on loopback multicast (interface 127.0.0.1) in this process, with " +
        "simulated loss on the way (5% of the datagrams each subscriber receives, by default), recovered by NAKs " +
        "and retransmissions. Shows a live progress line and the web console, then a summary: everything " +
        "published was delivered in order, or exactly what was lost. Exits 3 if any update went missing without " +
        "a reported loss.",
      [
        "distributor demo",
        "distributor demo --duration 30s --rate 20000 --loss 10",
        "distributor demo --duration 3s --console-port 0 --json"
      ]
    )
  )
)
