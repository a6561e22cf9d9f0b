/**
 * `distributor pub`: publish updates at a given rate on a set of topics, with payloads that carry
 * a per-publisher sequence number and a send timestamp (see `internal/payload.ts`), optionally
 * through simulated send loss. When it finishes (count, duration or Ctrl-C) it sends an end
 * marker on every topic with the totals, closes its session (goodbye) and lingers while
 * subscribers still ask for retransmissions.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Connection from "../Connection.js"
import * as Distributor from "../Distributor.js"
import { InvalidConfig, type InvalidTopic } from "../DistributorError.js"
import * as Topic from "../Topic.js"
import * as Transport from "../Transport.js"
import * as Opt from "./internal/options.js"
import { commandHelp, ExitCode, fmtInt, Reporter } from "./internal/output.js"
import * as Payload from "./internal/payload.js"
import { distributorLayer, transportLayer } from "./internal/transport.js"

/** `--await-receivers N` not met within `--duration`. */
export class ReceiversMissing extends Schema.TaggedError<ReceiversMissing>()("ReceiversMissing", {
  expected: Schema.Number,
  present: Schema.Number
}) {
  override get message(): string {
    return `${this.present} of ${this.expected} receiver(s) present within --duration`
  }
}

/** Most updates handed to one `publishAll` (they leave packed). */
const MAX_BATCH = 500

export interface PubOptions {
  readonly group: string
  readonly security: Opt.SecurityOption | undefined
  readonly port: number
  readonly controlPort: Option.Option<number>
  readonly iface: string
  readonly application: string
  readonly topics: number
  readonly topic: ReadonlyArray<string>
  readonly prefix: string
  readonly rate: number
  readonly size: Opt.SizeRange
  readonly count: Option.Option<number>
  readonly duration: Option.Option<number>
  readonly holdbackDelay: Option.Option<number>
  readonly holdbackThreshold: Option.Option<number>
  readonly sendLoss: number
  readonly seed: number
  readonly linger: number
  readonly awaitReceivers: number
  readonly flowControl: "min" | "max" | "none"
  readonly dialect: Opt.DialectName
  readonly consolePort: Option.Option<number>
  readonly json: boolean
  readonly jsonLines: boolean
}

/** The topics to publish on: the explicit ones, or `<prefix>/0 … <prefix>/<n-1>`. */
export const topicList = (
  o: Pick<PubOptions, "topic" | "topics" | "prefix">
): Effect.Effect<Array<string>, InvalidTopic> =>
  Effect.suspend(() => {
    const topics =
      o.topic.length > 0 ? Array.from(new Set(o.topic)) : Array.from({ length: o.topics }, (_, i) => `${o.prefix}/${i}`)
    for (const t of topics) {
      const invalid = Topic.validateTopic(t)
      if (invalid) return Effect.fail(invalid)
    }
    return Effect.succeed(topics)
  })

/** What a publishing run did; read by the summary, also after an interruption. */
export interface PubState {
  session: string | undefined
  published: number
  bytes: number
  endMarkers: number
  startedAt: number
  /** `sentAt` of the first update (carried in every payload as `startedAt`); 0 before it. */
  firstSentAt: number
  finishedAt: number
  readonly perTopic: Map<string, number>
  stats: Effect.Effect<Connection.ConnectionStats> | undefined
  /** Receivers present now, and every receiver seen during the run (`name@host (application)`). */
  readonly receivers: Map<string, string>
  readonly receiversSeen: Set<string>
  receiversPeak: number
}

export const makePubState = (): PubState => ({
  session: undefined,
  published: 0,
  bytes: 0,
  endMarkers: 0,
  startedAt: Date.now(),
  firstSentAt: 0,
  finishedAt: 0,
  perTopic: new Map(),
  stats: undefined,
  receivers: new Map(),
  receiversSeen: new Set(),
  receiversPeak: 0
})

/** How a receiver is shown: its name (or its session id) at host, with its application. */
export const receiverLabel = (r: Connection.Receiver): string =>
  `${r.name || r.sessionIdHex}@${r.host} (${r.application})`

/** Follow joins and leaves: the state's receiver tables, a line and a JSON event for each. */
const followPresence = (connection: Connection.ConnectionService, state: PubState, reporter: Reporter) =>
  connection.presence.pipe(
    Stream.runForEach((e) =>
      Effect.sync(() => {
        if (e._tag === "ReceiverJoined") {
          const label = receiverLabel(e.receiver)
          state.receivers.set(e.receiver.sessionIdHex, label)
          state.receiversSeen.add(label)
          state.receiversPeak = Math.max(state.receiversPeak, state.receivers.size)
          reporter.info(`Receiver joined: ${label}`)
          reporter.event("receiverJoined", { receiver: e.receiver.sessionIdHex, label })
        } else if (e._tag === "ReceiverLeft") {
          const label = receiverLabel(e.receiver)
          state.receivers.delete(e.receiver.sessionIdHex)
          reporter.info(`Receiver left (${e.reason === "Left" ? "unsubscribed" : "timed out"}): ${label}`)
          reporter.event("receiverLeft", { receiver: e.receiver.sessionIdHex, label, reason: e.reason })
        }
      })
    )
  )

/**
 * The publishing loop: paced to `rate` updates/s (0 = as fast as possible), round-robin over the
 * topics, until `count` or `duration`. Returns when done; end markers are sent by the caller.
 */
export const publishLoop = (
  publisher: Connection.Publisher,
  topics: ReadonlyArray<string>,
  o: { readonly rate: number; readonly size: Opt.SizeRange; readonly count?: number; readonly durationMs?: number },
  state: PubState
): Effect.Effect<void, Connection.PublishError> => {
  const t0 = Payload.preciseNow()
  const limit = o.count ?? Number.POSITIVE_INFINITY
  const span = o.size.max - o.size.min + 1
  const makeBatch = (n: number): Array<readonly [string, Uint8Array]> => {
    const batch: Array<readonly [string, Uint8Array]> = []
    const sentAt = Payload.preciseNow()
    for (let i = 0; i < n; i++) {
      const seq = state.published + i + 1
      const topic = topics[(seq - 1) % topics.length]
      const topicSeq = (state.perTopic.get(topic) ?? 0) + 1
      state.perTopic.set(topic, topicSeq)
      const size = o.size.min + Math.floor(Math.random() * span)
      if (state.firstSentAt === 0) state.firstSentAt = sentAt
      batch.push([topic, Payload.encode(size, { end: false, seq, topicSeq, sentAt, startedAt: state.firstSentAt })])
    }
    return batch
  }
  const step: Effect.Effect<void, Connection.PublishError> = Effect.suspend(() => {
    const elapsed = Payload.preciseNow() - t0
    if (state.published >= limit || (o.durationMs !== undefined && elapsed >= o.durationMs)) return Effect.void
    const due = o.rate > 0 ? Math.floor((elapsed * o.rate) / 1000) + 1 : Number.POSITIVE_INFINITY
    const n = Math.min(due, limit) - state.published
    if (n <= 0) {
      // Sleep until the next update is due (timers have ~1 ms granularity: bursts catch up).
      const wait = (state.published * 1000) / o.rate - elapsed
      return Effect.zipRight(Effect.sleep(Math.max(1, wait)), step)
    }
    const batch = makeBatch(Math.min(n, MAX_BATCH))
    const send = batch.length === 1 ? publisher.publish(batch[0][0], batch[0][1]) : publisher.publishAll(batch)
    return send.pipe(
      Effect.tap(() => {
        state.published += batch.length
        for (const [, p] of batch) state.bytes += p.length
      }),
      // Sent and counted together, or neither (Ctrl-C): the end markers' totals must be exact.
      Effect.uninterruptible,
      // Let socket I/O run (NAKs are answered from the receive loop) before the next batch.
      Effect.zipRight(Effect.sleep(0)),
      Effect.zipRight(step)
    )
  })
  return step
}

/**
 * The end markers, once: one per topic, with the topic's total and the publisher's total. They
 * follow every data update in the publisher's order, so a subscriber that sees one has seen (or
 * been told it lost) everything before it.
 */
export const sendEndMarkers = (
  publisher: Connection.Publisher,
  topics: ReadonlyArray<string>,
  state: PubState
): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (state.finishedAt > 0) return Effect.void
    state.finishedAt = Date.now()
    const sentAt = Payload.preciseNow()
    const markers = topics.map(
      (t) =>
        [
          t,
          Payload.encode(Payload.HEADER_SIZE, {
            end: true,
            seq: state.published,
            topicSeq: state.perTopic.get(t) ?? 0,
            sentAt,
            startedAt: state.firstSentAt || sentAt
          })
        ] as const
    )
    return publisher.publishAll(markers).pipe(
      Effect.zipRight(publisher.flush),
      Effect.tap(() => {
        state.endMarkers = markers.length
      }),
      Effect.ignore
    )
  })

/**
 * Keep the connection open while subscribers still ask for retransmissions: until no NAK arrived
 * for `quietMs`, or `maxMs` passed.
 */
export const linger = (
  stats: Effect.Effect<Connection.ConnectionStats>,
  maxMs: number,
  quietMs = 1000
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const start = Date.now()
    let last = (yield* stats).naksReceived
    let quietSince = start
    while (Date.now() - start < maxMs && Date.now() - quietSince < quietMs) {
      yield* Effect.sleep(25)
      const naks = (yield* stats).naksReceived
      if (naks !== last) {
        last = naks
        quietSince = Date.now()
      }
    }
  })

const run = (o: PubOptions) =>
  Effect.gen(function* () {
    const reporter = new Reporter("pub", o)
    if (o.dialect === "pycast" && o.awaitReceivers > 0) {
      return yield* new InvalidConfig({
        reason: "Inconsistent",
        path: "awaitReceivers",
        detail: "--await-receivers needs status reports, which pycast receivers do not send (--dialect pycast)"
      })
    }
    const topics = yield* topicList(o)
    const state = makePubState()
    let key = `${o.group}:${o.port}`
    let connectionClosed = false

    const body = Effect.gen(function* () {
      const distributor = yield* Distributor.Distributor
      if (distributor.consoleUrl) reporter.info(`Web console: ${distributor.consoleUrl}`)
      // Registered before the connection opens, so it runs after the connection closed (socket included).
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          connectionClosed = true
        })
      )
      const connection = yield* distributor.connection({
        group: o.group,
        port: o.port,
        ...Opt.controlPortConfig(o.controlPort),
        interface: o.iface,
        flowControl: o.flowControl,
        // pycast: segment size 8192 and no flow control (its receivers send no status).
        ...Opt.dialectConfig(o.dialect),
        ...(o.security === undefined ? {} : { security: o.security }),
        ...(Option.isSome(o.holdbackDelay) ? { holdbackDelayMs: o.holdbackDelay.value } : {}),
        ...(Option.isSome(o.holdbackThreshold) ? { holdbackThreshold: o.holdbackThreshold.value } : {})
      })
      key = connection.key
      state.stats = connection.stats
      yield* Effect.forkScoped(followPresence(connection, state, reporter))
      yield* Effect.scoped(
        Effect.gen(function* () {
          const publisher = yield* connection.publisher
          state.session = publisher.source.sessionIdHex
          // Also on Ctrl-C, before the publisher closes: subscribers learn the totals.
          yield* Effect.addFinalizer(() => sendEndMarkers(publisher, topics, state))
          const limits = [
            Option.isSome(o.count) ? `${fmtInt(o.count.value)} updates` : undefined,
            Option.isSome(o.duration) ? `${o.duration.value / 1000} s` : undefined
          ].filter((x) => x !== undefined)
          reporter.info(
            `Publishing on ${key} (interface ${o.iface}) as session ${state.session}: ${topics.length} topic(s), ` +
              `${o.rate > 0 ? `${fmtInt(o.rate)} updates/s` : "as fast as possible"}, ` +
              `${o.size.min === o.size.max ? o.size.min : `${o.size.min}-${o.size.max}`} B` +
              (o.sendLoss > 0 ? `, ${o.sendLoss * 100}% simulated send loss` : "") +
              `, until ${limits.length > 0 ? limits.join(" or ") : "Ctrl-C"}`
          )
          reporter.event("ready", { connection: key, session: state.session, topics: topics.length })
          if (o.awaitReceivers > 0) {
            reporter.info(`Waiting for ${o.awaitReceivers} receiver(s)…`)
            const wait = publisher.awaitReceivers(o.awaitReceivers)
            const present = Option.isSome(o.duration)
              ? yield* Effect.timeoutTo(wait, {
                  duration: o.duration.value,
                  onSuccess: () => true,
                  onTimeout: () => false
                })
              : yield* Effect.as(wait, true)
            if (!present) {
              return yield* Effect.fail(
                new ReceiversMissing({ expected: o.awaitReceivers, present: yield* publisher.receivers })
              )
            }
          }
          const progress = Effect.gen(function* () {
            const s = yield* connection.stats
            const now = Date.now()
            const fields = {
              published: state.published,
              elapsedMs: now - state.startedAt,
              naksReceived: s.naksReceived,
              retransmissionsSent: s.retransmissionsSent,
              receivers: state.receivers.size,
              flowControlWaits: s.flowControlWaits
            }
            reporter.progress(
              `published ${fmtInt(state.published)} · receivers ${state.receivers.size} · ` +
                `NAKs received ${fmtInt(s.naksReceived)} · retransmissions ${fmtInt(s.retransmissionsSent)}`,
              now
            )
            return fields
          })
          yield* reporter.forkProgress(progress, "250 millis")
          state.startedAt = Date.now()
          yield* publishLoop(
            publisher,
            topics,
            {
              rate: o.rate,
              size: o.size,
              ...(Option.isSome(o.count) ? { count: o.count.value } : {}),
              ...(Option.isSome(o.duration) ? { durationMs: o.duration.value } : {})
            },
            state
          )
          yield* sendEndMarkers(publisher, topics, state)
          // The session stays open while subscribers repair: its heartbeats reveal a lost tail, and
          // a receiver gives up its remaining gaps soon after a goodbye.
          yield* linger(connection.stats, o.linger)
        })
      )
      // Goodbye sent; the closed session still answers NAKs for a moment.
      yield* linger(connection.stats, 500, 200)
    })

    const summarize = Effect.gen(function* () {
      const s = state.stats ? yield* state.stats : undefined
      const elapsed = Math.max(1, (state.finishedAt || Date.now()) - state.startedAt)
      const drops = s ? Transport.simulatedDrops(s.socket) : undefined
      return {
        connection: key,
        interface: o.iface,
        session: state.session ?? null,
        topics: topics.length,
        published: state.published,
        bytes: state.bytes,
        endMarkers: state.endMarkers,
        durationMs: Math.round(elapsed),
        rate: Math.round((state.published * 1000) / elapsed),
        datagramsOut: s?.datagramsOut ?? 0,
        naksReceived: s?.naksReceived ?? 0,
        retransmissionsSent: s?.retransmissionsSent ?? 0,
        lostPacketsSent: s?.lostPacketsSent ?? 0,
        flowControlWaits: s?.flowControlWaits ?? 0,
        receivers: Array.from(state.receiversSeen),
        receiversPeak: state.receiversPeak,
        simulatedSendDrops: drops?.send ?? 0,
        sendErrors: s?.socket.sendErrors ?? 0,
        connectionClosed
      }
    })

    yield* body.pipe(
      Effect.scoped,
      Effect.provide(
        distributorLayer({
          application: o.application,
          consolePort: Option.getOrUndefined(o.consolePort),
          transport: transportLayer({ sendLoss: o.sendLoss, receiveLoss: 0, seed: o.seed })
        })
      ),
      // Also on Ctrl-C (interruption): the scopes above are closed by now, the summary follows.
      Effect.onExit((exit) =>
        Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)
          ? Effect.flatMap(summarize, (summary) =>
              Effect.sync(() => {
                const interrupted = Exit.isFailure(exit)
                process.exitCode = ExitCode.Ok
                reporter.summary({ ...summary, interrupted, exitCode: ExitCode.Ok }, [
                  `${interrupted ? "Interrupted. " : ""}Published ${fmtInt(summary.published)} updates ` +
                    `(${fmtInt(summary.bytes)} B) on ${summary.topics} topic(s) in ${(summary.durationMs / 1000).toFixed(1)} s ` +
                    `(${fmtInt(summary.rate)} updates/s) as session ${summary.session}.`,
                  `Datagrams out ${fmtInt(summary.datagramsOut)}, NAKs received ${fmtInt(summary.naksReceived)}, ` +
                    `retransmissions ${fmtInt(summary.retransmissionsSent)}, "lost" answers ${fmtInt(summary.lostPacketsSent)}` +
                    (o.sendLoss > 0 ? `, simulated send drops ${fmtInt(summary.simulatedSendDrops)}` : "") +
                    ".",
                  summary.receivers.length === 0
                    ? "No receivers reported status."
                    : `Receivers (${summary.receivers.length} seen, at most ${summary.receiversPeak} at once): ` +
                      `${summary.receivers.join(", ")}; segments that waited for their window ${fmtInt(summary.flowControlWaits)}.`
                ])
              })
            )
          : Effect.void
      )
    )
  })

export const command = Command.make(
  "pub",
  {
    group: Opt.group("239.192.0.1"),
    port: Opt.port(5197),
    controlPort: Opt.controlPort,
    iface: Opt.iface("0.0.0.0"),
    security: Opt.security,
    application: Opt.application("distributor-pub"),
    topics: Opt.integerAtLeast(
      "topics",
      "Number of topics, published round-robin: <prefix>/0 … <prefix>/<n-1>.",
      1
    ).pipe(Options.withDefault(10)),
    topic: Options.text("topic").pipe(
      Options.withAlias("t"),
      Options.withDescription("An explicit topic (repeat for several); replaces --topics/--prefix."),
      Options.repeated
    ),
    prefix: Options.text("prefix").pipe(
      Options.withDescription("Prefix of the generated topics."),
      Options.withDefault("/distributor")
    ),
    rate: Opt.nonNegativeNumber("rate", "Updates per second (0: as fast as possible).", 1000).pipe(
      Options.withAlias("r")
    ),
    size: Opt.sizeRange("100"),
    count: Opt.integerAtLeast("count", "Stop after this many updates.", 1).pipe(
      Options.withAlias("n"),
      Options.optional
    ),
    duration: Opt.duration("duration", "Stop after this long (10s, 500ms, 2m; a plain number is seconds)."),
    holdbackDelay: Opt.integerAtLeast(
      "holdback-delay",
      "Holdback delay in ms (0 disables packing under load).",
      0
    ).pipe(Options.optional),
    holdbackThreshold: Opt.integerAtLeast(
      "holdback-threshold",
      "Publish rate (updates/s) above which updates are held back and packed.",
      0
    ).pipe(Options.optional),
    sendLoss: Opt.percent("send-loss", "Simulated loss: datagrams dropped before the socket.", 0),
    seed: Opt.seed,
    awaitReceivers: Opt.integerAtLeast(
      "await-receivers",
      "Before publishing, wait until this many receivers (subscribed connections) report status; " +
        "with --duration, at most that long (exit 5 if they did not come).",
      0
    ).pipe(Options.withDefault(0)),
    flowControl: Options.choice("flow-control", ["min", "max", "none"] as const).pipe(
      Options.withDescription(
        "Pace publishing by the slowest receiver (min), the fastest (max), or not at all (none; always with --dialect pycast)."
      ),
      Options.withDefault("min" as const)
    ),
    dialect: Opt.dialect,
    linger: Opt.durationWithDefault(
      "linger",
      "After the last update, keep answering retransmission requests until none came for 1 s, at most this long.",
      "3s"
    ),
    consolePort: Opt.consolePort,
    json: Opt.json,
    jsonLines: Opt.jsonLines
  },
  run
).pipe(
  Command.withDescription(
    commandHelp(
      "Publish updates on a multicast group. Each payload carries a per-publisher sequence number, a per-topic " +
        "sequence number and its send time, so `distributor sub` can check order, gaps, duplicates and latency. " +
        "At the end an end marker with the totals goes out on every topic.",
      [
        "distributor pub -i 127.0.0.1 --rate 1000 --duration 10s",
        "distributor pub -i 127.0.0.1 --rate 0 --size 1024 --await-receivers 2 --duration 5s",
        "distributor pub -i 127.0.0.1 --count 50000 --rate 0 --size 64-1024 --send-loss 5 --json",
        "distributor pub -g 239.192.0.2 -p 6000 -t /prices/eq/ABC -t /prices/eq/DEF --rate 10",
        "distributor pub --dialect pycast --application test -g 224.10.11.12 -p 5656 -i 127.0.0.1 -t /test/0000 --rate 10"
      ]
    )
  )
)
