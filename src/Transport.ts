/**
 * The datagram transport under a Connection: one multicast group + port, a way to send datagrams
 * to it and a stream of datagrams received from it.
 *
 * Two implementations:
 * - `layerUdp`: real IP multicast, through `node:dgram` or, on Linux when the optional native addon
 *   (native/udp) is built, with batched `recvmmsg` / `sendmmsg` (see `udpBackend`).
 * - `layerMemory`: a simulated network in memory with seeded loss, duplication, reordering and
 *   delay (the same fault model as the protocol engine's simulator), so applications can be
 *   tested against a lossy network without sockets.
 *
 * `send` is a plain synchronous function on purpose: the protocol engine calls it once per packed
 * datagram from inside its synchronous hot path.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { TransportError } from "./DistributorError.js"
import * as internalLossy from "./internal/transport/lossy.js"
import * as internalMemory from "./internal/transport/memory.js"
import * as internalNative from "./internal/transport/native.js"
import * as internalUdp from "./internal/transport/udp.js"

/**
 * A received datagram and the transport address (`ip:port`) it came from.
 *
 * @since 0.1.0
 */
export interface Datagram {
  readonly data: Uint8Array
  readonly address: string
}

/**
 * What a socket has counted. Plain numbers, read by the statistics and the web console.
 *
 * @since 0.1.0
 */
export interface SocketStats {
  /** `send` calls that failed (asynchronously, in the socket). */
  readonly sendErrors: number
  readonly lastSendError: string | undefined
  /**
   * Datagrams dropped because a queue between socket and receiver was full: the in-memory network's
   * per-socket queue, or (UDP) what arrived before `listen` beyond `queueCapacity`.
   */
  readonly queueDrops: number
  /** Buffer sizes the kernel granted (bytes; 0 when not applicable). */
  readonly recvBufferSize: number
  readonly sendBufferSize: number
  /** Which UDP implementation moves the datagrams (`layerUdp`); absent for other transports. */
  readonly backend?: UdpBackend
  /**
   * Native backend only: runs of equal-size datagrams sent as ONE message each (UDP GSO) and runs
   * received in one read (UDP GRO), with the datagrams they carried. Zero where the kernel or
   * route does not segment, or the datagrams never came in runs. Also the reads that reused the
   * memory of an earlier one.
   */
  readonly segmentation?: Segmentation
}

/**
 * GSO / GRO counters of a native-backend socket (`SocketStats.segmentation`).
 *
 * @since 0.1.0
 */
export interface Segmentation {
  gsoSends: number
  gsoDatagrams: number
  groReads: number
  groDatagrams: number
  /** Reads into the memory of an earlier read of which the handler kept nothing (`DatagramHandler`). */
  reusedReads: number
}

/**
 * The implementations behind `layerUdp`: `"native"` reads with `recvmmsg` and writes with
 * `sendmmsg` (native/udp), `"dgram"` is `node:dgram`.
 *
 * @since 0.1.0
 */
export type UdpBackend = "native" | "dgram"

/**
 * What a socket hands received datagrams to. Both calls are synchronous and must not throw.
 *
 * `onDatagram` is called once per datagram, in arrival order, straight from the socket's event (or
 * the in-memory network's delivery fiber); `onBatchEnd` once after the datagrams read in one wake-up
 * of the socket (one event-loop poll phase for UDP), so the receiver can hand on what the whole
 * batch produced at once. `data` is the receiver's own, to keep and to overwrite (no other receiver
 * shares its bytes: the engine decrypts secured datagrams in place). `onDatagram` returns `false`
 * when it keeps no reference to `data`'s memory past the batch: once `onBatchEnd` has returned, a
 * socket may read later datagrams into that memory (the native backend does, for the fragments of
 * large updates, which the engine copies out). Any other result, or none, counts as kept.
 *
 * @since 0.1.0
 */
export interface DatagramHandler {
  readonly onDatagram: (data: Uint8Array, address: string) => unknown
  readonly onBatchEnd: () => void
}

/**
 * An open endpoint on one multicast group + port.
 *
 * @since 0.1.0
 */
export interface DatagramSocket {
  /** `group:port` this socket is on. */
  readonly group: string
  /** Local address datagrams leave from (`ip:port`). */
  readonly localAddress: string
  /**
   * Multicast one datagram to the group. Never throws; failures are counted in `stats`. A socket
   * with `flush` may hold datagrams back until `flush` (or at the latest the end of the current
   * microtask checkpoint); order is kept. The datagram is the socket's from then on (with
   * `flush`: until `flush` returns).
   */
  readonly send: (datagram: Uint8Array) => void
  /**
   * Sends what `send` queued, in one batch. The connection calls it after each drive of its engine.
   * A socket with `flush` is done with every datagram it was given once `flush` returns (sent, or
   * copied for a later send): the connection's senders then reuse that memory.
   */
  readonly flush?: () => void
  /**
   * Join (`true`) or leave the group: whether datagrams sent to it reach `listen`. Sending does not
   * need membership. Idempotent; completes once datagrams sent from then on are received (the
   * membership was checked when the socket opened, so an error here is rare).
   */
  readonly setJoined: (joined: boolean) => Effect.Effect<void, TransportError>
  /**
   * Start handing received datagrams to `handler` (one handler per socket; a second call replaces
   * it). Datagrams that arrive before the first call are queued (up to `queueCapacity`) and handed
   * over by it. Use `incoming` for a `Stream` instead.
   */
  readonly listen: (handler: DatagramHandler) => void
  readonly stats: () => SocketStats
}

/**
 * Socket options of one endpoint. Mirrors the relevant fields of `ConnectionConfig`.
 *
 * @since 0.1.0
 */
export interface OpenOptions {
  /** IPv4 multicast group. */
  readonly group: string
  readonly port: number
  /** IPv4 address of the interface to use; "0.0.0.0" lets the OS choose. */
  readonly interface: string
  readonly ttl: number
  readonly loopback: boolean
  readonly recvBufferSize: number
  readonly sendBufferSize: number
  /**
   * Whether the socket is a member of the group from the start (default `true`). A socket opened
   * with `false` checks that it could join (join and leave), then only sends until `setJoined(true)`.
   */
  readonly joined?: boolean
  /**
   * Datagrams queued between the socket and its handler before new ones are dropped (and counted):
   * the in-memory network's delivery queue; for UDP only what arrives before `listen`.
   */
  readonly queueCapacity?: number
}

/**
 * The datagrams a socket receives as a `Stream`, a chunk per socket wake-up (it `listen`s on the
 * socket, so it replaces any other handler). Convenient for tests and tools; a Connection drives
 * its engine from `listen` directly, without a fiber wake-up per batch.
 *
 * @since 0.1.0
 */
export const incoming = (socket: DatagramSocket): Stream.Stream<Datagram> =>
  Stream.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(Mailbox.make<Datagram>(), (mailbox) => mailbox.end),
      (mailbox) => {
        let batch: Array<Datagram> = []
        socket.listen({
          onDatagram: (data, address) => {
            batch.push({ data, address })
          },
          onBatchEnd: () => {
            if (batch.length === 0) return
            mailbox.unsafeOfferAll(Chunk.unsafeFromArray(batch))
            batch = []
          }
        })
        return Mailbox.toStream(mailbox)
      }
    )
  )

/**
 * @since 0.1.0
 * @category tags
 */
export class Transport extends Context.Tag("effect-distributor/Transport")<
  Transport,
  {
    /** Open an endpoint; it is closed (membership dropped, socket closed) when the scope closes. */
    readonly open: (options: OpenOptions) => Effect.Effect<DatagramSocket, TransportError, Scope.Scope>
  }
>() {}

/**
 * Real IP multicast over `node:dgram`.
 *
 * Each endpoint has two sockets: a receiving one bound to `group:port` with `reuseAddr` (so several
 * processes on one host can share the group) that joins the group, and a sending one bound to an
 * ephemeral port and `connect()`ed to `group:port` — a connected UDP socket skips the per-send route
 * lookup, which roughly halved p50 latency on loopback at 10k datagrams/s.
 *
 * The datagrams go through the native backend (`recvmmsg`/`sendmmsg`, one call into JavaScript per
 * batch read) when `udpBackend().backend` is `"native"`: Linux, the addon in native/udp built
 * (`npm run build:native`) and `DISTRIBUTOR_NATIVE` not `0`; otherwise through `node:dgram`.
 * Sockets are set up by `node:dgram` either way, so the errors are the same. Each socket's
 * `stats().backend` says which one it uses.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerUdp: Layer.Layer<Transport> = Layer.sync(Transport, () => ({
  open: internalNative.status().backend === "native" ? internalNative.open : internalUdp.open
}))

/**
 * `node:dgram` only, whatever `udpBackend` says (tests, comparisons).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerUdpDgram: Layer.Layer<Transport> = Layer.succeed(Transport, { open: internalUdp.open })

/**
 * Which backend `layerUdp` uses in this process, and why (e.g. "DISTRIBUTOR_NATIVE=0", the addon's
 * load error). Decided once, on first use.
 *
 * @since 0.1.0
 */
export const udpBackend = (): { readonly backend: UdpBackend; readonly reason: string } => internalNative.status()

/**
 * Options of the in-memory network.
 *
 * @since 0.1.0
 */
export type MemoryNetworkOptions = internalMemory.MemoryNetworkOptions

/**
 * An in-memory multicast network with seeded faults. Every socket opened on the same `group:port`
 * through one layer instance sees the datagrams of the others (and its own, when `loopback` is
 * set). Delays are slept on Effect's `Clock`, so `TestClock` drives them.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options: MemoryNetworkOptions = {}): Layer.Layer<Transport> =>
  Layer.scoped(
    Transport,
    Effect.map(internalMemory.makeNetwork(options), (network) => ({ open: network.open }))
  )

/**
 * Options of `layerLossy`: fractions (0..1) of datagrams dropped on purpose, and the seed of the
 * drop decisions (default 1).
 *
 * @since 0.1.0
 */
export type LossyOptions = internalLossy.LossyOptions

/**
 * What `stats()` of a socket opened through `layerLossy` returns: the wrapped socket's statistics
 * plus the datagrams dropped on purpose in each direction.
 *
 * @since 0.1.0
 */
export type LossySocketStats = internalLossy.LossySocketStats

/**
 * Simulated loss over a real (or in-memory) transport: wraps the `Transport` in context, dropping a
 * seeded fraction of sent datagrams before `send` and of received datagrams before they reach the
 * connection. The drops are counted in the socket statistics (`simulatedSendDrops`,
 * `simulatedReceiveDrops`; read them with `simulatedDrops`). Fractions outside [0, 1] are a defect.
 *
 * ```ts
 * Transport.layerLossy({ receiveLoss: 0.05, seed: 7 }).pipe(Layer.provide(Transport.layerUdp))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLossy = (options: LossyOptions): Layer.Layer<Transport, never, Transport> =>
  Layer.effect(
    Transport,
    Effect.map(Transport, (inner) => internalLossy.wrap(inner, options))
  )

/**
 * The simulated drops counted by a `layerLossy` socket, or `undefined` for any other socket.
 *
 * @since 0.1.0
 */
export const simulatedDrops = (stats: SocketStats): { readonly send: number; readonly receive: number } | undefined => {
  const s = stats as Partial<LossySocketStats>
  return typeof s.simulatedSendDrops === "number" && typeof s.simulatedReceiveDrops === "number"
    ? { send: s.simulatedSendDrops, receive: s.simulatedReceiveDrops }
    : undefined
}
