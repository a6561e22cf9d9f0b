/**
 * The gateway's server: WebSocket clients on the @effect/platform HTTP server (node:http), routed
 * to and from the connections it serves, with named sessions that outlive their sockets.
 *
 * Data path, per connection served (a `Route`): ONE subscription `/...` on the connection while any
 * client subscribes there, consumed a chunk at a time. Each update is matched once against every
 * client pattern (a `Topic.make` trie), encoded once, and the same frame is appended to the replay
 * ring of every client session it matches (once per session however many of its patterns match:
 * the client routes by topic, like a connection does). Then each touched session's pump hands
 * what it can to its socket. No Effect per update or per client.
 *
 * Sockets: `HttpServerRequest.upgrade` gives a platform `Socket`; frames are read with `runRaw`
 * into a per-socket Mailbox and handled in order by one fiber, a chunk at a time (publishes are
 * batched into `publishAll`). Frames are written with the raw `WebSocket` (the platform provides it
 * to handler effects), because the platform's writer has no back-pressure signal: the pump stops
 * at `sendQueueMaxBytes` of `bufferedAmount` and resumes from the write callbacks, so a slow
 * client's backlog stays in its bounded ring, where overflow becomes an exact typed gap.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Socket from "@effect/platform/Socket"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as Connection from "../../Connection.js"
import { GatewayError, type IrrecoverableLoss, type SubscriberOverflow } from "../../DistributorError.js"
import * as Topic from "../../Topic.js"
import * as Guard from "../console/guard.js"
import { forEachChunk } from "../consume.js"
import * as HttpListen from "../httpListen.js"
import type { SessionInfo } from "../protocol/engine.js"
import { topicBytes } from "../protocol/wire.js"
import * as Frames from "./frames.js"
import type { GatewayOptions } from "./options.js"
import { type Gap, planResume, Replay, Tombstones } from "./replay.js"

/** The subset of a `ws` WebSocket the pump uses (`send` with a write callback, `bufferedAmount`). */
interface RawSocket {
  readonly bufferedAmount: number
  readonly readyState: number
  send(data: Uint8Array | string, cb?: (err?: Error) => void): void
  close(code?: number, reason?: string): void
  terminate(): void
  once(event: "close", listener: () => void): void
}

/** Counters of a gateway (plain numbers; the stats snapshot copies them). */
export interface GatewayCounters {
  socketsAccepted: number
  socketsRefused: number
  hellos: number
  resumes: number
  takeovers: number
  expirations: number
  updatesOut: number
  publishesIn: number
  /** Frames from clients that were malformed, truncated, oversized, of an unknown type or out of order. */
  badFrames: number
  errorsSent: number
  gapsSent: number
  /** Frames dropped from a ring before they were sent (slow or absent client). */
  framesDropped: number
}

export interface ClientStats {
  readonly name: string
  readonly connected: boolean
  /** Remote address of the current socket, when connected. */
  readonly address: string | undefined
  readonly connectedAt: number | undefined
  readonly detachedAt: number | undefined
  readonly subscriptions: ReadonlyArray<{ readonly id: number; readonly pattern: string; readonly connection: string }>
  /** Next client sequence number. */
  readonly nextSeq: number
  /** Frames held (sent and unacknowledged, or unsent) and their bytes. */
  readonly buffered: number
  readonly bufferedBytes: number
  /** Frames not yet handed to the socket. */
  readonly unsent: number
  readonly published: number
  readonly framesDropped: number
}

export interface GatewayStats {
  readonly url: string
  readonly counters: GatewayCounters
  readonly clients: ReadonlyArray<ClientStats>
}

export interface GatewayHandle {
  readonly url: string
  readonly host: string
  readonly port: number
  readonly stats: Effect.Effect<GatewayStats>
}

// ---- sessions -------------------------------------------------------------------------------------

interface ClientSub {
  readonly id: number
  readonly pattern: string
  readonly session: Session
  readonly route: Route
  key: Topic.SubscriptionKey | undefined
}

interface Attachment {
  readonly socket: RawSocket
  readonly address: string | undefined
  readonly connectedAt: number
  waiting: boolean
  readonly onWritten: () => void
}

interface Session {
  readonly name: string
  /** Held while a publish batch is handed over and counted, and while a socket attaches. */
  readonly lock: Effect.Semaphore
  readonly replay: Replay
  readonly subs: Map<number, ClientSub>
  readonly scope: Scope.CloseableScope
  /** Publishers per route index, opened on first use, closed with the session. */
  readonly publishers: Map<number, Connection.Publisher>
  attachment: Attachment | undefined
  detachedAt: number | undefined
  /** Incremented at every detach: an expiry timer only expires the detach that started it. */
  detaches: number
  published: number
  /** Update stamp: a session takes each update once, however many of its patterns match. */
  stamp: number
  touched: boolean
  expired: boolean
}

interface Route {
  readonly index: number
  readonly connection: Connection.ConnectionService
  readonly matcher: Topic.TopicMatcher<ClientSub>
  /** Client subscriptions on this connection (the `/...` subscription lives while > 0). */
  count: number
  scope: Scope.CloseableScope | undefined
  /** Sessions with a subscription here: losses whose topic is unknown reach them all. */
  readonly sessions: Map<Session, number>
}

const MAX_ROUTES = 255
/** How long closing the gateway waits for clients to finish the closing handshake before cutting them. */
const CLOSE_GRACE_MS = 1000
const textEncoder = new TextEncoder()
const byteLength = (data: string | Uint8Array): number =>
  typeof data === "string"
    ? data.length < 256
      ? textEncoder.encode(data).length
      : Buffer.byteLength(data)
    : data.length

const formatUrl = (host: string, port: number, path: string): string =>
  `ws://${host.includes(":") ? `[${host}]` : host}:${port}${path}`

const json = (message: Frames.ServerMessage): string => JSON.stringify(message)

export const start = (
  connections: ReadonlyArray<Connection.ConnectionService>,
  options: GatewayOptions
): Effect.Effect<GatewayHandle, GatewayError, Scope.Scope> =>
  Effect.gen(function* () {
    const address = `${options.host}:${options.port}`
    const token = Guard.tokenValue(options.token)
    if (token === undefined && !Guard.isLoopback(options.host)) {
      return yield* new GatewayError({
        reason: "TokenRequired",
        address,
        detail:
          `${options.host} is not a loopback address, so anyone who can reach it could publish and subscribe: ` +
          "set a token or bind to 127.0.0.1"
      })
    }
    if (connections.length === 0 || connections.length > MAX_ROUTES) {
      return yield* new GatewayError({
        reason: "NoConnection",
        address,
        detail: `a gateway serves 1..${MAX_ROUTES} connections, got ${connections.length}`
      })
    }
    const gatewayScope = yield* Effect.scope
    const counters: GatewayCounters = {
      socketsAccepted: 0,
      socketsRefused: 0,
      hellos: 0,
      resumes: 0,
      takeovers: 0,
      expirations: 0,
      updatesOut: 0,
      publishesIn: 0,
      badFrames: 0,
      errorsSent: 0,
      gapsSent: 0,
      framesDropped: 0
    }
    const sessions = new Map<string, Session>()
    const openSockets = new Set<RawSocket>()
    const tombstones = new Tombstones(options.tombstones)
    const background = yield* FiberSet.make()
    const runBackground = yield* FiberSet.runtime(background)()
    const routes: Array<Route> = connections.map((connection, index) => ({
      index,
      connection,
      matcher: Topic.make<ClientSub>(),
      count: 0,
      scope: undefined,
      sessions: new Map()
    }))
    const connectionInfo = routes.map((r) => ({
      key: r.connection.key,
      maxUpdateSize: r.connection.config.maxUpdateSize
    }))
    const limits = {
      maxFrameBytes: options.maxFrameBytes,
      maxSubscriptions: options.maxSubscriptionsPerClient,
      publishWindowBytes: options.publishWindowBytes
    }

    // ---- sending ------------------------------------------------------------------------------

    const sendRaw = (a: Attachment, data: string | Uint8Array): void => {
      if (a.socket.readyState === 1) a.socket.send(data, a.onWritten)
    }

    const sendGap = (a: Attachment, gap: Gap): void => {
      counters.gapsSent++
      sendRaw(
        a,
        json({
          type: "gap",
          reason: gap.reason,
          first: gap.first,
          ...(gap.last !== undefined ? { last: gap.last } : {})
        })
      )
    }

    /** Hands a session's unsent frames to its socket until the socket's queue bound. */
    const pump = (session: Session): void => {
      const a = session.attachment
      if (a === undefined || a.waiting) return
      const replay = session.replay
      for (;;) {
        const gap = replay.takeGap("SlowConsumer")
        if (gap !== undefined) sendGap(a, gap)
        if (a.socket.bufferedAmount >= options.sendQueueMaxBytes) {
          a.waiting = true
          return
        }
        const frame = replay.takeNext()
        if (frame === undefined) return
        sendRaw(a, frame)
      }
    }

    const sendError = (socket: RawSocket, code: Frames.ErrorCode, detail: string, id?: number): void => {
      counters.errorsSent++
      if (socket.readyState === 1)
        socket.send(json({ type: "error", code, detail, ...(id !== undefined ? { id } : {}) }))
    }

    // ---- routing (hot path) -------------------------------------------------------------------

    let stamp = 0
    const sourceBytes = new WeakMap<SessionInfo, ReturnType<typeof Frames.encodeSourceBytes>>()
    const touched: Array<Session> = []

    const appendTo = (session: Session, frame: Uint8Array | string, bytes: number): void => {
      const before = session.replay.droppedUnsent
      session.replay.append(frame, bytes)
      counters.framesDropped += session.replay.droppedUnsent - before
      if (!session.touched) {
        session.touched = true
        touched.push(session)
      }
    }

    const sequenced = (targets: Iterable<Session>, build: (seq: number) => string): void => {
      for (const session of targets) {
        const frame = build(session.replay.nextSeq)
        appendTo(session, frame, frame.length)
      }
    }

    const lossFrame = (route: Route, loss: IrrecoverableLoss, source: SessionInfo | undefined) => (seq: number) =>
      json({
        type: "loss",
        seq,
        connection: route.connection.key,
        reason: loss.reason,
        sessionId: loss.sessionId,
        senderIndex: source?.senderIndex ?? 0,
        host: loss.host,
        application: loss.application,
        firstSeq: loss.firstSeq,
        lastSeq: loss.lastSeq,
        ...(loss.topic !== undefined ? { topic: loss.topic } : {})
      })

    const deliver = (route: Route, chunk: Chunk.Chunk<Connection.Update | Connection.LossNotice>): void => {
      for (const item of chunk) {
        if ("payload" in item) {
          const subs = route.matcher.match(item.topic)
          const n = subs.length
          if (n === 0) continue
          const s = ++stamp
          let frame: Uint8Array | undefined
          for (let i = 0; i < n; i++) {
            const session = subs[i].session
            if (session.stamp === s) continue
            session.stamp = s
            if (frame === undefined) {
              let bytes = sourceBytes.get(item.source)
              if (bytes === undefined) {
                bytes = Frames.encodeSourceBytes(item.source)
                sourceBytes.set(item.source, bytes)
              }
              frame = Frames.encodeUpdate(item.source, bytes, item.sequence, topicBytes(item.topic), item.payload)
            }
            appendTo(session, frame, frame.length)
            counters.updatesOut++
          }
        } else if (item._tag === "IrrecoverableLoss") {
          // The connection already scoped the loss to our `/...` subscription; here it reaches the
          // sessions whose patterns match its topic when known, else every session on the route.
          const targets =
            item.topic !== undefined
              ? new Set(route.matcher.match(item.topic).map((sub) => sub.session))
              : route.sessions.keys()
          sequenced(targets, lossFrame(route, item, undefined))
        } else {
          const overflow: SubscriberOverflow = item
          sequenced(route.sessions.keys(), (seq) =>
            json({
              type: "overflow",
              seq,
              connection: route.connection.key,
              capacity: overflow.capacity,
              dropped: overflow.dropped
            })
          )
        }
      }
      for (let i = 0; i < touched.length; i++) {
        touched[i].touched = false
        pump(touched[i])
      }
      touched.length = 0
    }

    /** Opens the route's `/...` subscription when its first client subscription arrives. */
    const openRoute = (route: Route): Effect.Effect<void> =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(gatewayScope, ExecutionStrategy.sequential)
        route.scope = scope
        const stream = yield* route.connection
          .subscribeScoped("/...", {
            onLoss: "notify",
            ...(options.subscriberBufferSize !== undefined ? { bufferSize: options.subscriberBufferSize } : {})
          })
          .pipe(Scope.extend(scope), Effect.orDie)
        // Interruptible explicitly: this may run in a fiber that is not (a socket's), and a fork
        // inherits that, which would make closing the route wait forever.
        yield* forEachChunk(stream, (chunk) => deliver(route, chunk)).pipe(Effect.interruptible, Effect.forkIn(scope))
      })

    const closeRoute = (route: Route): Effect.Effect<void> => {
      const scope = route.scope
      route.scope = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    }

    const addSub = (session: Session, route: Route, id: number, pattern: Topic.Pattern): Effect.Effect<void> => {
      const sub: ClientSub = { id, pattern, session, route, key: undefined }
      sub.key = route.matcher.add(pattern, sub)
      session.subs.set(id, sub)
      route.sessions.set(session, (route.sessions.get(session) ?? 0) + 1)
      return route.count++ === 0 && route.scope === undefined ? openRoute(route) : Effect.void
    }

    const removeSub = (sub: ClientSub): Effect.Effect<void> => {
      const { route, session } = sub
      if (sub.key !== undefined) route.matcher.remove(sub.key)
      sub.key = undefined
      session.subs.delete(sub.id)
      const left = (route.sessions.get(session) ?? 1) - 1
      if (left === 0) route.sessions.delete(session)
      else route.sessions.set(session, left)
      return --route.count === 0 ? closeRoute(route) : Effect.void
    }

    // ---- session lifecycle --------------------------------------------------------------------

    const expire = (session: Session): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (session.expired) return Effect.void
        session.expired = true
        counters.expirations++
        sessions.delete(session.name)
        if (options.tombstones > 0) {
          tombstones.set(session.name, { nextSeq: session.replay.nextSeq, published: session.published })
        }
        return Effect.zipRight(
          Effect.forEach(Array.from(session.subs.values()), removeSub, { discard: true }),
          Scope.close(session.scope, Exit.void)
        )
      })

    const detach = (session: Session, attachment: Attachment): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (session.attachment !== attachment || session.expired) return Effect.void
        session.attachment = undefined
        session.detachedAt = now
        const detaches = ++session.detaches
        runBackground(
          Effect.sleep(options.resumeWindowMs).pipe(
            Effect.zipRight(
              Effect.suspend(() =>
                session.attachment === undefined && session.detaches === detaches ? expire(session) : Effect.void
              )
            )
          )
        )
        return Effect.void
      })

    const newSession = (name: string, start: number, published: number): Effect.Effect<Session> =>
      Effect.map(Scope.fork(gatewayScope, ExecutionStrategy.sequential), (scope) => {
        const session: Session = {
          name,
          lock: Effect.unsafeMakeSemaphore(1),
          replay: new Replay(options.replayMaxUpdates, options.replayMaxBytes, start),
          subs: new Map(),
          scope,
          publishers: new Map(),
          attachment: undefined,
          detachedAt: undefined,
          detaches: 0,
          published,
          stamp: 0,
          touched: false,
          expired: false
        }
        sessions.set(name, session)
        return session
      })

    // ---- one socket ---------------------------------------------------------------------------

    interface Peer {
      socket: RawSocket | undefined
      session: Session | undefined
      attachment: Attachment | undefined
      errors: number
      closed: boolean
      readonly remote: string | undefined
      /** Bytes read from the socket and not yet handled (bounded: see the handler). */
      queued: number
    }

    const closePeer = (peer: Peer, code: number, reason: string): void => {
      peer.closed = true
      peer.socket?.close(code, reason)
    }

    /** A frame the client should not have sent: counted, answered, and the socket closed past a limit. */
    const bad = (peer: Peer, code: Frames.ErrorCode, detail: string, close?: number): void => {
      counters.badFrames++
      if (peer.socket !== undefined) sendError(peer.socket, code, detail)
      if (close !== undefined) closePeer(peer, close, code)
      else if (++peer.errors >= options.maxErrorsPerSocket) {
        if (peer.socket !== undefined) sendError(peer.socket, "TooManyErrors", `${peer.errors} bad frames`)
        closePeer(peer, Frames.Close.PolicyViolation, "TooManyErrors")
      }
    }

    const hello = (peer: Peer, message: typeof Frames.Hello.Type): Effect.Effect<void> =>
      Effect.gen(function* () {
        const socket = peer.socket!
        if (message.version !== Frames.VERSION) {
          return bad(
            peer,
            "UnsupportedVersion",
            `this gateway speaks version ${Frames.VERSION}`,
            Frames.Close.ProtocolError
          )
        }
        const live = sessions.get(message.name)
        const plan = planResume(
          live === undefined ? undefined : live.replay,
          live === undefined ? tombstones.take(message.name) : undefined,
          message.resume
        )
        if (plan._tag === "ResumeAhead") {
          return bad(
            peer,
            "ResumeAhead",
            `resume position ${message.resume} is beyond the last frame sent (${plan.nextSeq - 1})`,
            Frames.Close.PolicyViolation
          )
        }
        if (live === undefined && sessions.size >= options.maxClients) {
          counters.socketsRefused++
          sendError(socket, "TooManyClients", `the gateway serves at most ${options.maxClients} clients`)
          return closePeer(peer, Frames.Close.TryAgainLater, "TooManyClients")
        }
        counters.hellos++
        const now = yield* Clock.currentTimeMillis
        const session = plan._tag === "Resume" ? live! : yield* newSession(message.name, plan.start, plan.published)
        // Under the session's lock: a publish batch of a previous socket that is being counted ends
        // first, so `welcome.published` is exact; one that waits finds the session taken and is
        // dropped uncounted (the client sends it again).
        yield* session.lock.withPermits(1)(
          Effect.sync(() => {
            let gap: Gap | undefined
            if (plan._tag === "Resume") {
              counters.resumes++
              const previous = session.attachment
              if (previous !== undefined) {
                // A second socket with the same name takes the session over; the first is told and closed.
                counters.takeovers++
                session.attachment = undefined
                sendError(previous.socket, "TakenOver", "another socket opened a session with this name")
                previous.socket.close(Frames.Close.TakenOver, "TakenOver")
              }
              if (plan.resume === undefined) session.replay.skipBacklog()
              else gap = session.replay.resumeFrom(plan.resume)
            } else {
              gap = plan.gap
            }
            attach(peer, session, socket, now, plan._tag === "Resume", gap)
          })
        )
      })

    const attach = (
      peer: Peer,
      session: Session,
      socket: RawSocket,
      now: number,
      resumed: boolean,
      gap: Gap | undefined
    ): void => {
      const attachment: Attachment = {
        socket,
        address: peer.remote,
        connectedAt: now,
        waiting: false,
        onWritten: () => {
          if (attachment.waiting && socket.bufferedAmount < options.sendQueueMaxBytes) {
            attachment.waiting = false
            pump(session)
          }
        }
      }
      session.attachment = attachment
      session.detachedAt = undefined
      peer.session = session
      peer.attachment = attachment
      const next = gap?.last !== undefined ? gap.last + 1 : (gap?.first ?? session.replay.cursor)
      sendRaw(
        attachment,
        json({
          type: "welcome",
          version: Frames.VERSION,
          name: session.name,
          resumed,
          next,
          published: session.published,
          subscriptions: Array.from(session.subs.keys()),
          connections: connectionInfo,
          limits
        })
      )
      if (gap !== undefined) sendGap(attachment, gap)
      pump(session)
    }

    const subscribe = (peer: Peer, session: Session, message: typeof Frames.Subscribe.Type): Effect.Effect<void> => {
      const socket = peer.socket!
      const route = routes[message.connection ?? 0]
      if (route === undefined) {
        counters.badFrames++
        sendError(socket, "UnknownConnection", `no connection ${message.connection}`, message.id)
        return Effect.void
      }
      const parsed = Topic.parsePattern(message.pattern)
      if (parsed._tag === "Left") {
        counters.badFrames++
        sendError(socket, "InvalidPattern", parsed.left.message, message.id)
        return Effect.void
      }
      if (session.subs.has(message.id)) {
        counters.badFrames++
        sendError(socket, "DuplicateId", `subscription ${message.id} exists`, message.id)
        return Effect.void
      }
      if (session.subs.size >= options.maxSubscriptionsPerClient) {
        counters.badFrames++
        sendError(socket, "TooManySubscriptions", `at most ${options.maxSubscriptionsPerClient}`, message.id)
        return Effect.void
      }
      return Effect.map(addSub(session, route, message.id, parsed.right), () => {
        if (socket.readyState === 1) socket.send(json({ type: "subscribed", id: message.id }))
      })
    }

    /** Publishes of one chunk, grouped into one `publishAll` per run of frames to the same route. */
    const publishBatch = (
      peer: Peer,
      routeIndex: number,
      batch: Array<readonly [string, Uint8Array]>,
      frames: number
    ): Effect.Effect<void> => {
      const session = peer.session!
      const socket = peer.socket!
      const run = Effect.suspend(() => {
        // Detached or taken over while waiting: the next welcome did not count this batch.
        if (session.attachment !== peer.attachment) return Effect.void
        const publisher = session.publishers.get(routeIndex)
        const open = (route: Route) =>
          publisher !== undefined
            ? Effect.succeed(publisher)
            : Effect.tap(Scope.extend(route.connection.publisher, session.scope), (p) =>
                Effect.sync(() => session.publishers.set(routeIndex, p))
              )
        // Only rejected frames (counted all the same) when the batch is empty.
        const hand =
          batch.length === 0 ? Effect.void : Effect.flatMap(open(routes[routeIndex]), (p) => p.publishAll(batch))
        return hand.pipe(
          Effect.catchAll((error) => Effect.sync(() => sendError(socket, "PublishFailed", error.message))),
          Effect.zipRight(
            Effect.sync(() => {
              session.published += frames
              if (socket.readyState === 1) socket.send(json({ type: "pubAck", count: session.published }))
            })
          )
        )
      })
      // Uninterruptible: `published` must count exactly what reached the connection, so a client
      // that resumes re-sends exactly the rest.
      return session.lock.withPermits(1)(Effect.uninterruptible(run))
    }

    const handleChunk = (peer: Peer, chunk: Chunk.Chunk<string | Uint8Array>): Effect.Effect<void> =>
      Effect.gen(function* () {
        let batch: Array<readonly [string, Uint8Array]> = []
        let batchRoute = -1
        let batchFrames = 0
        const flushBatch = () => {
          if (batchFrames === 0) return Effect.void
          const effect = publishBatch(peer, batchRoute, batch, batchFrames)
          batch = []
          batchFrames = 0
          return effect
        }
        for (const data of chunk) {
          if (peer.closed) break
          // Taken over by another socket: nothing more from this one counts.
          if (peer.session !== undefined && peer.session.attachment !== peer.attachment) return
          const size = byteLength(data)
          peer.queued -= typeof data === "string" ? data.length : data.byteLength
          if (size > options.maxFrameBytes) {
            bad(peer, "FrameTooLarge", `${size} bytes, at most ${options.maxFrameBytes}`, Frames.Close.TooBig)
            continue
          }
          if (typeof data !== "string") {
            // Binary: only publish frames travel this way from a client.
            if (data[0] !== Frames.PUBLISH) {
              bad(peer, data.length === 0 ? "MalformedFrame" : "UnknownType", `binary frame type ${data[0] ?? "none"}`)
              continue
            }
            const session = peer.session
            if (session === undefined) {
              bad(peer, "HelloRequired", "the first frame must be hello", Frames.Close.ProtocolError)
              continue
            }
            const publish = Frames.decodePublish(data)
            if (publish === undefined) {
              // Counted in order with the valid frames around it (`published`), never re-sent.
              counters.publishesIn++
              batchFrames++
              bad(peer, "MalformedFrame", "truncated publish frame or topic not UTF-8")
              continue
            }
            const route = routes[publish.connection]
            const invalid =
              route === undefined
                ? (["UnknownConnection", `no connection ${publish.connection}`] as const)
                : Topic.validateTopic(publish.topic) !== undefined
                  ? (["InvalidTopic", Topic.validateTopic(publish.topic)!.message] as const)
                  : publish.payload.length > route.connection.config.maxUpdateSize
                    ? (["UpdateTooLarge", `${publish.payload.length} bytes`] as const)
                    : undefined
            counters.publishesIn++
            if (publish.connection !== batchRoute) yield* flushBatch()
            batchRoute = publish.connection
            batchFrames++
            if (invalid !== undefined) {
              // Still counted as consumed (`published`), so the client does not send it again.
              bad(peer, invalid[0], invalid[1])
              continue
            }
            batch.push([publish.topic, publish.payload])
            continue
          }
          yield* flushBatch()
          const message = Frames.parseClientMessage(data)
          if (message === undefined) {
            const type = Frames.typeOf(data)
            if (type === undefined) bad(peer, "MalformedFrame", "not a JSON control message")
            else if (["hello", "subscribe", "unsubscribe", "ack", "flush"].includes(type)) {
              bad(peer, "MalformedFrame", `malformed ${type}`)
            } else bad(peer, "UnknownType", `unknown message type ${JSON.stringify(type).slice(0, 64)}`)
            continue
          }
          if (message.type === "hello") {
            if (peer.session !== undefined) bad(peer, "DuplicateHello", "hello was already received")
            else yield* hello(peer, message)
            continue
          }
          const session = peer.session
          if (session === undefined) {
            bad(peer, "HelloRequired", "the first frame must be hello", Frames.Close.ProtocolError)
            continue
          }
          switch (message.type) {
            case "subscribe":
              yield* subscribe(peer, session, message)
              break
            case "unsubscribe": {
              const sub = session.subs.get(message.id)
              if (sub === undefined) {
                counters.badFrames++
                sendError(peer.socket!, "UnknownId", `no subscription ${message.id}`, message.id)
              } else yield* removeSub(sub)
              break
            }
            case "ack":
              session.replay.trimThrough(message.seq)
              break
            case "flush":
              yield* Effect.forEach(session.publishers.values(), (p) => p.flush, { discard: true })
              if (peer.socket!.readyState === 1) peer.socket!.send(json({ type: "flushed", id: message.id }))
              break
          }
        }
        yield* flushBatch()
      })

    const serveSocket = (socket: Socket.Socket, remote: string | undefined): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function* () {
        counters.socketsAccepted++
        const inbox = yield* Mailbox.make<string | Uint8Array>()
        const raw = yield* Deferred.make<RawSocket>()
        const peer: Peer = {
          queued: 0,
          socket: undefined,
          session: undefined,
          attachment: undefined,
          errors: 0,
          closed: false,
          remote
        }
        let first = true
        const captureSocket = Effect.flatMap(Socket.WebSocket, (ws) =>
          Deferred.succeed(raw, ws as unknown as RawSocket)
        )
        // The handler only queues: frames are handled in order by the loop below, a chunk at a time.
        // A client may run ahead of the handling by its publish window plus one frame; beyond, it
        // ignores the window (or floods control frames): refused, and nothing more is queued.
        const maxQueued = options.publishWindowBytes + options.maxFrameBytes
        const handler = (data: string | Uint8Array) => {
          if (peer.closed) return
          peer.queued += typeof data === "string" ? data.length : data.byteLength
          if (peer.queued > maxQueued) {
            counters.badFrames++
            if (peer.socket !== undefined) {
              sendError(peer.socket, "PublishWindowExceeded", `more than ${maxQueued} bytes ahead of the gateway`)
            }
            closePeer(peer, Frames.Close.PolicyViolation, "PublishWindowExceeded")
            return
          }
          inbox.unsafeOffer(data)
          if (first) {
            first = false
            // The platform runs handler effects with `Socket.WebSocket` provided (its types do not say so).
            return captureSocket as Effect.Effect<boolean>
          }
        }
        yield* socket.runRaw(handler).pipe(Effect.exit, Effect.zipRight(inbox.end), Effect.forkScoped)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() =>
            peer.session !== undefined && peer.attachment !== undefined
              ? detach(peer.session, peer.attachment)
              : Effect.void
          )
        )
        const write = yield* socket.writer
        const firstChunk = yield* Effect.timeoutOption(inbox.takeAll, options.helloTimeoutMs)
        if (Option.isNone(firstChunk)) {
          counters.badFrames++
          return yield* write(new Socket.CloseEvent(Frames.Close.PolicyViolation, "HelloTimeout")).pipe(Effect.ignore)
        }
        const [messages, done] = firstChunk.value
        peer.socket = yield* Deferred.await(raw)
        openSockets.add(peer.socket)
        yield* Effect.addFinalizer(() => Effect.sync(() => openSockets.delete(peer.socket!)))
        yield* handleChunk(peer, messages)
        if (done) return
        for (;;) {
          const [chunk, end] = yield* inbox.takeAll
          yield* handleChunk(peer, chunk)
          if (end || peer.closed) return
        }
      }).pipe(Effect.catchAllCause((cause) => Effect.logDebug("gateway socket ended", cause)))

    // ---- HTTP server --------------------------------------------------------------------------

    // The server lives in a child scope closed after every client socket (finalizer below): the
    // platform's WebSocketServer, created at the first upgrade, waits on close for all of its
    // clients to be gone.
    const serverScope = yield* Scope.fork(gatewayScope, ExecutionStrategy.sequential)
    const { hostname, nodeServer, port, server } = yield* HttpListen.listen(options.host, options.port).pipe(
      Effect.mapError((failure) => new GatewayError({ ...failure, address })),
      Scope.extend(serverScope)
    )
    const bound = { hostname, port }
    const url = formatUrl(bound.hostname, bound.port, options.path)
    const guard = Guard.make({
      host: options.host,
      boundAddress: bound.hostname,
      port: bound.port,
      token,
      allowedHosts: options.allowedHosts,
      cookie: false
    })
    const notFound = HttpServerResponse.text("404 Not Found: the gateway's WebSocket endpoint is elsewhere\n", {
      status: 404
    })
    const upgradeRequired = HttpServerResponse.text("426 Upgrade Required: this is a WebSocket endpoint\n", {
      status: 426,
      headers: { upgrade: "websocket" }
    })

    yield* server
      .serve(
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          const refused = guard.check(request)
          if (refused !== undefined) {
            counters.socketsRefused++
            return Effect.succeed(refused)
          }
          if (new URL(request.url, "http://gateway.invalid").pathname !== options.path) return Effect.succeed(notFound)
          if (request.headers.upgrade?.toLowerCase() !== "websocket") return Effect.succeed(upgradeRequired)
          const remote = Option.getOrUndefined(request.remoteAddress)
          // The platform runs apps uninterruptibly (its router opts routes back in); a socket's fiber
          // must be interruptible, or closing the server would wait on a half-open handshake.
          return Effect.flatMap(request.upgrade, (socket) => Effect.scoped(serveSocket(socket, remote))).pipe(
            Effect.catchAllCause(() => Effect.void),
            Effect.interruptible,
            Effect.as(HttpServerResponse.empty())
          )
        })
      )
      .pipe(Scope.extend(serverScope))
    // Runs before the server's scope closes: upgraded sockets are not the HTTP server's to close,
    // so every client is told (1001 Going Away), given a moment for the closing handshake, then cut.
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        const open = Array.from(openSockets).filter((s) => s.readyState !== 3)
        for (const socket of open) socket.close(Frames.Close.GoingAway, "GoingAway")
        nodeServer.closeAllConnections()
        // Real time, not Effect's Clock: shutting down must not wait for a TestClock to move.
        let left = open.length
        const done = () => {
          clearTimeout(timer)
          for (const socket of open) if (socket.readyState !== 3) socket.terminate()
          resume(Effect.void)
        }
        const timer = setTimeout(done, CLOSE_GRACE_MS)
        if (left === 0) return done()
        for (const socket of open) {
          socket.once("close", () => {
            if (--left === 0) done()
          })
        }
      })
    )
    yield* Effect.logDebug(`effect-distributor gateway on ${url}`)

    const stats = Effect.sync(
      (): GatewayStats => ({
        url,
        counters: { ...counters },
        clients: Array.from(sessions.values(), (s) => ({
          name: s.name,
          connected: s.attachment !== undefined,
          address: s.attachment?.address,
          connectedAt: s.attachment?.connectedAt,
          detachedAt: s.detachedAt,
          subscriptions: Array.from(s.subs.values(), (sub) => ({
            id: sub.id,
            pattern: sub.pattern,
            connection: sub.route.connection.key
          })),
          nextSeq: s.replay.nextSeq,
          buffered: s.replay.size,
          bufferedBytes: s.replay.bytes,
          unsent: s.replay.unsent,
          published: s.published,
          framesDropped: s.replay.droppedUnsent
        }))
      })
    )
    return { url, host: bound.hostname, port: bound.port, stats } satisfies GatewayHandle
  })
