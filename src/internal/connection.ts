/**
 * The Effect shell around one protocol `Endpoint`: it owns the socket, drives the engine from the
 * socket's handler and from the timer fiber in the connection's scope, and hands delivered updates
 * to the fan-out (`fanout.ts`).
 *
 * Hot path: the socket calls the engine synchronously per datagram, no fiber in between; at the
 * end of each socket wake-up the fan-out gives every touched subscriber one chunk. No Effect is
 * built per datagram or per update.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as PubSub from "effect/PubSub"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Connection from "../Connection.js"
import type { ConnectionConfig, DistributorConfig } from "../DistributorConfig.js"
import { toEngineConfig } from "../DistributorConfig.js"
import {
  ConnectionClosed,
  type InvalidOption,
  InvalidPayload,
  type InvalidTopic,
  IrrecoverableLoss,
  PayloadCodecError,
  type TransportError,
  UpdateTooLarge
} from "../DistributorError.js"
import * as Topic from "../Topic.js"
import { type SocketStats, Transport } from "../Transport.js"
import { forEachChunk, withDirect } from "./consume.js"
import { zeroShellStats } from "./counters.js"
import { FanOut, type Item, type SubscriberError } from "./fanout.js"
import * as Inputs from "./inputs.js"
import { Endpoint, type LocalSender } from "./protocol/endpoint.js"
import type { EngineSink, LossReport, SessionEvent } from "./protocol/engine.js"
import { metricsFor, readKernelRcvbufErrors } from "./stats.js"
import * as EngineTimer from "./timer.js"

/** Losses kept for the statistics snapshot (the web console shows them). */
const RECENT_LOSSES = 100

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

const isPresenceEvent = (event: Connection.ConnectionEvent): event is Connection.PresenceEvent =>
  event._tag !== "Loss" && event._tag !== "SubscriberOverflow"

const lossError = (key: string, loss: LossReport): IrrecoverableLoss =>
  new IrrecoverableLoss({
    reason: loss.reason,
    connection: key,
    sessionId: loss.source.sessionIdHex,
    host: loss.source.host,
    application: loss.source.application,
    firstSeq: loss.firstSeq,
    lastSeq: loss.lastSeq,
    ...(loss.topic !== undefined ? { topic: loss.topic } : {})
  })

export interface MakeOptions {
  readonly distributor: DistributorConfig
  readonly config: ConnectionConfig
  /** Random source of the engine (NAK back-off, session ids); `Math.random` by default. */
  readonly random?: () => number
}

/** `publishAll` reads the clock once per this many updates. */
const CLOCK_EVERY = 64

/** `publishFrom`'s answer when publishAll waits for the flow-control window (for pacing it is the delay, > 0 ms). */
const WAIT_WINDOW = -1

/** Where a `publishAll` stands in its updates: arrays are read by index (no iterator result object per update). */
interface Cursor {
  readonly array: ReadonlyArray<unknown> | undefined
  readonly iterator: Iterator<unknown> | undefined
  /** Updates taken so far. */
  index: number
}

const makeCursor = (updates: Iterable<unknown>): Cursor | InvalidPayload => {
  if (Array.isArray(updates)) return { array: updates, iterator: undefined, index: 0 }
  const iterator = Inputs.iterate(updates)
  return iterator instanceof InvalidPayload ? iterator : { array: undefined, iterator, index: 0 }
}

export const make = (
  options: MakeOptions
): Effect.Effect<Connection.ConnectionService, TransportError, Transport | Scope.Scope> =>
  Effect.gen(function* () {
    const { config } = options
    const transport = yield* Transport
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const key = `${config.group}:${config.port}`

    // Two channels on the group (docs/PROTOCOL.md "Channels"): data on `port`, joined only while
    // something here receives (subscriptions, event streams), and control (NAKs, Status) on
    // `controlPort`, always joined. With `controlPort` = `port` one socket carries both.
    const controlPort = config.effectiveControlPort
    const split = controlPort !== config.port
    const socketOptions = {
      group: config.group,
      interface: config.interface,
      ttl: config.ttl,
      loopback: config.loopback,
      recvBufferSize: config.recvBufferSize,
      sendBufferSize: config.sendBufferSize
    }
    const socket = yield* transport.open({ ...socketOptions, port: config.port, joined: !split })
    const control = split ? yield* transport.open({ ...socketOptions, port: controlPort }) : undefined

    const openedAt = now()
    const kernelDropsAtOpen = readKernelRcvbufErrors()
    const events = yield* Effect.acquireRelease(PubSub.sliding<Connection.ConnectionEvent>(4096), PubSub.shutdown)
    const counters = zeroShellStats()
    const runtime = yield* Effect.runtime<never>()
    const logFault = (what: string, err: unknown) => {
      counters.engineFaults++
      Runtime.runFork(runtime)(Effect.logError(`protocol engine fault on ${what}`, err))
    }
    let closed = false

    const fanout = new FanOut(counters, (overflow) => events.unsafeOffer({ _tag: "SubscriberOverflow", overflow }))
    const validTopics = fanout.validTopics

    // Outputs of one synchronous drive of the engine: updates are routed to subscribers as they
    // come (handed over at the end of the drive, one chunk per subscriber), losses flush what was
    // routed before them, events are dispatched after the drive.
    let pendingEvents: Array<SessionEvent> = []
    const recentLosses: Array<Connection.LossRecord> = []
    // A report leaves mid-drive on the socket that carries control (a long read must not hold back
    // the window it reopens).
    const controlFlush = (control ?? socket).flush
    const sink: EngineSink = {
      send: socket.send,
      ...(control !== undefined ? { sendControl: control.send } : {}),
      ...(controlFlush !== undefined ? { flushControl: controlFlush } : {}),
      deliver: (update) => fanout.route(update),
      hasLocalSubscribers: () => fanout.size > 0,
      loss: (report) => {
        const error = lossError(key, report)
        if (recentLosses.length >= RECENT_LOSSES) recentLosses.shift()
        recentLosses.push({ at: now(), loss: error })
        events.unsafeOffer({ _tag: "Loss", loss: error })
        fanout.loss(error, report.source, report.confirmed, report.topic)
      },
      event: (event) => {
        pendingEvents.push(event)
      }
    }
    const endpoint = new Endpoint({
      // A socket with `flush` is done with every datagram once flushed (Transport.ts), and
      // `dispatch` tells the engine after each flush: senders reuse their evicted memory.
      config: {
        ...toEngineConfig(options.distributor, config, socket.stats().recvBufferSize),
        listening: false,
        reuseSendMemory: socket.flush !== undefined
      },
      sink,
      random: options.random ?? Math.random,
      now: openedAt
    })

    // Publishers waiting for the flow-control window, or for receivers to be present.
    const waiters = new Set<{ readonly ready: () => boolean; readonly wake: () => void }>()
    const releaseWaiters = () => {
      for (const w of waiters) {
        if (closed || w.ready()) {
          waiters.delete(w)
          w.wake()
        }
      }
    }
    /** Suspends until `ready()` holds (checked after every engine drive) or the connection closes. */
    const waitUntil = (ready: () => boolean): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed || ready()) return Effect.void
        const latch = Effect.unsafeMakeLatch(false)
        const waiter = { ready, wake: () => latch.unsafeOpen() }
        waiters.add(waiter)
        return Effect.ensuring(
          latch.await,
          Effect.sync(() => waiters.delete(waiter))
        )
      })

    // A connection reports itself as a receiver (Status: flow control, presence) while it has
    // subscriptions; a publish-only process holds back no publisher.
    const syncListening = () => {
      if (!closed) endpoint.setListening(fanout.size > 0, now())
    }

    // The data channel is joined once anything here receives (a subscription, an event stream),
    // before the subscription counts as made, and stays joined: leaving would turn the sessions
    // heard so far into gaps and false losses. Later receivers wait for the same join. With one
    // channel (`split` false) the socket was joined when it opened.
    const joinData: Effect.Effect<void> = split
      ? yield* Effect.cached(
          Effect.suspend(() =>
            closed
              ? Effect.void
              : Effect.matchEffect(socket.setJoined(true), {
                  onFailure: (error) => Effect.sync(() => logFault("joining the data channel", error)),
                  onSuccess: () => Effect.sync(() => endpoint.joinedData(now()))
                })
          )
        )
      : Effect.void

    // The engine's timer (NAK back-off, holdback, heartbeats, status, expiry): driven synchronously
    // like the receive path on the live clock, by a fiber on a test clock (see timer.ts).
    const timer = yield* Scope.extend(
      EngineTimer.make({
        clock,
        due: () => endpoint.nextDeadline(),
        fire: (t) => {
          try {
            endpoint.onTimer(t)
          } catch (err) {
            logFault("timer", err)
          }
          dispatch()
        }
      }),
      scope
    )

    // Sockets that batch their sends (the native UDP backend) send what the drive queued now.
    const flushSockets =
      socket.flush !== undefined || control?.flush !== undefined
        ? () => {
            socket.flush?.()
            control?.flush?.()
          }
        : undefined

    /** Hand the outputs of the last engine call to subscribers and event listeners. */
    const dispatch = () => {
      if (flushSockets !== undefined) {
        flushSockets()
        endpoint.afterFlush()
      }
      fanout.flush()
      syncListening()
      if (pendingEvents.length > 0) {
        const evs = pendingEvents
        pendingEvents = []
        for (const event of evs) events.unsafeOffer(event)
      }
      if (waiters.size > 0) releaseWaiters()
      timer.request()
    }

    // ---- receive path ------------------------------------------------------------------------

    // Driven synchronously by the socket: every datagram goes to the engine from the socket's
    // event, and the end of the socket's wake-up (batch) dispatches what the batch produced. No
    // fiber wakes per batch; the clock is read once per batch.
    let batchNow = -1
    const handlerFor = (channel: "data" | "control" | undefined) => ({
      onDatagram: (data: Uint8Array, address: string): boolean => {
        if (closed) return false
        if (batchNow < 0) batchNow = now()
        // The engine never throws by contract; if it ever did, count and log it and go on with
        // the next datagram rather than break the socket's handler.
        try {
          return endpoint.onDatagram(data, address, batchNow, channel)
        } catch (err) {
          logFault("received datagram", err)
          return true
        }
      },
      onBatchEnd: () => {
        batchNow = -1
        if (closed) return
        // Before the socket reuses the batch's memory: the engine copies what it still remembers.
        endpoint.endReceiveBatch()
        dispatch()
      }
    })
    socket.listen(handlerFor(control === undefined ? undefined : "data"))
    control?.listen(handlerFor("control"))

    // ---- metrics -----------------------------------------------------------------------------

    /** Both channels' sockets as one: counts added, the data socket's buffer sizes. */
    const socketStats = (): SocketStats => {
      const d = socket.stats()
      if (control === undefined) return d
      const c = control.stats()
      return {
        ...d,
        sendErrors: d.sendErrors + c.sendErrors,
        lastSendError: d.lastSendError ?? c.lastSendError,
        queueDrops: d.queueDrops + c.queueDrops
      }
    }

    const metrics = metricsFor(key, options.distributor.application)
    const syncMetrics = Effect.suspend(() => {
      const { queueDrops, sendErrors } = socketStats()
      return metrics.update({ ...endpoint.stats, ...counters, queueDrops, sendErrors })
    })
    yield* Effect.forkIn(Effect.forever(Effect.zipRight(Effect.sleep("1 second"), syncMetrics)), scope)

    // ---- close -------------------------------------------------------------------------------

    // Runs before the fibers above are interrupted and before the socket closes (finalizers run
    // in reverse order): flush held-back updates, say goodbye, end every subscription.
    yield* Scope.addFinalizer(
      scope,
      Effect.suspend(() => {
        closed = true
        try {
          endpoint.close(now())
        } catch (err) {
          counters.engineFaults++
          return Effect.logError("protocol engine fault on close", err)
        }
        dispatch()
        releaseWaiters()
        fanout.endAll()
        return syncMetrics
      })
    )

    // ---- publishers --------------------------------------------------------------------------

    const connectionClosed = new ConnectionClosed({ reason: "ConnectionClosed", connection: key })

    const makePublisher = (sender: LocalSender) => {
      let open = true
      const publisherClosed = new ConnectionClosed({ reason: "PublisherClosed", connection: key })

      /** Synchronous part of a publish; returns an error, a delay to wait, or undefined when done. */
      const publishOne = (topic: string, payload: Uint8Array | string, t: number) => {
        if (closed) return connectionClosed
        if (!open) return publisherClosed
        // Each distinct topic is validated once (it was validated on every publish).
        if (!validTopics.has(topic)) {
          const invalid = fanout.admitTopic(topic)
          if (invalid) return invalid
        }
        const badPayload = Inputs.checkPayload(topic, payload)
        if (badPayload) return badPayload
        const bytes = typeof payload === "string" ? textEncoder.encode(payload) : payload
        const result = endpoint.publish(sender, topic, bytes, t)
        if (result === "ok") return undefined
        if (result === "too-large") {
          return new UpdateTooLarge({
            reason: "ExceedsMaxUpdateSize",
            topic,
            size: bytes.length,
            maxSize: config.maxUpdateSize
          })
        }
        return publisherClosed
      }

      // Back-pressure: while segments wait for the receivers' window, the next publish waits too.
      const windowOpen = () => !sender.backlog
      const awaitWindow = waitUntil(windowOpen)

      const unsafePublish = (topic: string, payload: Uint8Array | string): Connection.UnsafePublishResult => {
        const t = now()
        if (open && !closed && (sender.backlog || endpoint.publishDelay(sender, t) > 0)) return "blocked"
        const error = publishOne(topic, payload, t)
        if (error !== undefined) return error
        endpoint.endBatch(sender, t)
        dispatch()
        return "published"
      }

      const publish = (topic: string, payload: Uint8Array | string): Effect.Effect<void, Connection.PublishError> =>
        Effect.suspend(() => {
          const result = unsafePublish(topic, payload)
          if (result === "published") return Effect.void
          if (result !== "blocked") return Effect.fail(result)
          const wait = sender.backlog ? awaitWindow : Clock.sleep(endpoint.publishDelay(sender, now()))
          return Effect.zipRight(wait, publish(topic, payload))
        })

      /**
       * Publishes `cursor`'s updates from where it stands until they end (undefined), until publishAll
       * would wait (`WAIT_WINDOW`, or the pacing delay in ms; the next update is not taken), or
       * until one fails (its error; the ones before it are published). Ends the batch either way.
       */
      const publishFrom = (cursor: Cursor): Connection.PublishError | number | undefined => {
        let t = now()
        // The clock is read once per CLOCK_EVERY updates (a burst of them takes microseconds;
        // the engine's times are in ms), not per update: it showed as ~5 % of a 64 B burst.
        let sinceClock = 0
        let result: Connection.PublishError | number | undefined
        for (;;) {
          if (sender.backlog && open && !closed) {
            result = WAIT_WINDOW
            break
          }
          const delay = endpoint.publishDelay(sender, t)
          if (delay > 0) {
            result = delay
            break
          }
          let entry: unknown
          if (cursor.array !== undefined) {
            if (cursor.index >= cursor.array.length) break
            entry = cursor.array[cursor.index]
          } else {
            const next = cursor.iterator!.next()
            if (next.done) break
            entry = next.value
          }
          const error = Inputs.isEntry(entry) ? publishOne(entry[0], entry[1], t) : Inputs.notAnEntry(entry)
          if (error !== undefined) {
            result = error
            break
          }
          cursor.index++
          if (++sinceClock === CLOCK_EVERY) {
            sinceClock = 0
            t = now()
          }
        }
        endpoint.endBatch(sender, t)
        dispatch()
        return result
      }

      const publishAll = (
        updates: Iterable<readonly [string, Uint8Array | string]>
      ): Effect.Effect<void, Connection.PublishError> =>
        // Fresh state per run: running the same effect twice publishes the updates twice.
        Effect.suspend(() => {
          const cursor = makeCursor(updates)
          if (cursor instanceof InvalidPayload) return Effect.fail(cursor)
          const loop: Effect.Effect<void, Connection.PublishError> = Effect.suspend(() => {
            const result = publishFrom(cursor)
            if (result === undefined) return Effect.void
            if (typeof result !== "number") return Effect.fail(result)
            return Effect.zipRight(result === WAIT_WINDOW ? awaitWindow : Clock.sleep(result), loop)
          })
          return loop
        })

      const unsafePublishAll = (
        updates: ReadonlyArray<readonly [string, Uint8Array | string]>
      ): number | Connection.PublishError => {
        const cursor = makeCursor(updates)
        if (cursor instanceof InvalidPayload) return cursor
        const result = publishFrom(cursor)
        return result === undefined || typeof result === "number" ? cursor.index : result
      }

      const unsafeOnReady = (callback: () => void): (() => void) => {
        let cancelled = false
        let release = () => {}
        const call = () => {
          if (!cancelled) callback()
        }
        // Pacing: the engine says when the next update may leave (the Effect path sleeps on the
        // Clock; a caller outside a fiber has only the real timers).
        const delay = open && !closed && !sender.backlog ? endpoint.publishDelay(sender, now()) : 0
        if (open && !closed && sender.backlog) {
          const waiter = { ready: windowOpen, wake: () => queueMicrotask(call) }
          waiters.add(waiter)
          release = () => waiters.delete(waiter)
        } else if (delay > 0) {
          const timer = setTimeout(call, delay)
          release = () => clearTimeout(timer)
        } else queueMicrotask(call)
        return () => {
          cancelled = true
          release()
        }
      }

      // Held-back updates leave now; what waits for the receivers' window has left when it returns.
      const flush = Effect.zipRight(
        Effect.sync(() => {
          if (!open || closed) return
          endpoint.flush(sender, now())
          dispatch()
        }),
        awaitWindow
      )

      const awaitReceivers = (n: number) => waitUntil(() => endpoint.receiverCount(sender) >= n)

      const typed = <A, I>(schema: Schema.Schema<A, I>): Connection.TypedPublisher<A> => {
        const encode = Schema.encodeEither(schema)
        return {
          publish: (topic, value) =>
            Effect.suspend((): Effect.Effect<void, Connection.PublishError | PayloadCodecError> => {
              const encoded = encode(value)
              if (Either.isLeft(encoded)) {
                return Effect.fail(
                  new PayloadCodecError({ reason: "EncodeFailed", topic, detail: encoded.left.message })
                )
              }
              return publish(topic, JSON.stringify(encoded.right))
            })
        }
      }

      const close = () => {
        if (!open) return
        open = false
        if (closed) return
        endpoint.closeSender(sender, now())
        dispatch()
      }
      const publisher: Connection.Publisher = {
        source: sender.session,
        publish,
        unsafePublish,
        publishAll,
        unsafePublishAll,
        unsafeOnReady,
        flush,
        awaitReceivers,
        receivers: Effect.sync(() => endpoint.receiverCount(sender)),
        typed
      }
      // Closing waits until what the window held back has left (receivers that leave or time out
      // stop holding it), so the Goodbye follows the last segment.
      return { publisher, close, drain: awaitWindow }
    }

    const publisher: Connection.ConnectionService["publisher"] = Effect.map(
      Effect.acquireRelease(
        Effect.suspend(() => {
          if (closed) return Effect.fail(connectionClosed)
          const sender = endpoint.openSender(now())
          dispatch()
          return Effect.succeed(makePublisher(sender))
        }),
        (p) => Effect.zipRight(p.drain, Effect.sync(p.close))
      ),
      (p) => p.publisher
    )

    // ---- subscriptions -----------------------------------------------------------------------

    /** Register a subscriber now (in the current scope) and return the stream that reads it. */
    const registerRaw = (
      pattern: string,
      options: Connection.SubscribeOptions | undefined
    ): Effect.Effect<Stream.Stream<Item, SubscriberError>, InvalidTopic | InvalidOption, Scope.Scope> =>
      Effect.suspend(
        (): Effect.Effect<Stream.Stream<Item, SubscriberError>, InvalidTopic | InvalidOption, Scope.Scope> => {
          const parsed = Topic.parsePattern(pattern)
          if (Either.isLeft(parsed)) return Effect.fail(parsed.left)
          const badOption = Inputs.checkSubscribeOptions(options)
          if (badOption) return Effect.fail(badOption)
          if (closed) return Effect.succeed(Stream.empty)
          return Effect.map(
            Effect.acquireRelease(
              Effect.tap(
                Effect.zipRight(
                  joinData,
                  fanout.add(pattern, parsed.right, {
                    capacity: options?.bufferSize ?? config.subscriberBufferSize,
                    notify: options?.onLoss === "notify"
                  })
                ),
                syncListening
              ),
              (sub) =>
                Effect.sync(() => {
                  fanout.end(sub)
                  syncListening()
                })
            ),
            (sub) => fanout.stream(sub)
          )
        }
      )

    /** Typed subscriptions: decode each payload (UTF-8 JSON, then the schema), a chunk at a time. */
    const decodeWith = <E>(raw: Stream.Stream<Item, E>, schema: Schema.Schema<any, any>) => {
      const decode = Schema.decodeUnknownEither(schema)
      return Stream.mapChunksEffect(raw, (chunk) => {
        const out: Array<unknown> = []
        for (const item of chunk) {
          if (!("payload" in item)) {
            out.push(item)
            continue
          }
          let json: unknown
          try {
            json = JSON.parse(textDecoder.decode(item.payload))
          } catch (err) {
            return Effect.fail(new PayloadCodecError({ reason: "InvalidJson", topic: item.topic, detail: String(err) }))
          }
          const decoded = decode(json)
          if (Either.isLeft(decoded)) {
            return Effect.fail(
              new PayloadCodecError({ reason: "DecodeFailed", topic: item.topic, detail: decoded.left.message })
            )
          }
          out.push({ topic: item.topic, value: decoded.right, source: item.source, sequence: item.sequence })
        }
        return Effect.succeed(Chunk.unsafeFromArray(out))
      })
    }

    type AnySubscribeOptions = Connection.SubscribeOptions & { schema?: Schema.Schema<any, any> }

    const subscribeScoped = ((pattern: string, options?: AnySubscribeOptions) =>
      Effect.map(registerRaw(pattern, options), (raw) =>
        options?.schema === undefined ? raw : decodeWith(raw, options.schema)
      )) as Connection.SubscribeScopedFn

    // The same subscription, registered when the stream starts and ended with it (and so when
    // `forEachChunk` runs it directly).
    const subscribe = ((pattern: string, options?: AnySubscribeOptions) => {
      const stream = Stream.unwrapScoped(subscribeScoped(pattern, options))
      if (options?.schema !== undefined) return stream
      return withDirect(stream as Stream.Stream<Item, SubscriberError | InvalidTopic | InvalidOption>, (f) =>
        Effect.scoped(Effect.flatMap(registerRaw(pattern, options), (raw) => forEachChunk(raw, f)))
      )
    }) as Connection.SubscribeFn

    // ---- events ------------------------------------------------------------------------------

    // Consuming events joins the data channel (remote senders' joins and leaves come from their data
    // and heartbeats), subscriptions or not.
    const eventStream: Stream.Stream<Connection.ConnectionEvent> = Stream.unwrap(
      Effect.as(joinData, Stream.fromPubSub(events))
    )

    // ---- stats -------------------------------------------------------------------------------

    const stats = Effect.sync((): Connection.ConnectionStats => {
      const s = endpoint.stats
      const kernelNow = readKernelRcvbufErrors()
      return {
        connection: key,
        openedAt,
        ...s,
        ...counters,
        socket: socketStats(),
        kernelReceiveBufferErrors:
          kernelNow !== undefined && kernelDropsAtOpen !== undefined ? kernelNow - kernelDropsAtOpen : undefined,
        publishers: endpoint.localSenders(),
        subscriptions: fanout.snapshot(),
        remoteSessions: endpoint.remoteSessions(),
        remoteReceivers: endpoint.remoteReceiverStats(),
        nakRequesters: Array.from(endpoint.nakRequesters, ([host, naks]) => ({ host, naks })),
        recentLosses: recentLosses.slice()
      }
    })

    return {
      key,
      config,
      publisher,
      subscribe,
      subscribeScoped,
      events: eventStream,
      presence: Stream.filter(eventStream, isPresenceEvent),
      receivers: Effect.sync(() => endpoint.remoteReceiverStats()),
      awaitReceivers: (n: number) => waitUntil(() => endpoint.receiverCount() >= n),
      stats
    } satisfies Connection.ConnectionService
  })
