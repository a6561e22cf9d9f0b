/**
 * `node:dgram` implementation of the Transport: a receiving socket that joins the group and a
 * connected sending socket (see Transport.layerUdp for why two).
 */
import * as Dgram from "node:dgram"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import type { TransportError } from "../../DistributorError.js"
import type { Datagram, DatagramSocket, OpenOptions } from "../../Transport.js"
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

export const open = (options: OpenOptions): Effect.Effect<DatagramSocket, TransportError, Scope.Scope> =>
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

    const incoming = yield* Mailbox.make<Datagram>({
      capacity: options.queueCapacity ?? DEFAULT_QUEUE_CAPACITY,
      strategy: "dropping"
    })

    // Receiving socket: bound to the group address (on Linux this filters out other groups that
    // share the port), reuseAddr so that every process on the host can join.
    const receiver = yield* Effect.acquireRelease(
      Effect.gen(function* () {
        const socket = Dgram.createSocket({ type: "udp4", reuseAddr: true })
        const bindAddress = process.platform === "win32" ? undefined : options.group
        yield* bindSocket(socket, group, { port: options.port, ...(bindAddress ? { address: bindAddress } : {}) }).pipe(
          Effect.tapError(() => closeSocket(socket))
        )
        yield* Effect.gen(function* () {
          yield* trySync("Membership", group, () => socket.addMembership(options.group, iface))
          if (options.recvBufferSize > 0) {
            yield* trySync("SocketOption", group, () => socket.setRecvBufferSize(options.recvBufferSize))
          }
        }).pipe(Effect.tapError(() => closeSocket(socket)))
        // Datagrams read in one poll phase are handed over together at the end of it (setImmediate):
        // one wake-up of the receive fiber and one chunk per batch instead of one per datagram,
        // which costs more than the engine's work on a datagram.
        let batch: Array<Datagram> = []
        const handOver = () => {
          const ready = batch
          batch = []
          queueDrops += incoming.unsafeOfferAll(ready).length
        }
        socket.on("message", (data, rinfo) => {
          // Our own datagrams, looped back by the kernel: the engine would drop them anyway (its
          // local subscribers are served directly), so skip them before they cost a wake-up.
          if (rinfo.port === ownPort && rinfo.address === ownAddress) return
          if (batch.length === 0) setImmediate(handOver)
          batch.push({ data, address: `${rinfo.address}:${rinfo.port}` })
        })
        // After bind, socket errors are asynchronous and not fatal for UDP; keep the loop alive.
        socket.on("error", (err) => {
          lastSendError = err.message
        })
        return socket
      }),
      (socket) =>
        Effect.suspend(() => {
          try {
            socket.dropMembership(options.group, iface)
          } catch {
            // the group may already be gone with the interface; closing is what matters
          }
          return closeSocket(socket)
        }).pipe(Effect.zipRight(incoming.done(Exit.void)))
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
      closeSocket
    )

    const recvBufferSize = grantedSize(() => receiver.getRecvBufferSize())
    const sendBufferSize = grantedSize(() => sender.getSendBufferSize())
    yield* warnIfCapped("receive", options.recvBufferSize, recvBufferSize, group)
    yield* warnIfCapped("send", options.sendBufferSize, sendBufferSize, group)

    const local = sender.address()
    if (iface !== undefined) {
      ownAddress = local.address
      ownPort = local.port
    }
    const onSent = (err: Error | null) => {
      if (err) {
        sendErrors++
        lastSendError = err.message
      }
    }
    const send = (datagram: Uint8Array): void => {
      try {
        sender.send(datagram, onSent)
      } catch (err) {
        // Only after close (ERR_SOCKET_DGRAM_NOT_RUNNING): count it, never throw into the engine.
        onSent(err as Error)
      }
    }

    return {
      group,
      localAddress: `${local.address}:${local.port}`,
      send,
      incoming: Mailbox.toStream(incoming),
      stats: () => ({ sendErrors, lastSendError, queueDrops, recvBufferSize, sendBufferSize })
    } satisfies DatagramSocket
  })
