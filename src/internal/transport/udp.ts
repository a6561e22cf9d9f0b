/**
 * `node:dgram` implementation of the Transport: a receiving socket that joins the group and a
 * connected sending socket (see Transport.layerUdp for why two).
 *
 * The sockets are always created, bound and configured here (with their typed errors); a `HotPath`
 * (native.ts: recvmmsg / sendmmsg) may then take over reading the receiving socket and sending on
 * the sending one.
 */
import * as Dgram from "node:dgram"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { TransportError } from "../../DistributorError.js"
import type {
  Datagram,
  DatagramHandler,
  DatagramSocket,
  OpenOptions,
  Segmentation,
  UdpBackend
} from "../../Transport.js"
import { transportError } from "./shared.js"

const DEFAULT_QUEUE_CAPACITY = 65_536

const closeSocket = (socket: Dgram.Socket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    try {
      socket.close(() => resume(Effect.void))
    } catch {
      // already closed
      resume(Effect.void)
    }
  })

const bindSocket = (
  socket: Dgram.Socket,
  address: string,
  options: Dgram.BindOptions
): Effect.Effect<void, TransportError> =>
  Effect.async<void, TransportError>((resume) => {
    const onError = (err: Error) => resume(Effect.fail(transportError("Bind", address, err)))
    socket.once("error", onError)
    try {
      socket.bind(options, () => {
        socket.off("error", onError)
        resume(Effect.void)
      })
    } catch (err) {
      socket.off("error", onError)
      resume(Effect.fail(transportError("Bind", address, err)))
    }
  })

const trySync = <A>(reason: TransportError["reason"], address: string, f: () => A) =>
  Effect.try({ try: f, catch: (err) => transportError(reason, address, err) })

/** Linux reports twice the requested size (it counts bookkeeping overhead); compare like with like. */
const warnIfCapped = (kind: string, requested: number, granted: number, address: string) =>
  requested > 0 && granted < requested
    ? Effect.logWarning(
        `${kind} buffer on ${address}: requested ${requested} bytes, kernel granted ${granted}` +
          ` (raise net.core.${kind === "receive" ? "rmem_max" : "wmem_max"} to allow more)`
      )
    : Effect.void

const grantedSize = (read: () => number): number => {
  try {
    const n = read()
    return process.platform === "linux" ? Math.floor(n / 2) : n
  } catch {
    return 0
  }
}

/** What the receiving and sending sides need from this module to count and deliver. */
export interface HotPathContext {
  readonly group: string
  /** The sending socket's ip/port, when known (see `ownAddress` below): datagrams to skip. */
  readonly own: { readonly ip: string; readonly port: number } | undefined
  /**
   * One received datagram, in order; `address` is `ip:port`. Returns `false` when nothing keeps
   * `data` (DatagramHandler.onDatagram).
   */
  readonly deliver: (data: Uint8Array, address: string) => unknown
  /** The end of the datagrams read in one wake-up. */
  readonly endBatch: () => void
  readonly sendError: (message: string) => void
  /** GSO / GRO counters the hot path keeps (SocketStats.segmentation). */
  readonly segmentation: Segmentation
}

/** Takes over the per-datagram work of sockets that this module set up. */
export interface HotPath {
  readonly backend: UdpBackend
  /**
   * Starts reading the bound receiving socket instead of node:dgram (whose reading it stops);
   * returns what stops it again, to be called before the socket closes, or undefined when it could
   * not take over (node:dgram then keeps reading).
   */
  readonly receive: (socket: Dgram.Socket, context: HotPathContext) => (() => void) | undefined
  /** Send / flush / close for the connected sending socket, or undefined to use node:dgram's. */
  readonly sender: (
    socket: Dgram.Socket,
    context: HotPathContext
  ) => { readonly send: (d: Uint8Array) => void; readonly flush: () => void; readonly close: () => void } | undefined
}

export const open = (options: OpenOptions): Effect.Effect<DatagramSocket, TransportError, Scope.Scope> =>
  openWith(options, undefined)

export const openWith = (
  options: OpenOptions,
  hotPath: HotPath | undefined
): Effect.Effect<DatagramSocket, TransportError, Scope.Scope> =>
  Effect.gen(function* () {
    const group = `${options.group}:${options.port}`
    const iface = options.interface === "0.0.0.0" ? undefined : options.interface
    let queueDrops = 0
    let sendErrors = 0
    let lastSendError: string | undefined
    // The sending socket's address, once known: only when bound to a given interface, since a
    // socket bound to 0.0.0.0 does not know the source address its datagrams will carry.
    let ownAddress: string | undefined
    let ownPort = -1

    // Receive path: each datagram goes to the handler synchronously from the socket's "message"
    // event, and the end of the poll phase that read it (setImmediate) ends the batch. Before a
    // handler is set, datagrams wait in `early` (bounded by queueCapacity).
    const queueCapacity = options.queueCapacity ?? DEFAULT_QUEUE_CAPACITY
    let handler: DatagramHandler | undefined
    let early: Array<Datagram> = []
    let batchOpen = false
    let closed = false
    const endBatch = () => {
      batchOpen = false
      if (!closed && handler !== undefined) handler.onBatchEnd()
    }
    const listen = (h: DatagramHandler) => {
      handler = h
      if (early.length === 0) return
      const queued = early
      early = []
      for (let i = 0; i < queued.length; i++) h.onDatagram(queued[i].data, queued[i].address)
      h.onBatchEnd()
    }
    // The `ip:port` string of the last sender, kept while the sender stays the same: no string is
    // built per datagram.
    let lastIp = ""
    let lastPort = -1
    let lastAddress = ""

    // Receiving socket: bound to the group address (on Linux this filters out other groups that
    // share the port), reuseAddr so that every process on the host can join. Out of the group
    // (`joined: false`) there is no receiving socket at all: Linux delivers a group's datagrams to
    // every socket bound to its address and port once ANY socket on the host joined the group on
    // that interface (IP_MULTICAST_ALL, which node cannot turn off), so merely dropping the
    // membership would not keep the data away.
    // One received datagram, to the handler or (before `listen`) to `early`. node:dgram's reader
    // and the hot path's both end here; each ends its own batches.
    const deliver = (data: Uint8Array, address: string): unknown => {
      if (handler === undefined) {
        if (early.length < queueCapacity) early.push({ data, address })
        else queueDrops++
        return
      }
      return handler.onDatagram(data, address)
    }
    const onMessage = (data: Buffer, rinfo: Dgram.RemoteInfo) => {
      const port = rinfo.port
      const ip = rinfo.address
      // Our own datagrams, looped back by the kernel: the engine would drop them anyway (its
      // local subscribers are served directly), so skip them before they cost any work.
      if (port === ownPort && ip === ownAddress) return
      if (port !== lastPort || ip !== lastIp) {
        lastIp = ip
        lastPort = port
        lastAddress = `${ip}:${port}`
      }
      if (handler !== undefined && !batchOpen) {
        batchOpen = true
        setImmediate(endBatch)
      }
      deliver(data, lastAddress)
    }
    const hotEndBatch = () => {
      if (!closed && handler !== undefined) handler.onBatchEnd()
    }
    const segmentation: Segmentation = { gsoSends: 0, gsoDatagrams: 0, groReads: 0, groDatagrams: 0, reusedReads: 0 }
    const hotContext = (): HotPathContext => ({
      group,
      segmentation,
      own: ownAddress !== undefined ? { ip: ownAddress, port: ownPort } : undefined,
      deliver,
      endBatch: hotEndBatch,
      sendError: (message) => {
        sendErrors++
        lastSendError = message
      }
    })
    // The receiving socket's hot-path reader, stopped before that socket closes. It starts once
    // the sending socket (whose datagrams it skips) is bound.
    let stopHotReceive: (() => void) | undefined
    let senderReady = false
    let hotReceiveFailed = false
    const startHotReceive = (socket: Dgram.Socket) => {
      if (hotPath === undefined || !senderReady) return
      stopHotReceive = hotPath.receive(socket, hotContext())
      if (stopHotReceive === undefined) hotReceiveFailed = true
    }
    const makeReceiver = () => {
      const socket = Dgram.createSocket({ type: "udp4", reuseAddr: true })
      socket.on("message", onMessage)
      // After bind, socket errors are asynchronous and not fatal for UDP; keep the loop alive.
      socket.on("error", (err) => {
        lastSendError = err.message
      })
      return socket
    }
    const bindAddress = process.platform === "win32" ? undefined : options.group
    const bindOptions = { port: options.port, ...(bindAddress ? { address: bindAddress } : {}) }
    const openReceiver: Effect.Effect<Dgram.Socket, TransportError> = Effect.suspend(() => {
      const socket = makeReceiver()
      return bindSocket(socket, group, bindOptions).pipe(
        Effect.zipRight(trySync("Membership", group, () => socket.addMembership(options.group, iface))),
        Effect.zipRight(
          options.recvBufferSize > 0
            ? trySync("SocketOption", group, () => socket.setRecvBufferSize(options.recvBufferSize))
            : Effect.void
        ),
        Effect.as(socket),
        Effect.tapError(() => closeSocket(socket))
      )
    })
    const release = (socket: Dgram.Socket) => {
      if (stopHotReceive !== undefined) {
        stopHotReceive()
        stopHotReceive = undefined
      }
      try {
        socket.dropMembership(options.group, iface)
      } catch {
        // the group may already be gone with the interface; closing is what matters
      }
      try {
        socket.close()
      } catch {
        // already closed
      }
    }
    // Opened (and so checked: a bad group or interface fails here, typed) even when starting out
    // of the group; then closed until `setJoined(true)`.
    let hotSender: ReturnType<HotPath["sender"]>
    let receiver: Dgram.Socket | undefined = yield* openReceiver
    const recvBufferSize = grantedSize(() => receiver!.getRecvBufferSize())
    if (options.joined === false) {
      yield* closeSocket(receiver)
      receiver = undefined
    }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        if (receiver !== undefined) release(receiver)
        receiver = undefined
      })
    )

    // Sending socket: ephemeral port on the chosen interface, connected to group:port.
    const sender = yield* Effect.acquireRelease(
      Effect.gen(function* () {
        const socket = Dgram.createSocket({ type: "udp4" })
        yield* bindSocket(socket, group, { port: 0, ...(iface ? { address: iface } : {}) }).pipe(
          Effect.tapError(() => closeSocket(socket))
        )
        yield* Effect.gen(function* () {
          if (iface) yield* trySync("SocketOption", group, () => socket.setMulticastInterface(iface))
          yield* trySync("SocketOption", group, () => socket.setMulticastTTL(options.ttl))
          yield* trySync("SocketOption", group, () => socket.setMulticastLoopback(options.loopback))
          if (options.sendBufferSize > 0) {
            yield* trySync("SocketOption", group, () => socket.setSendBufferSize(options.sendBufferSize))
          }
          yield* Effect.async<void, TransportError>((resume) => {
            try {
              socket.connect(options.port, options.group, (err?: Error) =>
                resume(err ? Effect.fail(transportError("Bind", group, err)) : Effect.void)
              )
            } catch (err) {
              resume(Effect.fail(transportError("Bind", group, err)))
            }
          })
        }).pipe(Effect.tapError(() => closeSocket(socket)))
        socket.on("error", (err) => {
          sendErrors++
          lastSendError = err.message
        })
        return socket
      }),
      // What the hot path still holds leaves before the socket closes.
      (socket) =>
        Effect.zipRight(
          Effect.sync(() => hotSender?.close()),
          closeSocket(socket)
        )
    )

    const sendBufferSize = grantedSize(() => sender.getSendBufferSize())
    yield* warnIfCapped("receive", options.recvBufferSize, recvBufferSize, group)
    yield* warnIfCapped("send", options.sendBufferSize, sendBufferSize, group)

    const local = sender.address()
    if (iface !== undefined) {
      ownAddress = local.address
      ownPort = local.port
    }
    senderReady = true
    if (receiver !== undefined) startHotReceive(receiver)
    // The callback costs a process.nextTick per datagram, but without one node:dgram drops send
    // errors silently, and `sendErrors` is what tells a user the kernel refused datagrams.
    const onSent = (err: Error | null) => {
      if (err) {
        sendErrors++
        lastSendError = err.message
      }
    }
    const dgramSend = (datagram: Uint8Array): void => {
      try {
        sender.send(datagram, onSent)
      } catch (err) {
        // Only after close (ERR_SOCKET_DGRAM_NOT_RUNNING): count it, never throw into the engine.
        onSent(err as Error)
      }
    }
    hotSender = hotPath?.sender(sender, hotContext())
    const send = hotSender?.send ?? dgramSend
    const flush = hotSender?.flush

    // Joining opens a receiving socket again (the group and interface were checked at open);
    // leaving closes it.
    const setJoined = (join: boolean): Effect.Effect<void, TransportError> =>
      Effect.suspend(() => {
        if (closed || join === (receiver !== undefined)) return Effect.void
        if (!join) {
          release(receiver!)
          receiver = undefined
          return Effect.void
        }
        return Effect.map(openReceiver, (socket) => {
          if (closed || receiver !== undefined) return release(socket)
          receiver = socket
          startHotReceive(socket)
        })
      })

    return {
      group,
      localAddress: `${local.address}:${local.port}`,
      send,
      ...(flush !== undefined ? { flush } : {}),
      setJoined,
      listen,
      stats: () => ({
        sendErrors,
        lastSendError,
        queueDrops,
        recvBufferSize,
        sendBufferSize,
        backend: hotPath !== undefined && hotSender !== undefined && !hotReceiveFailed ? hotPath.backend : "dgram",
        ...(hotPath !== undefined ? { segmentation: { ...segmentation } } : {})
      })
    } satisfies DatagramSocket
  })
