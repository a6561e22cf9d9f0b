/**
 * In-memory multicast network for `Transport.layerMemory`. Faults come from the simulator's
 * `LinkModel` (seeded loss, bursts, duplication, reordering, delay), one independent model per
 * ordered pair of sockets; delays are slept on Effect's Clock so `TestClock` drives them.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import type { TransportError } from "../../DistributorError.js"
import type { Datagram, DatagramHandler, DatagramSocket, OpenOptions } from "../../Transport.js"
import { type LinkConfig, LinkModel } from "../sim/link.js"
import { makePrng, type Seed } from "../sim/prng.js"

export interface MemoryNetworkOptions {
  /** Seed of every fault decision. Default 1. */
  readonly seed?: Seed
  /** Link behaviour between every pair of sockets. Default: a perfect link with no delay. */
  readonly link?: Partial<LinkConfig>
  /** Per-pair override (by socket address, e.g. `"mem-2:5197"`), merged over `link`. */
  readonly links?: (from: string, to: string) => Partial<LinkConfig> | undefined
}

interface MemorySocket {
  readonly address: string
  readonly loopback: boolean
  readonly incoming: Mailbox.Mailbox<Datagram>
  queueDrops: number
}

export interface MemoryNetwork {
  readonly open: (options: OpenOptions) => Effect.Effect<DatagramSocket, TransportError, Scope.Scope>
}

export const makeNetwork = (options: MemoryNetworkOptions): Effect.Effect<MemoryNetwork, never, Scope.Scope> =>
  Effect.gen(function* () {
    const prng = makePrng(options.seed ?? 1)
    const groups = new Map<string, Set<MemorySocket>>()
    const links = new Map<string, LinkModel>()
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const clock = yield* Effect.clock
    let nextHost = 1

    const linkOf = (from: string, to: string) => {
      const id = `${from}>${to}`
      let link = links.get(id)
      if (link === undefined) {
        const config = { delayMs: 0, ...options.link, ...options.links?.(from, to) }
        link = new LinkModel(config, prng.fork(id), from, to)
        links.set(id, link)
      }
      return link
    }

    const deliver = (target: MemorySocket, data: Uint8Array, address: string) => {
      // A copy per receiver, as a real network gives: no receiver can see another's mutations.
      if (!target.incoming.unsafeOffer({ data: data.slice(), address })) target.queueDrops++
    }

    const open = (o: OpenOptions): Effect.Effect<DatagramSocket, TransportError, Scope.Scope> =>
      Effect.gen(function* () {
        const group = `${o.group}:${o.port}`
        const address = `mem-${nextHost++}:${o.port}`
        const incoming = yield* Mailbox.make<Datagram>({ capacity: o.queueCapacity ?? 65_536, strategy: "dropping" })
        const self: MemorySocket = { address, loopback: o.loopback, incoming, queueDrops: 0 }
        let members = groups.get(group)
        if (members === undefined) groups.set(group, (members = new Set()))
        const peers = members
        // Members receive; any socket on the group may send.
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            if (o.joined !== false) peers.add(self)
          }),
          () =>
            Effect.sync(() => {
              peers.delete(self)
              incoming.unsafeDone(Exit.void)
            })
        )
        const setJoined = (join: boolean) => {
          if (!open) return undefined
          if (join) peers.add(self)
          else peers.delete(self)
          return undefined
        }
        // Delivery is asynchronous, as on a real network (a send never re-enters a receiver from
        // inside its own engine call): a fiber in the socket's scope hands each queued chunk to the
        // handler, one batch per wake-up.
        let handler: DatagramHandler | undefined
        const ready = yield* Effect.makeLatch(false)
        const pump = Effect.zipRight(
          ready.await,
          Effect.forever(
            Effect.flatMap(incoming.takeAll, ([chunk, done]) =>
              Effect.suspend(() => {
                const h = handler!
                for (const d of chunk) h.onDatagram(d.data, d.address)
                h.onBatchEnd()
                return done ? Effect.interrupt : Effect.void
              })
            )
          )
        )
        yield* Effect.forkScoped(pump)
        const listen = (h: DatagramHandler) => {
          handler = h
          ready.unsafeOpen()
        }
        let open = true
        const send = (datagram: Uint8Array) => {
          if (!open) return
          const now = clock.unsafeCurrentTimeMillis()
          for (const peer of peers) {
            if (peer === self && !self.loopback) continue
            const delays = linkOf(address, peer.address).fate(datagram, now)
            for (let i = 0; i < delays.length; i++) {
              const delay = delays[i]
              if (delay <= 0) deliver(peer, datagram, address)
              else
                run(
                  Effect.delay(
                    Effect.sync(() => deliver(peer, datagram, address)),
                    delay
                  )
                )
            }
          }
        }
        yield* Effect.addFinalizer(() => Effect.sync(() => (open = false)))
        return {
          group,
          localAddress: address,
          send,
          setJoined,
          listen,
          stats: () => ({
            sendErrors: 0,
            lastSendError: undefined,
            queueDrops: self.queueDrops,
            recvBufferSize: 0,
            sendBufferSize: 0
          })
        } satisfies DatagramSocket
      })

    return { open }
  })
