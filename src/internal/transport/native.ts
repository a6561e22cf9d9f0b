/**
 * The native UDP backend (`Transport.layerUdp` on Linux when native/udp is built): the sockets are
 * node:dgram's, set up by udp.ts exactly as for the dgram backend, and only the per-datagram hot
 * path moves to the addon.
 *
 * Why keep node:dgram for the sockets rather than create them in C: binding, membership, buffer
 * sizes, TTL, loopback and connect keep their typed `TransportError`s and their behaviour on every
 * platform, and the C side stays ~350 lines of batching. node:dgram's cost is per datagram (a
 * `sendmsg`, a libuv request and a `process.nextTick` per send; an epoll round, a `recvmsg`, a
 * Buffer and a `message` event per receive), and that is what the addon replaces:
 *
 * - receive: node's reading of the socket is stopped (which takes the fd out of libuv's watcher
 *   table) and a `uv_poll` on a duplicate of the fd (udp.c says why) reads up to 64 messages per
 *   `recvmmsg` (with UDP_GRO a message can be a run of up to 64 datagrams, split in C), skips our
 *   own looped-back ones, and makes ONE call into JavaScript per read with one ArrayBuffer
 *   (datagrams back to back) and offsets / lengths / source in a reused Uint32Array. The batch
 *   ends with that call, which says whether the handler kept any of them: if not, the next read
 *   goes into the same buffer (the fragments of large updates; packed updates are views the
 *   engine hands on), and after 64 such reads in a row the buffer is the memory recvmmsg wrote,
 *   with no copy, until the handler keeps something of it.
 * - send: `send` only queues; `flush` (after each drive of the engine, see connection.ts, or at
 *   the latest in a microtask) passes the queue where it lies (no copy) to one `sendBatch` call
 *   into C, a loop of `sendmmsg`, each run of equal-size datagrams (the fragments of a large update,
 *   same-size updates) as ONE GSO message (UDP_SEGMENT) that the kernel cuts into exactly those
 *   datagrams; if the route refuses GSO (EIO / EINVAL / EMSGSIZE), the socket stops using it.
 *   When the kernel's send buffer is full (EAGAIN) the rest goes, in order,
 *   to node:dgram's `send`, which waits for the socket to be writable; later datagrams follow it
 *   there until node has sent them all, so order holds. Other errors are counted per datagram, as
 *   node:dgram's callback does.
 */
import type * as Dgram from "node:dgram"
import { createRequire } from "node:module"
import * as os from "node:os"
import { join } from "node:path"
import * as Util from "node:util"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { TransportError } from "../../DistributorError.js"
import type { DatagramSocket, OpenOptions, UdpBackend } from "../../Transport.js"
import { findAddon, nativeDisabled } from "../addon.js"
import { useResidentMemory } from "../slab.js"
import { type HotPath, openWith } from "./udp.js"

/** The addon's functions (native/udp/src/udp.c). */
export interface Addon {
  readonly rxOpen: (
    fd: number,
    ownIp: number,
    ownPort: number,
    meta: Uint32Array,
    /** Returns whether nothing keeps a view of `buffer`: the addon may then read the next round into it. */
    callback: (buffer: ArrayBuffer, count: number, runs: number, inRuns: number) => boolean
  ) => unknown
  readonly rxClose: (handle: unknown) => void
  /**
   * Sends datagrams where they lie: datagram i is `lengths[i]` bytes at `offsets[i]` of
   * `bases[which[i]]`. Returns how many left; `status` = [errno of the next, GSO sends, their datagrams].
   */
  readonly sendBatch: (
    fd: number,
    bases: ReadonlyArray<ArrayBufferLike>,
    which: Uint32Array,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count: number,
    status: Int32Array,
    gso: boolean
  ) => number
  /** An ArrayBuffer of `size` (at most 1 MiB) bytes of resident memory, not zero-filled (pool.c). */
  readonly poolAlloc?: (size: number) => ArrayBuffer
  /** [blocks made, reused, put back, freed over the pool's cap, bytes cached now] (pool.c). */
  readonly poolStats?: (out: Float64Array) => void
}

/** Messages per recvmmsg (RX_VLEN in udp.c), each up to 64 datagrams (a GRO run); 4 words of meta each. */
const RX_VLEN = 64
const RX_META = RX_VLEN * 64
/** Datagrams per sendBatch call at most (TX_MAX in udp.c). */
const BATCH_DATAGRAMS = 1024
const { EAGAIN, EWOULDBLOCK, EIO, EINVAL, EMSGSIZE } = os.constants.errno

const ADDON = join("native", "udp", "build", "Release", "udp.node")

let cached: { readonly backend: UdpBackend; readonly reason: string; readonly addon?: Addon } | undefined

/** Loads the addon once (where it is looked for: addon.ts). */
const load = (): NonNullable<typeof cached> => {
  if (nativeDisabled()) return { backend: "dgram", reason: "DISTRIBUTOR_NATIVE=0" }
  if (process.platform !== "linux") return { backend: "dgram", reason: `not Linux (${process.platform})` }
  const path = findAddon(ADDON)
  if (path === undefined) return { backend: "dgram", reason: "addon not built (npm run build:native)" }
  try {
    const addon = createRequire(import.meta.url)(path) as Addon
    if (typeof addon.rxOpen !== "function" || typeof addon.sendBatch !== "function") {
      return { backend: "dgram", reason: `${path}: not the UDP addon` }
    }
    // Reassembled updates land in resident memory (slab.ts `unzeroed`), for every receiver.
    if (typeof addon.poolAlloc === "function") useResidentMemory(addon.poolAlloc)
    return { backend: "native", reason: path, addon }
  } catch (err) {
    return { backend: "dgram", reason: `${path}: ${err instanceof Error ? err.message : String(err)}` }
  }
}

export const status = (): { readonly backend: UdpBackend; readonly reason: string } => {
  cached ??= load()
  return { backend: cached.backend, reason: cached.reason }
}

/** node:dgram's libuv handle of a socket (its `fd`, `recvStop`), found by its internal state symbol. */
interface UdpHandle {
  readonly fd: number
  readonly recvStop: () => number
  readonly recvStart: () => number
}
const handleOf = (socket: Dgram.Socket): UdpHandle | undefined => {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol")
  const handle = sym && (socket as unknown as Record<symbol, { handle?: UdpHandle }>)[sym]?.handle
  return handle && typeof handle.fd === "number" && handle.fd >= 0 && typeof handle.recvStop === "function"
    ? handle
    : undefined
}

const ipToNumber = (ip: string): number => {
  const p = ip.split(".").map(Number)
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0
}

/** `ip:port` strings by 2^16 * ip + port: the same few senders come back in every batch. */
const addresses = new Map<number, string>()
const addressOf = (ip: number, port: number): string => {
  const key = ip * 65536 + port
  let a = addresses.get(key)
  if (a === undefined) {
    if (addresses.size >= 4096) addresses.clear()
    a = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}:${port}`
    addresses.set(key, a)
  }
  return a
}

const errnoName = (errno: number): string => {
  try {
    return Util.getSystemErrorName(-errno)
  } catch {
    return `errno ${errno}`
  }
}

/** What the send queue's safety-net flush is chained on (a promise reaction, see `send`). */
const resolved = Promise.resolve()

/** The hot path over `addon` (exported for tests, which give it a fake one). */
export const makeHotPath = (addon: Addon): HotPath => ({
  backend: "native",
  receive: (socket, context) => {
    const handle = handleOf(socket)
    if (handle === undefined) return undefined
    const meta = new Uint32Array(RX_META * 4)
    const { deliver, endBatch, segmentation } = context
    // The buffer of the last round, when it went back to the addon (to count its reuse).
    let returned: ArrayBuffer | undefined
    const onBatch = (buffer: ArrayBuffer, count: number, runs: number, inRuns: number): boolean => {
      // Called from C straight out of libuv: nothing may throw out of here.
      segmentation.groReads += runs
      segmentation.groDatagrams += inRuns
      if (buffer === returned) segmentation.reusedReads++
      // The buffer comes back to the addon only if the handler kept none of its datagrams.
      let free = true
      try {
        // A round is mostly one sender's run: its address is looked up once, not per datagram (a
        // Map lookup by a non-Smi key was 2.6 % of a 64 KiB subscriber).
        let ip = -1
        let port = -1
        let address = ""
        // Plain Uint8Array views (as the handler's type says): a Buffer view costs a FastBuffer
        // construction here and in every subarray the decoders take of it.
        for (let i = 0, j = 0; i < count; i++, j += 4) {
          if (meta[j + 2] !== ip || meta[j + 3] !== port) {
            ip = meta[j + 2]
            port = meta[j + 3]
            address = addressOf(ip, port)
          }
          if (deliver(new Uint8Array(buffer, meta[j], meta[j + 1]), address) !== false) free = false
        }
      } catch {
        // deliver does not throw (the handler's contract); a broken one must not take the loop down
        free = false
      }
      try {
        endBatch()
      } catch {
        // as above
      }
      returned = free ? buffer : undefined
      return free
    }
    handle.recvStop()
    let rx: unknown
    try {
      rx = addon.rxOpen(
        handle.fd,
        context.own ? ipToNumber(context.own.ip) : 0,
        context.own ? context.own.port : -1,
        meta,
        onBatch
      )
    } catch {
      handle.recvStart()
      return undefined
    }
    return () => addon.rxClose(rx)
  },
  sender: (socket, context) => {
    const handle = handleOf(socket)
    if (handle === undefined) return undefined
    const fd = handle.fd
    // Where each datagram of a batch lies: no copy, the addon sends from the datagrams' own memory.
    // Written by index and cut to length, never emptied: `length = 0` drops the backing store in V8
    // and the next write allocates another, once per flush. Entries are cleared after each call so
    // that no datagram's memory (a whole large update's, say) stays reachable from here.
    const bases: Array<ArrayBufferLike | undefined> = []
    const which = new Uint32Array(BATCH_DATAGRAMS)
    const offsets = new Uint32Array(BATCH_DATAGRAMS)
    const lengths = new Uint32Array(BATCH_DATAGRAMS)
    // [errno of the datagram that did not go, GSO messages sent, their datagrams]
    const errno = new Int32Array(3)
    const { segmentation } = context
    const { group } = context
    // Runs of equal-size datagrams go out as one GSO send each, until the route refuses it.
    let gso = true
    let queue: Array<Uint8Array> = []
    let scheduled = false
    let closed = false
    // Datagrams handed to node:dgram after EAGAIN and not sent yet: while there are any, later
    // ones go the same way, behind them.
    let viaNode = 0
    const onNodeSent = (err: Error | null) => {
      viaNode--
      if (err) context.sendError(err.message)
    }
    const nodeSend = (d: Uint8Array) => {
      viaNode++
      try {
        // A copy: node:dgram sends later, and once `flush` returns the sender may reuse `d`'s
        // memory (Transport.ts `flush`). Only after EAGAIN, so rare.
        socket.send(Uint8Array.prototype.slice.call(d), onNodeSent)
      } catch (err) {
        onNodeSent(err as Error)
      }
    }
    const flush = () => {
      if (queue.length === 0) return
      const q = queue
      queue = []
      let i = 0
      while (i < q.length) {
        if (viaNode > 0) {
          while (i < q.length) nodeSend(q[i++])
          break
        }
        let n = 0
        let nb = 0
        let last: ArrayBufferLike | undefined
        while (i + n < q.length && n < BATCH_DATAGRAMS) {
          const d = q[i + n]
          if (d.buffer !== last) {
            last = d.buffer
            bases[nb++] = last
          }
          which[n] = nb - 1
          offsets[n] = d.byteOffset
          lengths[n++] = d.length
        }
        if (bases.length !== nb) bases.length = nb
        let sent: number
        try {
          sent = addon.sendBatch(fd, bases as Array<ArrayBufferLike>, which, offsets, lengths, n, errno, gso)
          segmentation.gsoSends += errno[1]
          segmentation.gsoDatagrams += errno[2]
        } catch (err) {
          // Only a bug in the arguments; node:dgram takes what is left.
          context.sendError(err instanceof Error ? err.message : String(err))
          while (i < q.length) nodeSend(q[i++])
          break
        } finally {
          bases.fill(undefined)
        }
        i += sent
        if (sent < n) {
          const e = errno[0]
          if (gso && (e === EIO || e === EINVAL || e === EMSGSIZE)) {
            // This route cannot segment (no checksum offload, a segment above its MTU): the rest,
            // and everything after, one datagram per message.
            gso = false
            continue
          }
          if (e === EAGAIN || e === EWOULDBLOCK) {
            // The send buffer is full: node:dgram queues the rest in libuv until it is writable.
            while (i < q.length) nodeSend(q[i++])
            break
          }
          // That datagram is lost, as node:dgram's callback would report it; the rest go on.
          context.sendError(`send ${errnoName(e)} ${group}`)
          i++
        }
      }
    }
    // The owner flushes after each drive; the microtask only covers a send outside one. It stays
    // scheduled until it runs, so the drives of one macrotask share it, and it is a plain promise
    // reaction: `queueMicrotask` builds an AsyncResource and a bound function per call (~13 % of
    // a publisher's allocation at one 64 B update per datagram).
    const checkpoint = () => {
      scheduled = false
      flush()
    }
    const send = (d: Uint8Array) => {
      if (closed) return context.sendError(`send after close ${group}`)
      if (viaNode > 0 && queue.length === 0) return nodeSend(d)
      queue.push(d)
      if (!scheduled) {
        scheduled = true
        resolved.then(checkpoint)
      }
    }
    const close = () => {
      flush()
      closed = true
    }
    return { send, flush, close }
  }
})

let path: HotPath | undefined

/** `open` of the native backend: falls back to node:dgram where the addon is not available. */
export const open = (options: OpenOptions): Effect.Effect<DatagramSocket, TransportError, Scope.Scope> => {
  cached ??= load()
  if (cached.addon !== undefined) path ??= makeHotPath(cached.addon)
  return openWith(options, path)
}
