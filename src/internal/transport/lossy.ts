/**
 * Simulated datagram loss on top of any Transport (`Transport.layerLossy`): a seeded fraction of
 * sent datagrams never reaches `send`, and a seeded fraction of received datagrams never reaches
 * the connection. Used by the command-line tools to exercise NAK recovery over real sockets.
 *
 * Hot path: one PRNG draw per datagram and nothing else; received datagrams are filtered inside
 * the socket's synchronous handler. A direction with no loss is not wrapped at all.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { TransportError } from "../../DistributorError.js"
import type { DatagramHandler, DatagramSocket, OpenOptions, SocketStats } from "../../Transport.js"
import { makePrng, type Seed } from "../sim/prng.js"

export interface LossyOptions {
  /** Fraction (0..1) of sent datagrams dropped before the socket. Default 0. */
  readonly sendLoss?: number
  /** Fraction (0..1) of received datagrams dropped before the connection. Default 0. */
  readonly receiveLoss?: number
  /** Seed of the drop decisions. Default 1. */
  readonly seed?: Seed
}

/** What a lossy socket's `stats()` returns: the wrapped socket's stats plus what was dropped here. */
export interface LossySocketStats extends SocketStats {
  readonly simulatedSendDrops: number
  readonly simulatedReceiveDrops: number
}

const checkFraction = (name: string, value: number | undefined): number => {
  const v = value ?? 0
  if (!(v >= 0 && v <= 1)) throw new RangeError(`Transport.layerLossy: ${name} must be a fraction in [0, 1], got ${v}`)
  return v
}

export interface LossyOpen {
  readonly open: (options: OpenOptions) => Effect.Effect<DatagramSocket, TransportError, Scope.Scope>
}

/** Wraps `open` of an existing transport. Each opened socket gets its own PRNG streams. */
export const wrap = (inner: LossyOpen, options: LossyOptions): LossyOpen => {
  const sendLoss = checkFraction("sendLoss", options.sendLoss)
  const receiveLoss = checkFraction("receiveLoss", options.receiveLoss)
  const root = makePrng(options.seed ?? 1)
  let sockets = 0
  return {
    open: (openOptions) =>
      Effect.map(inner.open(openOptions), (socket) => {
        // Forked by socket number and direction: the fate of a received datagram does not depend
        // on how many were sent.
        const n = sockets++
        const sendPrng = root.fork(`socket-${n}/send`)
        const receivePrng = root.fork(`socket-${n}/receive`)
        let simulatedSendDrops = 0
        let simulatedReceiveDrops = 0

        const send =
          sendLoss > 0
            ? (datagram: Uint8Array) => {
                if (sendPrng.next() < sendLoss) simulatedSendDrops++
                else socket.send(datagram)
              }
            : socket.send

        const listen =
          receiveLoss > 0
            ? (handler: DatagramHandler) =>
                socket.listen({
                  onDatagram: (data, address) => {
                    if (receivePrng.next() >= receiveLoss) return handler.onDatagram(data, address)
                    simulatedReceiveDrops++
                    return false
                  },
                  onBatchEnd: handler.onBatchEnd
                })
            : socket.listen

        return {
          group: socket.group,
          localAddress: socket.localAddress,
          send,
          ...(socket.flush !== undefined ? { flush: socket.flush } : {}),
          setJoined: socket.setJoined,
          listen,
          stats: (): LossySocketStats => ({ ...socket.stats(), simulatedSendDrops, simulatedReceiveDrops })
        } satisfies DatagramSocket
      })
  }
}
