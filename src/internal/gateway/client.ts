/**
 * The gateway client: one named session over a WebSocket that reconnects by itself and resumes.
 *
 * Receive path: the socket's message handler is synchronous. Each update frame is decoded and
 * routed by topic through the same `FanOut` a connection uses (patterns, bounded buffers,
 * `onLoss` semantics); the fan-out hands each subscriber one chunk per socket read (flushed in a
 * microtask). Sequence numbers are implicit (one more than the previous sequenced frame), so the
 * client only counts; it acknowledges every `ackEvery` frames so the gateway can free its buffer.
 *
 * Publish path: frames go straight to the socket and stay in an outbox until the gateway's
 * `pubAck` says it handed them to the connection; `publish` waits while the outbox holds a
 * window's worth (back-pressure), and after a reconnect the outbox is sent again from where the
 * gateway's count says it stopped, so a publish is neither lost nor doubled by a dropped socket.
 *
 * No `node:` imports: this module bundles for a browser. The WebSocket comes from the platform's
 * `WebSocketConstructor` (globalThis.WebSocket in a browser, `NodeSocket.layerWebSocketConstructor`
 * in Node).
 */
import * as Socket from "@effect/platform/Socket"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Connection from "../../Connection.js"
import {
  GatewayError,
  GatewayLoss,
  type InvalidOption,
  InvalidPayload,
  type InvalidTopic,
  IrrecoverableLoss,
  SubscriberOverflow,
  UpdateTooLarge
} from "../../DistributorError.js"
import * as Topic from "../../Topic.js"
import { zeroShellStats } from "../counters.js"
import { FanOut, type Item, type Subscriber, type SubscriberError } from "../fanout.js"
import * as Inputs from "../inputs.js"
import type { ReceivedUpdate, SessionInfo } from "../protocol/engine.js"
import * as Frames from "./frames.js"

export interface ClientOptions {
  /** `ws://host:port/path` of the gateway (its `url`). */
  readonly url: string
  /** This client's name: the session it resumes after a reconnect. */
  readonly name: string
  /** The gateway's token, sent as `?token=` (browsers cannot set WebSocket headers). */
  readonly token?: string | undefined
  /** Which of the gateway's connections, by index. Default 0. */
  readonly connection?: number | undefined
  /** Delays between reconnection attempts; reset once connected. Default: 100 ms doubling to 5 s, jittered. */
  readonly retry?: Schedule.Schedule<unknown, unknown> | undefined
  /** Default `bufferSize` of subscriptions. Default 65 536. */
  readonly bufferSize?: number | undefined
  /** Acknowledge received frames every this many. Default 1 024. */
  readonly ackEvery?: number | undefined
  /** Time to wait for the socket to open. Default 10 s. */
  readonly openTimeoutMs?: number | undefined
}

export type ClientState =
  | { readonly _tag: "Connecting"; readonly attempt: number }
  | { readonly _tag: "Connected"; readonly resumed: boolean; readonly connection: string }
  | { readonly _tag: "Stopped"; readonly error: GatewayError }

export interface ClientStatus {
  readonly name: string
  readonly state: ClientState
  /** Last client sequence number received (the resume position). */
  readonly lastSeq: number
  /** Connections made (the first included). */
  readonly connects: number
  readonly received: number
  /** Publishes sent and not yet acknowledged by the gateway. */
  readonly unacknowledged: number
  readonly gaps: number
  /** Server frames that did not decode or were out of sequence. */
  readonly badFrames: number
}

export interface GatewayPublisher {
  readonly publish: (
    topic: string,
    payload: Uint8Array | string
  ) => Effect.Effect<void, InvalidTopic | InvalidPayload | UpdateTooLarge | GatewayError>
  readonly publishAll: (
    updates: Iterable<readonly [topic: string, payload: Uint8Array | string]>
  ) => Effect.Effect<void, InvalidTopic | InvalidPayload | UpdateTooLarge | GatewayError>
  /** Waits until everything published before it was handed to the connection and left its publisher. */
  readonly flush: Effect.Effect<void, GatewayError>
}

export interface ClientHandle {
  readonly name: string
  readonly subscribeScoped: (
    pattern: string,
    options?: Connection.SubscribeOptions
  ) => Effect.Effect<Stream.Stream<Item, SubscriberError>, InvalidTopic | InvalidOption, Scope.Scope>
  readonly publisher: Effect.Effect<GatewayPublisher, never, Scope.Scope>
  readonly status: Effect.Effect<ClientStatus>
  /** Waits until the client is connected (or fails once it stopped). */
  readonly awaitConnected: Effect.Effect<void, GatewayError>
}

interface RawSocket {
  binaryType: string
  readonly readyState: number
  send(data: Uint8Array | string): void
  close(code?: number, reason?: string): void
}

const defaultRetry = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered
)

const textEncoder = new TextEncoder()

export const make = (
  options: ClientOptions
): Effect.Effect<ClientHandle, never, Socket.WebSocketConstructor | Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name
    const connectionIndex = options.connection ?? 0
    const ackEvery = options.ackEvery ?? 1024
    const url = options.token === undefined ? options.url : withToken(options.url, options.token)
    const fanout = new FanOut(zeroShellStats(), () => {})
    const construct = yield* Socket.WebSocketConstructor

    // ---- state --------------------------------------------------------------------------------

    let state: ClientState = { _tag: "Connecting", attempt: 0 }
    let socket: RawSocket | undefined
    let welcomed = false
    /** Whether this client has a past the gateway may remember (it sends `resume` then). */
    let hasPast = false
    let lastSeq = 0
    let lastAcked = 0
    let connects = 0
    let received = 0
    let gaps = 0
    let badFrames = 0
    let maxUpdateSize = Number.POSITIVE_INFINITY
    let windowBytes = 4 * 1024 * 1024
    let maxFrameBytes = Number.POSITIVE_INFINITY
    let connectionKey = ""
    const subs = new Map<number, string>()
    /** The fan-out subscriber of each subscription id (to fail one the gateway refused). */
    const subscribers = new Map<number, Subscriber>()
    const subscribed = new Map<number, Deferred.Deferred<void>>()
    let nextId = 1
    const outbox: Array<Uint8Array> = []
    let outboxBytes = 0
    let waiters: Array<() => void> = []
    const flushes = new Map<number, Deferred.Deferred<void, GatewayError>>()
    let connectedLatch = yield* Deferred.make<void, GatewayError>()
    const sources = new Map<string, SessionInfo>()

    const wake = () => {
      const w = waiters
      waiters = []
      for (const f of w) f()
    }
    const send = (data: Uint8Array | string): void => {
      if (socket !== undefined && welcomed && socket.readyState === 1) socket.send(data)
    }
    const stop = (error: GatewayError): void => {
      if (state._tag === "Stopped") return
      state = { _tag: "Stopped", error }
      fanout.broadcast(error)
      Deferred.unsafeDone(connectedLatch, Effect.fail(error))
      for (const d of flushes.values()) Deferred.unsafeDone(d, Effect.fail(error))
      for (const d of subscribed.values()) Deferred.unsafeDone(d, Effect.void)
      wake()
      socket?.close(Frames.Close.Normal)
    }

    // ---- receiving (synchronous, per frame) ---------------------------------------------------

    let flushScheduled = false
    const flushNow = () => {
      flushScheduled = false
      fanout.flush()
      if (lastSeq - lastAcked >= ackEvery) {
        lastAcked = lastSeq
        send(JSON.stringify({ type: "ack", seq: lastSeq }))
      }
    }
    const scheduleFlush = () => {
      if (!flushScheduled) {
        flushScheduled = true
        queueMicrotask(flushNow)
      }
    }

    const sourceOf = (sessionId: bigint, senderIndex: number, host: string, application: string): SessionInfo => {
      const hex = sessionId.toString(16).padStart(16, "0")
      const key = `${hex}/${senderIndex}/${host}/${application}`
      let source = sources.get(key)
      if (source === undefined) {
        if (sources.size >= 4096) sources.clear()
        source = { sessionId, sessionIdHex: hex, senderIndex, host, application, address: options.url }
        sources.set(key, source)
      }
      return source
    }

    const onUpdate = (frame: Uint8Array): void => {
      lastSeq++
      received++
      const u = Frames.decodeUpdate(frame)
      if (u === undefined) {
        badFrames++
        return
      }
      const update: ReceivedUpdate = {
        topic: u.topic,
        payload: u.payload,
        source: sourceOf(u.sessionId, u.senderIndex, u.host, u.application),
        sequence: u.sequence
      }
      fanout.route(update)
      scheduleFlush()
    }

    /** A sequenced control frame must carry the next number; anything else means we lost count. */
    const checkSeq = (seq: number): boolean => {
      if (seq !== lastSeq + 1) {
        badFrames++
        socket?.close(Frames.Close.ProtocolError, "sequence")
        return false
      }
      lastSeq = seq
      return true
    }

    const onWelcome = (w: Frames.Welcome): void => {
      const hadPast = hasPast
      welcomed = true
      hasPast = true
      connects++
      const info = w.connections[connectionIndex]
      connectionKey = info?.key ?? ""
      // A publish frame above the gateway's frame limit would close the socket: the smaller wins.
      maxUpdateSize = Math.min(info?.maxUpdateSize ?? Number.POSITIVE_INFINITY, w.limits.maxFrameBytes)
      windowBytes = w.limits.publishWindowBytes
      maxFrameBytes = w.limits.maxFrameBytes
      lastSeq = w.next - 1
      lastAcked = Math.min(lastAcked, lastSeq)
      // Publishes: drop what the gateway already took, send the rest again (in order). Its count
      // is ours only if this client spoke to that session before (resumed, or continued after
      // expiry); a client new to the name, or a gateway that forgot it, gets everything again.
      const acked = hadPast ? Math.max(0, Math.min(outbox.length, w.published - publishedBase)) : 0
      ackOutbox(acked)
      publishedBase = w.published
      for (const frame of outbox) send(frame)
      // Subscriptions: make the gateway's set ours.
      const held = new Set(w.subscriptions)
      for (const id of held) if (!subs.has(id)) send(JSON.stringify({ type: "unsubscribe", id }))
      for (const [id, pattern] of subs) {
        const d = subscribed.get(id)
        if (held.has(id)) {
          if (d !== undefined) Deferred.unsafeDone(d, Effect.void)
        } else send(JSON.stringify({ type: "subscribe", id, pattern, connection: connectionIndex }))
      }
      for (const id of flushes.keys()) send(JSON.stringify({ type: "flush", id }))
      state = { _tag: "Connected", resumed: w.resumed, connection: connectionKey }
      Deferred.unsafeDone(connectedLatch, Effect.void)
      wake()
    }

    /** Publishes the gateway counted so far in this session: `outbox[0]` is number `publishedBase + 1`. */
    let publishedBase = 0
    const ackOutbox = (n: number): void => {
      for (let i = 0; i < n; i++) outboxBytes -= outbox[i].length
      outbox.splice(0, n)
    }

    const onText = (text: string): void => {
      const m = Frames.parseServerMessage(text)
      if (m === undefined) {
        badFrames++
        return
      }
      switch (m.type) {
        case "welcome":
          onWelcome(m)
          return
        case "gap": {
          gaps++
          fanout.broadcast(
            new GatewayLoss({
              reason: m.reason,
              client: name,
              firstSeq: m.first,
              ...(m.last !== undefined ? { lastSeq: m.last } : {})
            })
          )
          if (m.last !== undefined) lastSeq = m.last
          return
        }
        case "loss": {
          if (!checkSeq(m.seq)) return
          const source = sourceOf(BigInt(`0x${m.sessionId}`), m.senderIndex, m.host, m.application)
          const loss = new IrrecoverableLoss({
            reason: m.reason as IrrecoverableLoss["reason"],
            connection: m.connection,
            sessionId: m.sessionId,
            host: m.host,
            application: m.application,
            firstSeq: m.firstSeq,
            lastSeq: m.lastSeq,
            ...(m.topic !== undefined ? { topic: m.topic } : {})
          })
          fanout.loss(loss, source, true, m.topic)
          return
        }
        case "overflow": {
          if (!checkSeq(m.seq)) return
          fanout.broadcast(
            new SubscriberOverflow({ reason: "BufferFull", pattern: "/...", capacity: m.capacity, dropped: m.dropped })
          )
          return
        }
        case "subscribed": {
          const d = subscribed.get(m.id)
          if (d !== undefined) Deferred.unsafeDone(d, Effect.void)
          return
        }
        case "pubAck": {
          ackOutbox(Math.max(0, Math.min(outbox.length, m.count - publishedBase)))
          publishedBase = Math.max(publishedBase, m.count)
          wake()
          return
        }
        case "flushed": {
          const d = flushes.get(m.id)
          flushes.delete(m.id)
          if (d !== undefined) Deferred.unsafeDone(d, Effect.void)
          return
        }
        case "error": {
          if (m.code === "TakenOver") {
            stop(new GatewayError({ reason: "TakenOver", address: options.url, detail: m.detail }))
          } else if (m.code === "ResumeAhead") {
            hasPast = false // our count is not the gateway's: start afresh
          } else if (m.code === "UnsupportedVersion") {
            stop(new GatewayError({ reason: "Refused", address: options.url, detail: m.detail }))
          } else if (m.id !== undefined && subscribers.has(m.id)) {
            // A subscription the gateway refused (too many, unknown connection): its stream fails.
            const sub = subscribers.get(m.id)!
            sub.mailbox.unsafeDone(
              Exit.fail(new GatewayError({ reason: "Refused", address: options.url, detail: `${m.code}: ${m.detail}` }))
            )
            fanout.end(sub)
            subs.delete(m.id)
            subscribers.delete(m.id)
            Deferred.unsafeDone(subscribed.get(m.id)!, Effect.void)
          }
          return
        }
      }
    }

    const onMessage = (data: string | Uint8Array | ArrayBuffer): void => {
      if (typeof data === "string") onText(data)
      else onUpdate(data instanceof Uint8Array ? data : new Uint8Array(data))
    }

    // ---- connecting -----------------------------------------------------------------------------

    const acquire = Effect.acquireRelease(
      Effect.suspend(() => {
        let ws: RawSocket
        try {
          ws = construct(url) as unknown as RawSocket
        } catch (cause) {
          // A URL the WebSocket refuses (syntax, scheme) will not get better by retrying.
          stop(new GatewayError({ reason: "Refused", address: options.url, detail: String(cause), cause }))
          return Effect.fail(new Socket.SocketGenericError({ reason: "Open", cause }))
        }
        // Blobs would be read asynchronously, one promise per frame, and could reorder.
        ws.binaryType = "arraybuffer"
        socket = ws
        return Effect.succeed(ws as unknown as globalThis.WebSocket)
      }),
      (ws) => Effect.sync(() => ws.close(1000))
    )

    const hello = Effect.sync(() => {
      socket?.send(
        JSON.stringify({ type: "hello", version: Frames.VERSION, name, ...(hasPast ? { resume: lastSeq } : {}) })
      )
    })

    /** One socket's life: open, hello, frames until it closes. Fails when it ends, unless stopped. */
    const connectOnce = Effect.scoped(
      Effect.gen(function* () {
        const ws = yield* Socket.fromWebSocket(acquire, {
          openTimeout: Duration.millis(options.openTimeoutMs ?? 10_000),
          closeCodeIsError: () => true
        })
        const exit = yield* Effect.either(
          ws.runRaw(onMessage as (data: string | Uint8Array) => void, { onOpen: hello })
        )
        if (Either.isLeft(exit) && Socket.SocketCloseError.is(exit.left)) {
          if (exit.left.code === Frames.Close.TakenOver) {
            stop(
              new GatewayError({ reason: "TakenOver", address: options.url, detail: "another client took this name" })
            )
          }
        }
      })
    ).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          socket = undefined
          if (welcomed) {
            welcomed = false
            flushNow()
            if (state._tag !== "Stopped") {
              state = { _tag: "Connecting", attempt: 0 }
              connectedLatch = Deferred.unsafeMake(FiberId.none)
            }
          }
        })
      )
    )

    const loop = Effect.gen(function* () {
      const driver = yield* Schedule.driver(options.retry ?? defaultRetry)
      let attempt = 0
      while (state._tag !== "Stopped") {
        const before = connects
        yield* connectOnce
        if ((state as ClientState)._tag === "Stopped") return
        if (connects > before) {
          attempt = 0
          yield* driver.reset
        }
        attempt++
        state = { _tag: "Connecting", attempt }
        const more = yield* Effect.either(driver.next(undefined))
        if (Either.isLeft(more)) {
          stop(new GatewayError({ reason: "Refused", address: options.url, detail: "reconnection attempts exhausted" }))
        }
      }
    })
    yield* Effect.forkScoped(Effect.interruptible(loop))
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        state = {
          _tag: "Stopped",
          error: new GatewayError({ reason: "Refused", address: options.url, detail: "client closed" })
        }
        fanout.endAll()
      })
    )

    // ---- API ------------------------------------------------------------------------------------

    const subscribeScoped: ClientHandle["subscribeScoped"] = (pattern, subOptions) =>
      Effect.suspend(
        (): Effect.Effect<Stream.Stream<Item, SubscriberError>, InvalidTopic | InvalidOption, Scope.Scope> => {
          const parsed = Topic.parsePattern(pattern)
          if (Either.isLeft(parsed)) return Effect.fail(parsed.left)
          const badOption = Inputs.checkSubscribeOptions(subOptions)
          if (badOption) return Effect.fail(badOption)
          if (state._tag === "Stopped") return Effect.succeed(Stream.fail(state.error))
          return Effect.acquireRelease(
            Effect.gen(function* () {
              const sub = yield* fanout.add(pattern, parsed.right, {
                capacity: subOptions?.bufferSize ?? options.bufferSize ?? 65_536,
                notify: subOptions?.onLoss === "notify"
              })
              const id = nextId++
              const done = yield* Deferred.make<void>()
              subs.set(id, pattern)
              subscribers.set(id, sub)
              subscribed.set(id, done)
              send(JSON.stringify({ type: "subscribe", id, pattern, connection: connectionIndex }))
              return { sub, id, done }
            }),
            ({ id, sub }) =>
              Effect.sync(() => {
                fanout.end(sub)
                subscribers.delete(id)
                subscribed.delete(id)
                // Not for one the gateway refused: it never had it.
                if (subs.delete(id)) send(JSON.stringify({ type: "unsubscribe", id }))
              })
          ).pipe(
            // Registered with the gateway before it returns: nothing published afterwards is missed.
            Effect.tap(({ done }) => Deferred.await(done)),
            Effect.map(({ sub }) => fanout.stream(sub))
          )
        }
      )

    const encodeOne = (
      topic: string,
      payload: Uint8Array | string
    ): Either.Either<Uint8Array, InvalidTopic | InvalidPayload | UpdateTooLarge> => {
      const invalid = Topic.validateTopic(topic)
      if (invalid !== undefined) return Either.left(invalid)
      const badPayload = Inputs.checkPayload(topic, payload)
      if (badPayload !== undefined) return Either.left(badPayload)
      const bytes = typeof payload === "string" ? textEncoder.encode(payload) : payload
      const topicBytes = textEncoder.encode(topic)
      // Before the first welcome the limit is unknown; the gateway then rejects what is too large.
      const maxSize = Number.isFinite(maxUpdateSize)
        ? Math.min(maxUpdateSize, maxFrameBytes - Frames.PUBLISH_HEADER - topicBytes.length)
        : maxUpdateSize
      if (bytes.length > maxSize) {
        return Either.left(new UpdateTooLarge({ reason: "ExceedsMaxUpdateSize", topic, size: bytes.length, maxSize }))
      }
      return Either.right(Frames.encodePublish(connectionIndex, topicBytes, bytes))
    }

    /** Waits until the outbox has room (or is empty: one frame always fits). */
    const awaitWindow: Effect.Effect<void, GatewayError> = Effect.suspend(() => {
      if (state._tag === "Stopped") return Effect.fail(state.error)
      if (outbox.length === 0 || outboxBytes < windowBytes) return Effect.void
      return Effect.zipRight(
        Effect.async<void>((resume) => {
          waiters.push(() => resume(Effect.void))
        }),
        awaitWindow
      )
    })

    const enqueue = (frames: ReadonlyArray<Uint8Array>): Effect.Effect<void, GatewayError> =>
      Effect.zipRight(
        awaitWindow,
        Effect.sync(() => {
          for (const frame of frames) {
            outbox.push(frame)
            outboxBytes += frame.length
            send(frame)
          }
        })
      )

    const publish: GatewayPublisher["publish"] = (topic, payload) =>
      Effect.suspend((): ReturnType<GatewayPublisher["publish"]> => {
        const frame = encodeOne(topic, payload)
        return Either.isLeft(frame) ? Effect.fail(frame.left) : enqueue([frame.right])
      })

    const publishAll: GatewayPublisher["publishAll"] = (updates) =>
      Effect.suspend((): ReturnType<GatewayPublisher["publishAll"]> => {
        const iterator = Inputs.iterate(updates)
        if (iterator instanceof InvalidPayload) return Effect.fail(iterator)
        const frames: Array<Uint8Array> = []
        for (let r = iterator.next(); !r.done; r = iterator.next()) {
          const entry: unknown = r.value
          if (!Inputs.isEntry(entry)) return Effect.fail(Inputs.notAnEntry(entry))
          const frame = encodeOne(entry[0], entry[1])
          if (Either.isLeft(frame)) return Effect.fail(frame.left)
          frames.push(frame.right)
        }
        return enqueue(frames)
      })

    let nextFlush = 1
    const flush: GatewayPublisher["flush"] = Effect.suspend(() => {
      if (state._tag === "Stopped") return Effect.fail(state.error)
      const id = nextFlush++
      const d = Deferred.unsafeMake<void, GatewayError>(FiberId.none)
      flushes.set(id, d)
      send(JSON.stringify({ type: "flush", id }))
      return Deferred.await(d)
    })

    const publisher: ClientHandle["publisher"] = Effect.acquireRelease(
      Effect.succeed({ publish, publishAll, flush } satisfies GatewayPublisher),
      (p) => Effect.ignore(Effect.timeout(p.flush, "5 seconds"))
    )

    const status = Effect.sync(
      (): ClientStatus => ({
        name,
        state,
        lastSeq,
        connects,
        received,
        unacknowledged: outbox.length,
        gaps,
        badFrames
      })
    )

    const awaitConnected = Effect.suspend(() => Deferred.await(connectedLatch))

    return { name, subscribeScoped, publisher, status, awaitConnected } satisfies ClientHandle
  })

const withToken = (url: string, token: string): string =>
  `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`
