/**
 * A Connection is one multicast group + UDP port: its socket, its publishers, the receivers for
 * every remote sender heard on it, its timers and its subscriptions.
 *
 * Open one with `Distributor.connection(config)` (scoped), or provide it as a Layer with
 * `Connection.layer(config)`.
 *
 * @since 0.1.0
 */
import type * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { ConnectionConfigInput } from "./Distributor.js"
import * as Distributor from "./Distributor.js"
import type { ConnectionConfig } from "./DistributorConfig.js"
import type {
  ConnectionClosed,
  InvalidConfig,
  InvalidOption,
  InvalidPayload,
  InvalidTopic,
  IrrecoverableLoss,
  PayloadCodecError,
  SubscriberOverflow,
  TransportError,
  UpdateTooLarge
} from "./DistributorError.js"
import * as internalConsume from "./internal/consume.js"
import type * as internalCounters from "./internal/counters.js"
import type {
  ReceiverInfo,
  RemoteReceiverStats,
  RemoteSessionStats,
  SessionEvent,
  SessionInfo
} from "./internal/protocol/engine.js"
import type { SocketStats } from "./Transport.js"

/**
 * A sending session: its random 64-bit id, sender index, host and application.
 *
 * @since 0.1.0
 */
export type Source = SessionInfo

/**
 * A remote receiver (a connection with subscriptions elsewhere on the group), as its Status
 * packets describe it: control session id, name, host, application, address.
 *
 * @since 0.1.0
 */
export type Receiver = ReceiverInfo

/**
 * A remote receiver now: its window, and its position and lag (segments) in each local publisher.
 *
 * @since 0.1.0
 */
export type ReceiverStats = RemoteReceiverStats

/**
 * One update received on a subscription.
 *
 * @since 0.1.0
 */
export interface Update {
  readonly topic: string
  /** The payload bytes. Owned by the receiver: safe to keep. */
  readonly payload: Uint8Array
  readonly source: Source
  /** Sequence number of the segment that completed this update. */
  readonly sequence: number
}

/**
 * One update of a typed subscription: the payload decoded with the subscription's schema.
 *
 * @since 0.1.0
 */
export interface TypedUpdate<A> {
  readonly topic: string
  readonly value: A
  readonly source: Source
  readonly sequence: number
}

/**
 * What a subscription with `onLoss: "notify"` receives instead of failing.
 *
 * @since 0.1.0
 */
export type LossNotice = IrrecoverableLoss | SubscriberOverflow

/**
 * Options of `subscribe` / `subscribeScoped`. They are checked when the subscription is made: a
 * bad value (e.g. `bufferSize: 0`, `NaN` or `1.5`; `onLoss: "bogus"`) or an option not listed here
 * fails it with `InvalidOption`. An option set to `undefined` is the same as leaving it out.
 *
 * @since 0.1.0
 */
export interface SubscribeOptions {
  /**
   * Updates buffered for this subscriber before it counts as overflowing: an integer
   * 1..16 777 216 (2^24). Defaults to the connection's `subscriberBufferSize`.
   */
  readonly bufferSize?: number
  /**
   * `"fail"` (default): irrecoverable loss and buffer overflow fail the stream with a typed error.
   * `"notify"`: the stream stays alive and carries them as values (`LossNotice`). Nothing else.
   */
  readonly onLoss?: "fail" | "notify"
}

/**
 * @since 0.1.0
 */
export interface TypedSubscribeOptions<A, I> extends SubscribeOptions {
  /** Decodes each payload: UTF-8 JSON, then this schema. */
  readonly schema: Schema.Schema<A, I>
}

/**
 * Errors of `publish`. `InvalidPayload` only reaches untyped callers: a payload that is neither a
 * string nor a `Uint8Array`, or a `publishAll` argument that is not an iterable of
 * `[topic, payload]` arrays.
 *
 * @since 0.1.0
 */
export type PublishError = InvalidTopic | InvalidPayload | UpdateTooLarge | ConnectionClosed

/**
 * What `Publisher.unsafePublish` did: published, blocked (nothing published; `publish` waits), or
 * the typed error `publish` fails with.
 *
 * @since 0.1.0
 */
export type UnsafePublishResult = "published" | "blocked" | PublishError

/**
 * A publishing session on a connection. Closed (held-back updates flushed, goodbye sent) when the
 * scope it was opened in closes.
 *
 * @since 0.1.0
 */
export interface Publisher {
  readonly source: Source
  /**
   * Publish one update. Suspends while flow control's window is closed (the slowest receiver has
   * not caught up, with `flowControl: "min"`) or the bandwidth limit says so (back-pressure); never
   * buffers without bound. An idle publisher's update leaves at once; under load updates are
   * packed into datagrams for at most the holdback delay.
   */
  readonly publish: (topic: string, payload: Uint8Array | string) => Effect.Effect<void, PublishError>
  /**
   * `publish` without an Effect, for callers outside a fiber (an event handler, a loop with its own
   * pacing), where running `publish` would start a fiber per update: `"published"` when the update
   * was taken exactly as `publish` would have taken it; `"blocked"` when `publish` would have
   * suspended (flow-control window closed, bandwidth pacing) — nothing was published, run `publish`
   * to wait; otherwise the error `publish` would have failed with.
   */
  readonly unsafePublish: (topic: string, payload: Uint8Array | string) => UnsafePublishResult
  /**
   * Publish many updates in one go: they leave packed in as few datagrams as fit them (natural
   * batching, no timer involved).
   */
  readonly publishAll: (
    updates: Iterable<readonly [topic: string, payload: Uint8Array | string]>
  ) => Effect.Effect<void, PublishError>
  /**
   * `publishAll` without an Effect, for callers outside a fiber (as `unsafePublish`): publishes the
   * updates in order, packed as `publishAll` packs them, and returns how many it took — all of
   * them, or fewer where `publishAll` would have suspended before the next one (flow-control window
   * closed, bandwidth pacing; run `publishAll` on the rest to wait) — or the error `publishAll`
   * would have failed with (the updates before the failing one are published).
   */
  readonly unsafePublishAll: (
    updates: ReadonlyArray<readonly [topic: string, payload: Uint8Array | string]>
  ) => number | PublishError
  /**
   * For callers outside a fiber, what `publish` does when it suspends: calls `callback` once, when
   * publishing would no longer wait (the receivers' window opened, the pacing delay passed) or the
   * connection closed (the next publish says so); never synchronously. Returns a
   * function that cancels the call. With `unsafePublish` / `unsafePublishAll` it makes a loop that
   * waits without a fiber, as a writable stream's `'drain'` does.
   */
  readonly unsafeOnReady: (callback: () => void) => () => void
  /**
   * Send what is held back now, and wait until what the receivers' window held back has left.
   */
  readonly flush: Effect.Effect<void>
  /**
   * Wait until at least `n` remote receivers are present and have heard this publisher (they report
   * a position for it), so that what is published next reaches them under flow control.
   */
  readonly awaitReceivers: (n: number) => Effect.Effect<void>
  /** How many remote receivers report a position for this publisher now. */
  readonly receivers: Effect.Effect<number>
  /** A publisher of values encoded with `schema` as UTF-8 JSON. */
  readonly typed: <A, I>(schema: Schema.Schema<A, I>) => TypedPublisher<A>
}

/**
 * @since 0.1.0
 */
export interface TypedPublisher<A> {
  readonly publish: (topic: string, value: A) => Effect.Effect<void, PublishError | PayloadCodecError>
}

/**
 * Who is on the group: remote senders joined, restarted, closed or gone; remote receivers joined or
 * left (`reason`: "Left" on a clean stop, "Timeout" when its status went silent).
 *
 * @since 0.1.0
 */
export type PresenceEvent = SessionEvent

/**
 * Session and receiver events, and losses, seen on a connection.
 *
 * @since 0.1.0
 */
export type ConnectionEvent =
  | PresenceEvent
  | { readonly _tag: "Loss"; readonly loss: IrrecoverableLoss }
  | { readonly _tag: "SubscriberOverflow"; readonly overflow: SubscriberOverflow }

/**
 * Every counter of a connection (the protocol engine's, the fan-out's): a number per name in
 * `src/internal/counters.ts`, the single definition the metrics and the web console share.
 *
 * @since 0.1.0
 */
export type ConnectionCounters = internalCounters.ConnectionCounters

/**
 * A plain snapshot of a connection's statistics: the counters, plus the socket, publishers,
 * subscriptions and remote sessions.
 *
 * @since 0.1.0
 */
export interface ConnectionStats extends ConnectionCounters {
  readonly connection: string
  readonly openedAt: number
  readonly socket: SocketStats
  /** Host-wide UDP receive-buffer drops since the connection opened (Linux `/proc/net/snmp`), when readable. */
  readonly kernelReceiveBufferErrors: number | undefined
  readonly publishers: ReadonlyArray<{
    readonly source: Source
    readonly highestSeq: number
    readonly cachedSegments: number
    readonly cachedBytes: number
  }>
  readonly subscriptions: ReadonlyArray<{
    readonly pattern: string
    readonly buffered: number
    readonly delivered: number
    /** Updates not delivered because its buffer was full (reported in `SubscriberOverflow`). */
    readonly dropped: number
  }>
  readonly remoteSessions: ReadonlyArray<RemoteSessionStats>
  /** Remote receivers present (flow control, presence). */
  readonly remoteReceivers: ReadonlyArray<RemoteReceiverStats>
  /** NAK packets received for this connection's publishers, per requesting host. */
  readonly nakRequesters: ReadonlyArray<{ readonly host: string; readonly naks: number }>
  /** The last (up to 100) irrecoverable losses, oldest first. */
  readonly recentLosses: ReadonlyArray<LossRecord>
}

/**
 * An irrecoverable loss and when it was reported (epoch ms).
 *
 * @since 0.1.0
 */
export interface LossRecord {
  readonly at: number
  readonly loss: IrrecoverableLoss
}

/**
 * @since 0.1.0
 */
export interface SubscribeFn {
  <A, I>(
    pattern: string,
    options: TypedSubscribeOptions<A, I> & { readonly onLoss: "notify" }
  ): Stream.Stream<TypedUpdate<A> | LossNotice, InvalidTopic | InvalidOption | PayloadCodecError>
  <A, I>(
    pattern: string,
    options: TypedSubscribeOptions<A, I>
  ): Stream.Stream<
    TypedUpdate<A>,
    InvalidTopic | InvalidOption | PayloadCodecError | IrrecoverableLoss | SubscriberOverflow
  >
  (
    pattern: string,
    options: SubscribeOptions & { readonly onLoss: "notify" }
  ): Stream.Stream<Update | LossNotice, InvalidTopic | InvalidOption>
  (
    pattern: string,
    options?: SubscribeOptions
  ): Stream.Stream<Update, InvalidTopic | InvalidOption | IrrecoverableLoss | SubscriberOverflow>
}

/**
 * `subscribe`, registered at once: the subscription exists when the effect returns (so nothing
 * published afterwards can be missed) and lasts until the scope closes.
 *
 * @since 0.1.0
 */
export interface SubscribeScopedFn {
  <A, I>(
    pattern: string,
    options: TypedSubscribeOptions<A, I> & { readonly onLoss: "notify" }
  ): Effect.Effect<
    Stream.Stream<TypedUpdate<A> | LossNotice, PayloadCodecError>,
    InvalidTopic | InvalidOption,
    Scope.Scope
  >
  <A, I>(
    pattern: string,
    options: TypedSubscribeOptions<A, I>
  ): Effect.Effect<
    Stream.Stream<TypedUpdate<A>, PayloadCodecError | IrrecoverableLoss | SubscriberOverflow>,
    InvalidTopic | InvalidOption,
    Scope.Scope
  >
  (
    pattern: string,
    options: SubscribeOptions & { readonly onLoss: "notify" }
  ): Effect.Effect<Stream.Stream<Update | LossNotice>, InvalidTopic | InvalidOption, Scope.Scope>
  (
    pattern: string,
    options?: SubscribeOptions
  ): Effect.Effect<
    Stream.Stream<Update, IrrecoverableLoss | SubscriberOverflow>,
    InvalidTopic | InvalidOption,
    Scope.Scope
  >
}

/**
 * @since 0.1.0
 */
export interface ConnectionService {
  /** `group:port`. */
  readonly key: string
  readonly config: ConnectionConfig
  /** Open a publishing session, closed with the scope. */
  readonly publisher: Effect.Effect<Publisher, ConnectionClosed, Scope.Scope>
  /**
   * Subscribe to a topic pattern. Ending or interrupting the stream unsubscribes. Irrecoverable
   * loss on the connection fails every subscription (or reaches it as a value with
   * `onLoss: "notify"`): a lost segment may have carried any topic.
   */
  readonly subscribe: SubscribeFn
  /**
   * Like `subscribe`, but the subscription is registered when the effect runs and lives until the
   * scope closes, rather than when the stream starts: use it to subscribe before publishing.
   */
  readonly subscribeScoped: SubscribeScopedFn
  /** Session and receiver events, and losses. */
  readonly events: Stream.Stream<ConnectionEvent>
  /** Joins and leaves of remote senders and receivers. */
  readonly presence: Stream.Stream<PresenceEvent>
  /** The remote receivers present now, with their positions and lag in this connection's publishers. */
  readonly receivers: Effect.Effect<ReadonlyArray<ReceiverStats>>
  /** Wait until at least `n` remote receivers are present. */
  readonly awaitReceivers: (n: number) => Effect.Effect<void>
  readonly stats: Effect.Effect<ConnectionStats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Connection extends Context.Tag("effect-distributor/Connection")<Connection, ConnectionService>() {}

/**
 * Provide a `Connection` opened through the `Distributor` in context, closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: ConnectionConfigInput
): Layer.Layer<Connection, TransportError | InvalidConfig, Distributor.Distributor> =>
  Layer.scoped(Connection, Distributor.connection(config))

/**
 * Runs `f` synchronously on each chunk of a subscription (of any stream) until it ends: what
 * `Stream.runForEachChunk(stream, (chunk) => Effect.sync(() => f(chunk)))` does, for much less CPU
 * and latency. The result fails as the stream would (an `IrrecoverableLoss` after the updates
 * before it, …); a throw from `f` is a defect of the returned effect.
 *
 * On a subscription's own stream — as `subscribe` / `subscribeScoped` return it without a
 * `schema`, not piped through other operators — `f` runs from the connection's receive path:
 * first on what the subscription buffered before, then on each socket wake-up's chunk as soon as
 * the engine has it, with no Mailbox, Stream or fiber wake-up in between (at 1 000 updates/s that
 * hand-off was 20–40 µs of each update's latency here). `f` is never re-entered: a chunk that
 * arrives while it runs (a local publish from `f`) is handed over when it returns. There is no
 * buffer, so `bufferSize` does not apply: a slow `f` holds up the connection's receive loop, the
 * socket's buffer absorbs it and flow control slows the publishers. Interrupted, the subscription
 * goes back to buffering for its stream.
 *
 * On any other stream, `f` runs and the shared `Effect.void` is returned. The `Effect.sync` form
 * allocates, per chunk, an Effect that references the chunk, and measured on Node 20 this keeps
 * chunks, their updates and their payload views alive through V8's young-generation collections
 * (about 100 promoted bytes per 64-byte update, against 4 here), and the collector's work became
 * most of a subscriber's CPU; V8 pretenuring Effect's primitives is part of it. bench/README.md
 * "Consuming a subscription" has the measurements.
 *
 * @since 0.1.0
 * @category consuming
 */
export const forEachChunk: {
  <A>(f: (chunk: Chunk.Chunk<A>) => void): <E, R>(stream: Stream.Stream<A, E, R>) => Effect.Effect<void, E, R>
  <A, E, R>(stream: Stream.Stream<A, E, R>, f: (chunk: Chunk.Chunk<A>) => void): Effect.Effect<void, E, R>
} = internalConsume.forEachChunk
