/**
 * A client of a `Gateway`: subscribe and publish from where multicast cannot reach, with the same
 * Stream API as a `Connection`. Works in Node and in a browser bundle (no `node:` imports).
 *
 * The client is one named session: it connects, says its name, and when the socket drops it
 * reconnects by itself (a `Schedule`, by default 100 ms doubling to 5 s, jittered) and resumes: the
 * gateway sends exactly what it missed, then live. What the gateway could not keep (its replay
 * bounds, its resume window) reaches every subscription as a typed `GatewayLoss` with the exact
 * range of the client's sequence numbers: it fails the stream, or with `onLoss: "notify"` arrives
 * as a value, like `IrrecoverableLoss` on a connection. Publishes are kept until the gateway
 * acknowledges them and sent again after a reconnect, so a dropped socket neither loses nor
 * doubles them.
 *
 * The WebSocket comes from `Socket.WebSocketConstructor`: in a browser
 * `Socket.layerWebSocketConstructorGlobal` (from `@effect/platform/Socket`), in Node
 * `NodeSocket.layerWebSocketConstructor` (from `@effect/platform-node/NodeSocket`).
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const client = yield* GatewayClient.make({ url: "ws://127.0.0.1:8787/", name: "dashboard-1" })
 *   const publisher = yield* client.publisher
 *   yield* publisher.publish("/chat/room-1", "hello")
 *   yield* client.subscribe("/prices/...").pipe(Stream.runForEach((u) => Effect.log(u.topic)))
 * }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor))
 * ```
 *
 * @since 0.1.0
 */
import type * as Socket from "@effect/platform/Socket"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { SubscribeOptions, Update } from "./Connection.js"
import type {
  GatewayError,
  GatewayLoss,
  InvalidOption,
  InvalidTopic,
  IrrecoverableLoss,
  SubscriberOverflow
} from "./DistributorError.js"
import * as internal from "./internal/gateway/client.js"

/**
 * Options of `make`: `url` and `name` are required.
 *
 * @since 0.1.0
 */
export type ClientOptions = internal.ClientOptions

/**
 * `Connecting` (with the attempt number), `Connected` (whether the session was resumed, the
 * connection's `group:port`), or `Stopped` for good (taken over by another socket with the same
 * name, refused, or closed).
 *
 * @since 0.1.0
 */
export type ClientState = internal.ClientState

/**
 * @since 0.1.0
 */
export type ClientStatus = internal.ClientStatus

/**
 * `publish`, `publishAll` and `flush`, as on a connection's publisher. `publish` returns once the
 * update is on its way; it suspends while a window of unacknowledged bytes (the gateway's
 * `publishWindowBytes`) is outstanding.
 *
 * @since 0.1.0
 */
export type GatewayPublisher = internal.GatewayPublisher

/**
 * What a subscription with `onLoss: "notify"` receives instead of failing.
 *
 * @since 0.1.0
 */
export type LossNotice = IrrecoverableLoss | SubscriberOverflow | GatewayLoss

/**
 * Why a subscription (in the default `onLoss: "fail"` mode) fails. `GatewayError` (`TakenOver`,
 * `Refused`) ends every subscription in both modes: the client stopped.
 *
 * @since 0.1.0
 */
export type SubscriptionError = LossNotice | GatewayError

/**
 * @since 0.1.0
 */
export interface SubscribeFn {
  (
    pattern: string,
    options: SubscribeOptions & { readonly onLoss: "notify" }
  ): Stream.Stream<Update | LossNotice, InvalidTopic | InvalidOption | GatewayError>
  (pattern: string, options?: SubscribeOptions): Stream.Stream<Update, InvalidTopic | InvalidOption | SubscriptionError>
}

/**
 * @since 0.1.0
 */
export interface SubscribeScopedFn {
  (
    pattern: string,
    options: SubscribeOptions & { readonly onLoss: "notify" }
  ): Effect.Effect<Stream.Stream<Update | LossNotice, GatewayError>, InvalidTopic | InvalidOption, Scope.Scope>
  (
    pattern: string,
    options?: SubscribeOptions
  ): Effect.Effect<Stream.Stream<Update, SubscriptionError>, InvalidTopic | InvalidOption, Scope.Scope>
}

/**
 * @since 0.1.0
 */
export interface GatewayClientService {
  readonly name: string
  /**
   * Subscribe to a topic pattern on the gateway's connection. Ending or interrupting the stream
   * unsubscribes. Options and loss semantics as `Connection.subscribe`, plus `GatewayLoss`.
   */
  readonly subscribe: SubscribeFn
  /**
   * Like `subscribe`, but registered with the gateway when the effect returns (it waits for the
   * gateway's confirmation, so for a connection) and lasting until the scope closes.
   */
  readonly subscribeScoped: SubscribeScopedFn
  /** A publisher; closing its scope flushes it (for at most 5 s). */
  readonly publisher: Effect.Effect<GatewayPublisher, never, Scope.Scope>
  readonly status: Effect.Effect<ClientStatus>
  /** Waits until connected; fails once the client stopped. */
  readonly awaitConnected: Effect.Effect<void, GatewayError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class GatewayClient extends Context.Tag("effect-distributor/GatewayClient")<
  GatewayClient,
  GatewayClientService
>() {}

/**
 * Start a client in the current scope: it connects in the background and keeps reconnecting until
 * the scope closes. Closing the scope closes the socket (the gateway keeps the session for its
 * resume window) and ends every subscription.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ClientOptions
): Effect.Effect<GatewayClientService, never, Socket.WebSocketConstructor | Scope.Scope> =>
  Effect.map(internal.make(options), (handle): GatewayClientService => {
    const subscribeScoped = handle.subscribeScoped as SubscribeScopedFn
    const subscribe = ((pattern: string, options?: SubscribeOptions) =>
      Stream.unwrapScoped(handle.subscribeScoped(pattern, options))) as SubscribeFn
    return {
      name: handle.name,
      subscribe,
      subscribeScoped,
      publisher: handle.publisher,
      status: handle.status,
      awaitConnected: handle.awaitConnected
    }
  })

/**
 * A client as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ClientOptions): Layer.Layer<GatewayClient, never, Socket.WebSocketConstructor> =>
  Layer.scoped(GatewayClient, make(options))
