/**
 * One publisher or subscriber process of the benchmark suite (spawned by bench/run.ts).
 *
 *   node --import tsx bench/worker.ts '<WorkerArgs as JSON>'
 *
 * Protocol on stdio, one JSON object a line on stdout:
 * - both roles print `{"ready":true}` once set up (a subscriber: once subscribed).
 * - publisher: waits for `go` on stdin, runs the load, prints its result, then waits for `exit`
 *   (it stays up meanwhile so that it still answers NAKs) and closes.
 * - subscriber: counts what arrives; on `stop <sent>` it waits until it has `sent` distinct
 *   messages or has been idle for `idleMs`, prints its result and exits. With `clients: K` it runs
 *   K subscribers (connections, gateway clients) in the one process and prints K results.
 * - gateway (ours): a Distributor connection served by a `Gateway`; prints `{"ready":true,"url":…}`,
 *   on `go` starts counting its CPU, on `exit` prints `{"final":{…}}` and closes.
 *
 * Every message carries its sequence number (u32 at 0) and its send time (f64 µs at 4) from
 * `process.hrtime` — CLOCK_MONOTONIC, one time base for every process on the machine — so one-way
 * latency is `receive time - send time` with no clock sync. The single update of the "once" mode
 * is filled with a pattern after that header, which subscribers check.
 */
import * as Dgram from "node:dgram"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { createInterface } from "node:readline"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Connection from "../src/Connection.js"
import * as Distributor from "../src/Distributor.js"
import * as Gateway from "../src/Gateway.js"
import * as GatewayClient from "../src/GatewayClient.js"
import * as Transport from "../src/Transport.js"

/**
 * `ours0`: effect-distributor with holdback off (`holdbackDelayMs: 0`), for the latency scenario;
 * `ours65k`: with `segmentSize: 65000` (loopback / jumbo frames), for the throughput scenario.
 * `oursNode`: the default configuration on the node:dgram UDP backend even where the native one
 * (native/udp) is built, to compare the two.
 */
export type System =
  | "ours"
  | "ours0"
  | "ours65k"
  | "oursSec"
  | "oursAuth"
  | "oursNode"
  | "dgram"
  | "zeromq"
  | "nats"
  | "redis"

export interface WorkerArgs {
  readonly role: "pub" | "sub" | "gateway"
  /** subscriber: subscribers run in this process (default 1); each reports its own result. */
  readonly clients?: number
  /** subscriber, ours: read through the gateway at this URL (GatewayClient) instead of multicast. */
  readonly gateway?: string
  readonly system: System
  /** Message size in bytes (payload; for ours the topic comes on top). */
  readonly size: number
  /** Multicast group/port (ours, dgram) or the TCP port of the server / ZeroMQ publisher. */
  readonly group: string
  readonly port: number
  /**
   * publisher: "burst" sends as fast as it can; "paced" sends `rate` messages/s; "once" sends one
   * message of `size` bytes, whose pattern subscribers check.
   */
  readonly mode: "burst" | "paced" | "once"
  readonly rate: number
  readonly durationMs: number
  /** burst: messages per batch; paced: 1 = one publish call per message, >1 = the due messages as one batch. */
  readonly batch: number
  /** subscriber: keep latency samples. */
  readonly latency: boolean
  /** subscriber: idle time after which it reports, once asked to stop. */
  readonly idleMs: number
  /** subscriber: longest wait for the tail, once asked to stop. */
  readonly waitMs: number
  /** ours, publisher: fraction of the publisher's datagrams dropped before the socket (Transport.layerLossy). */
  readonly sendLoss: number
  /** Subscriber processes of the case (ours: the publisher waits until they report status). */
  readonly subscribers: number
  /**
   * The same load runs this long first, uncounted (the JIT's tiering of a hot path takes seconds).
   * Paced: CPU per update is measured from its end. Burst, and paced with latency: its messages are
   * numbered from `WARMUP_SEQ`, and subscribers count rate, latency and CPU from the first message
   * after it.
   */
  readonly warmupMs?: number
}

/**
 * Message numbers of a warm-up numbered apart (`warmupApart`) start here: a subscriber tells them
 * apart from the measured messages (numbered from 0) by the number alone, whichever system carried
 * them.
 */
const WARMUP_SEQ = 0x8000_0000

/** The variants of effect-distributor run its code with another configuration. */
const implementation = (s: System) =>
  s.startsWith("ours") ? "ours" : (s as Exclude<System, "ours0" | "ours65k" | "oursSec" | "oursAuth" | "oursNode">)

/** The UDP transport of a variant. */
const udpLayer = (s: System) => (s === "oursNode" ? Transport.layerUdpDgram : Transport.layerUdp)

const IFACE = "127.0.0.1"
const RECV_BUFFER = 4 * 1024 * 1024
const SEGMENT = 1400
const TOPIC = "/bench/t"

const nowUs = (): number => Number(process.hrtime.bigint()) / 1000

/** Resolves once written: stdout to a pipe is asynchronous, and `process.exit` would cut a long line. */
const out = (o: unknown) =>
  new Promise<void>((resolve) => {
    process.stdout.write(JSON.stringify(o) + "\n", () => resolve())
  })

// The peers' clients live in bench/peers/ (their own package.json); the suite passes the path, as
// this file may run bundled from elsewhere.
const peersRequire = createRequire(
  process.env.BENCH_PEERS_DIR
    ? `${process.env.BENCH_PEERS_DIR}/package.json`
    : new URL("./peers/package.json", import.meta.url)
)

// ---- messages -----------------------------------------------------------------------------

/** Sets the send time of a message, just before it is sent. */
const stamp = (message: Uint8Array) => {
  new DataView(message.buffer, message.byteOffset).setFloat64(4, nowUs())
  return message
}

/** Word `k` (from 3, after the 12-byte header) of a patterned message. */
const patternWord = (k: number) => Math.imul(k, 0x9e3779b1) >>> 0

/**
 * Messages are carved from 1 MiB slabs, never reused (a library may hold a message until it is
 * sent): a `new Uint8Array(64)` per message costs ~2.3 µs here (an ArrayBuffer allocation each),
 * more than some systems' whole publish, and would cap every system's 64 B rate at the harness.
 * The slabs are not zero-filled (only a message's first 12 bytes are ever written): zeroing them,
 * and faulting in their fresh pages, was ~15 % of a 64 KiB publisher's CPU in `perf`, whichever
 * system it fed.
 */
const SLAB_SIZE = 1 << 20
/**
 * Whether burst and paced messages carry their send time: only latency cases read it, and a clock
 * read (~50-80 ns here) is a tenth of a 64 B publish. Set from the worker's arguments.
 */
let stamping = true
let slab = new Uint8Array(0)
let slabView = new DataView(slab.buffer)
let slabUsed = 0
const makeMessage = (size: number, seq: number, pattern = false): Uint8Array => {
  const n = Math.max(size, 12)
  if (pattern || n > SLAB_SIZE / 4) {
    const buf = new Uint8Array(n)
    if (pattern) {
      const words = new Uint32Array(buf.buffer, 0, buf.length >>> 2)
      for (let k = 3; k < words.length; k++) words[k] = patternWord(k)
    }
    new DataView(buf.buffer).setUint32(0, seq)
    return stamp(buf)
  }
  if (slabUsed + n > slab.length) {
    slab = new Uint8Array(Buffer.allocUnsafeSlow(SLAB_SIZE).buffer)
    slabView = new DataView(slab.buffer)
    slabUsed = 0
  }
  const at = slabUsed
  // 8-byte aligned starts, as separate allocations would have.
  slabUsed += (n + 7) & ~7
  slabView.setUint32(at, seq)
  if (stamping) slabView.setFloat64(at + 4, nowUs())
  return new Uint8Array(slab.buffer, at, n)
}

/** Whether a received patterned message has the length and every word it was sent with. */
const intact = (m: Uint8Array, size: number) => {
  if (m.length !== size) return false
  const n = size >>> 2
  const words =
    m.byteOffset % 4 === 0 ? new Uint32Array(m.buffer, m.byteOffset, n) : new Uint32Array(m.slice(0, n * 4).buffer)
  for (let k = 3; k < n; k++) if (words[k] !== patternWord(k)) return false
  return true
}

// ---- publishers ---------------------------------------------------------------------------

interface Pub {
  /** Send several messages (a burst); may resolve later (flow control of the client). */
  readonly sendBatch: (messages: Array<Uint8Array>) => void | Promise<void>
  readonly sendOne: (message: Uint8Array) => void | Promise<void>
  readonly stats: () => Record<string, number>
  readonly close: () => Promise<void>
  /** Wait (bounded) until `n` receivers are known to the publisher; whether they are. */
  readonly awaitReceivers?: (n: number) => Promise<boolean>
  /** The largest message this system can carry as configured, when it has one, and why. */
  readonly limit?: { readonly bytes: number; readonly reason: string }
}

/** A fixed bench-only key: the security variants measure the envelope's cost, not key handling. */
const BENCH_KEY = "be".repeat(32)
const VARIANTS: Partial<Record<System, object>> = {
  ours0: { holdbackDelayMs: 0 },
  ours65k: { segmentSize: 65000 },
  oursSec: { security: { key: BENCH_KEY } },
  oursAuth: { security: { key: BENCH_KEY, mode: "authenticate" } }
}

const oursConfig = (a: WorkerArgs) => ({
  group: a.group,
  port: a.port,
  interface: IFACE,
  loopback: true,
  recvBufferSize: RECV_BUFFER,
  sendBufferSize: RECV_BUFFER,
  ...VARIANTS[a.system],
  // Experiments only (bench/profile.ts): connection settings over the variant's.
  ...(process.env.BENCH_OURS_CONFIG ? JSON.parse(process.env.BENCH_OURS_CONFIG) : {})
})

const oursPub = async (a: WorkerArgs): Promise<Pub> => {
  const scope = Effect.runSync(Scope.make())
  const transport =
    a.sendLoss > 0
      ? Transport.layerLossy({ sendLoss: a.sendLoss, seed: 42 }).pipe(Layer.provide(udpLayer(a.system)))
      : udpLayer(a.system)
  const { connection, publisher } = await Effect.runPromise(
    Effect.gen(function* () {
      const d = yield* Distributor.make({ application: "bench-pub", console: { enabled: false } })
      const connection = yield* d.connection(oursConfig(a))
      const publisher = yield* connection.publisher
      return { connection, publisher }
    }).pipe(Effect.provide(transport), Scope.extend(scope))
  )
  // What publishing would wait for (the receivers' window, pacing), waited for without a fiber.
  const ready = () => new Promise<void>((resolve) => publisher.unsafeOnReady(resolve))
  const publishRest = async (updates: ReadonlyArray<readonly [string, Uint8Array]>, from: number) => {
    while (from < updates.length) {
      await ready()
      const taken = publisher.unsafePublishAll(updates.slice(from))
      if (typeof taken !== "number") throw taken
      from += taken
    }
  }
  return {
    // Published in place, without a fiber (as a caller outside Effect would): what would wait
    // waits for `unsafeOnReady`, then goes on.
    sendBatch: (messages) => {
      const updates = messages.map((m) => [TOPIC, m] as const)
      const taken = publisher.unsafePublishAll(updates)
      if (taken === updates.length) return
      if (typeof taken !== "number") throw taken
      return publishRest(updates, taken)
    },
    // One update at a time (the latency cases), the same way.
    sendOne: (message) => {
      const r = publisher.unsafePublish(TOPIC, message)
      if (r === "published") return
      if (r === "blocked") return publishRest([[TOPIC, message]], 0)
      throw r
    },
    stats: () => {
      const s = Effect.runSync(connection.stats)
      const drops = Transport.simulatedDrops(s.socket)
      return {
        datagramsOut: s.datagramsOut,
        updatesOut: s.updatesOut,
        naksReceived: s.naksReceived,
        retransmissionsSent: s.retransmissionsSent,
        simulatedSendDrops: drops?.send ?? 0,
        sendErrors: s.socket.sendErrors,
        gsoSends: s.socket.segmentation?.gsoSends ?? 0,
        gsoDatagrams: s.socket.segmentation?.gsoDatagrams ?? 0,
        flowControlWaits: s.flowControlWaits
      }
    },
    close: () => Effect.runPromise(Scope.close(scope, Exit.void)),
    // Flow control starts from the receivers' status: without it the first burst is unbounded.
    awaitReceivers: (n) =>
      Effect.runPromise(
        publisher
          .awaitReceivers(n)
          .pipe(Effect.timeoutTo({ duration: "5 seconds", onSuccess: () => true, onTimeout: () => false }))
      )
  }
}

const dgramPub = async (a: WorkerArgs): Promise<Pub> => {
  const socket = Dgram.createSocket({ type: "udp4" })
  await new Promise<void>((resolve) => socket.bind({ port: 0, address: IFACE }, resolve))
  socket.setMulticastInterface(IFACE)
  socket.setMulticastLoopback(true)
  socket.setMulticastTTL(1)
  socket.setSendBufferSize(RECV_BUFFER)
  await new Promise<void>((resolve) => socket.connect(a.port, a.group, () => resolve()))
  let datagrams = 0
  // One message per datagram; a message bigger than a segment is cut into SEGMENT-byte
  // datagrams by hand (8-byte header: message seq, fragment index, fragment count) — no recovery.
  const chunk = SEGMENT - 8
  const sendOne = (m: Uint8Array) => {
    if (m.length + 8 <= SEGMENT) {
      datagrams++
      socket.send(m)
      return
    }
    const count = Math.ceil(m.length / chunk)
    const seq = new DataView(m.buffer, m.byteOffset).getUint32(0)
    for (let i = 0; i < count; i++) {
      const part = m.subarray(i * chunk, (i + 1) * chunk)
      const d = new Uint8Array(8 + part.length)
      const v = new DataView(d.buffer)
      v.setUint32(0, seq)
      v.setUint16(4, i)
      v.setUint16(6, count)
      d.set(part, 8)
      datagrams++
      socket.send(d)
    }
  }
  return {
    sendBatch: (messages) => {
      for (const m of messages) sendOne(m)
    },
    sendOne,
    stats: () => ({ datagramsOut: datagrams }),
    close: () => new Promise((resolve) => socket.close(() => resolve())),
    limit: { bytes: 0xffff * chunk, reason: "16-bit fragment count of the hand-cut datagrams" }
  }
}

const zeromqPub = async (a: WorkerArgs): Promise<Pub> => {
  const zmq = peersRequire("zeromq")
  const sock = new zmq.Publisher({ sendHighWaterMark: 100_000, linger: 0 })
  await sock.bind(`tcp://127.0.0.1:${a.port}`)
  return {
    // zeromq v6 allows one send in flight per socket.
    sendBatch: async (messages) => {
      for (const m of messages) await sock.send(m)
    },
    sendOne: (m) => sock.send(m),
    stats: () => ({}),
    close: async () => sock.close()
  }
}

const natsPub = async (a: WorkerArgs): Promise<Pub> => {
  const nats = peersRequire("nats")
  const nc = await nats.connect({ servers: `127.0.0.1:${a.port}` })
  return {
    // Flow control: a round trip to the server after each burst.
    sendBatch: async (messages) => {
      for (const m of messages) nc.publish("bench.t", m)
      await nc.flush()
    },
    sendOne: (m) => nc.publish("bench.t", m),
    stats: () => ({}),
    limit: { bytes: nc.info.max_payload, reason: `max_payload ${nc.info.max_payload} B, the server default` },
    close: async () => {
      await nc.flush()
      await nc.close()
    }
  }
}

const redisPub = async (a: WorkerArgs): Promise<Pub> => {
  const Redis = peersRequire("ioredis")
  const r = new Redis({ host: "127.0.0.1", port: a.port, commandTimeout: undefined, maxRetriesPerRequest: null })
  await r.ping()
  return {
    // One pipeline per burst: its reply is the flow control.
    sendBatch: async (messages) => {
      const p = r.pipeline()
      for (const m of messages) p.publish("bench", Buffer.from(m.buffer, m.byteOffset, m.byteLength))
      await p.exec()
    },
    sendOne: (m) => {
      r.publish("bench", Buffer.from(m.buffer, m.byteOffset, m.byteLength)).catch(() => {})
    },
    stats: () => ({}),
    close: async () => {
      await r.quit()
    }
  }
}

// ---- subscribers --------------------------------------------------------------------------

interface Sub {
  readonly stats: () => Record<string, number>
  readonly close: () => Promise<void>
  /** Datagrams in so far, where they are more than messages (raw dgram): the tail still arriving. */
  readonly progress?: () => number
}

/** A message arrived; `payload` is passed where a patterned message can be checked. */
type OnMessage = (seq: number, sentAt: number, payload?: Uint8Array) => void

/**
 * A message's sequence number and send time (big-endian u32 at 0, f64 at 4), read without a
 * DataView or tuple per message: that cost ~0.2 µs per message, a tenth of a fast subscriber's.
 */
const seqOf = (m: Uint8Array): number => ((m[0] << 24) | (m[1] << 16) | (m[2] << 8) | m[3]) >>> 0
const f64 = new Float64Array(1)
const f64Bytes = new Uint8Array(f64.buffer)
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
const sentAtOf = (m: Uint8Array): number => {
  if (littleEndian) for (let i = 0; i < 8; i++) f64Bytes[7 - i] = m[4 + i]
  else for (let i = 0; i < 8; i++) f64Bytes[i] = m[4 + i]
  return f64[0]
}

/** Counts a subscription's updates (`on`) and loss notices (`onLoss`), a chunk at a time. */
const consume = <E>(
  stream: Stream.Stream<{ readonly payload: Uint8Array } | { readonly _tag: string }, E>,
  on: OnMessage,
  onLoss: () => void
) =>
  Connection.forEachChunk(stream, (chunk) => {
    // An index loop over the chunk's array: `for (const item of chunk)` allocates an iterator
    // result per update here (~13 % of the subscriber's allocation at 64 B).
    const items = Chunk.toReadonlyArray(chunk)
    for (let i = 0; i < items.length; i++) {
      const item = items[i]
      if ("payload" in item) {
        const seq = seqOf(item.payload)
        const t = sentAtOf(item.payload)
        on(seq, t, item.payload)
      } else onLoss()
    }
  })

const oursSub = async (a: WorkerArgs, on: OnMessage, onLoss: () => void): Promise<Sub> => {
  const scope = Effect.runSync(Scope.make())
  let losses = 0
  const connection = await Effect.runPromise(
    Effect.gen(function* () {
      const d = yield* Distributor.make({ application: "bench-sub", console: { enabled: false } })
      const connection = yield* d.connection(oursConfig(a))
      const stream = yield* connection.subscribeScoped("/bench/...", { onLoss: "notify", bufferSize: 1 << 20 })
      yield* Effect.forkIn(
        consume(stream, on, () => {
          losses++
          onLoss()
        }),
        scope
      )
      return connection
    }).pipe(Effect.provide(udpLayer(a.system)), Scope.extend(scope))
  )
  return {
    stats: () => {
      const s = Effect.runSync(connection.stats)
      if (process.env.BENCH_TRACE)
        process.stderr.write(
          `sub sched ${schedstat().join(" ")}\nsub sessions: ${JSON.stringify(s.remoteSessions, (_k, v) => (typeof v === "bigint" ? String(v) : v))}\n`
        )
      return {
        datagramsIn: s.datagramsIn,
        updatesIn: s.updatesIn,
        decodeErrors: s.decodeErrors,
        remoteSessions: s.remoteSessions.length,
        naksSent: s.naksSent,
        retransmissionsReceived: s.retransmissionsReceived,
        duplicates: s.duplicates,
        lossEvents: s.lossEvents,
        lostSegments: s.lostSegments,
        lossNotices: losses,
        queueDrops: s.socket.queueDrops,
        kernelReceiveBufferErrors: s.kernelReceiveBufferErrors ?? -1
      }
    },
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** A GatewayClient of the gateway at `a.gateway`: the same counting as a multicast subscriber. */
const gatewaySub = async (a: WorkerArgs, on: OnMessage, onLoss: () => void): Promise<Sub> => {
  const scope = Effect.runSync(Scope.make())
  let losses = 0
  const client = await Effect.runPromise(
    Effect.gen(function* () {
      const client = yield* GatewayClient.make({
        url: a.gateway ?? "",
        name: `bench-${process.pid}-${++gatewayClients}`
      })
      const stream = yield* client.subscribeScoped("/bench/...", { onLoss: "notify" })
      yield* Effect.forkIn(
        consume(stream, on, () => {
          losses++
          onLoss()
        }),
        scope
      )
      return client
    }).pipe(Effect.provide(NodeSocket.layerWebSocketConstructor), Scope.extend(scope))
  )
  return {
    stats: () => {
      const s = Effect.runSync(client.status)
      return { lossNotices: losses, gaps: s.gaps, connects: s.connects }
    },
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
let gatewayClients = 0

const dgramSub = async (a: WorkerArgs, on: OnMessage): Promise<Sub> => {
  const socket = Dgram.createSocket({ type: "udp4", reuseAddr: true })
  await new Promise<void>((resolve) => socket.bind({ port: a.port, address: a.group }, resolve))
  socket.addMembership(a.group, IFACE)
  socket.setRecvBufferSize(RECV_BUFFER)
  let datagrams = 0
  const fragmented = a.size + 8 > SEGMENT
  // Reassembly of hand-segmented messages: a message counts when every fragment arrived.
  let curSeq = -1
  let curSent = 0
  let curFrags = 0
  // A patterned message is reassembled, to be checked.
  let whole: Uint8Array | undefined
  socket.on("message", (m) => {
    datagrams++
    if (!fragmented) {
      const seq = seqOf(m)
      const t = sentAtOf(m)
      on(seq, t, m)
      return
    }
    const seq = m.readUInt32BE(0)
    const index = m.readUInt16BE(4)
    const count = m.readUInt16BE(6)
    if (seq !== curSeq) {
      curSeq = seq
      curFrags = 0
      if (a.mode === "once") whole = new Uint8Array(a.size)
    }
    if (index === 0) curSent = m.readDoubleBE(12)
    curFrags++
    whole?.set(m.subarray(8), index * (SEGMENT - 8))
    if (index === count - 1 && curFrags === count) on(seq, curSent, whole)
  })
  return {
    progress: () => datagrams,
    stats: () => ({ datagramsIn: datagrams }),
    close: () => new Promise((resolve) => socket.close(() => resolve()))
  }
}

const zeromqSub = async (a: WorkerArgs, on: OnMessage): Promise<Sub> => {
  const zmq = peersRequire("zeromq")
  const sock = new zmq.Subscriber({ receiveHighWaterMark: 100_000, linger: 0 })
  sock.connect(`tcp://127.0.0.1:${a.port}`)
  sock.subscribe()
  void (async () => {
    try {
      for await (const [m] of sock) {
        const seq = seqOf(m)
        const t = sentAtOf(m)
        on(seq, t, m)
      }
    } catch {
      // closed
    }
  })()
  return { stats: () => ({}), close: async () => sock.close() }
}

const natsSub = async (a: WorkerArgs, on: OnMessage): Promise<Sub> => {
  const nats = peersRequire("nats")
  const nc = await nats.connect({ servers: `127.0.0.1:${a.port}` })
  nc.subscribe("bench.t", {
    callback: (_err: unknown, msg: { data: Uint8Array }) => {
      const seq = seqOf(msg.data)
      const t = sentAtOf(msg.data)
      on(seq, t, msg.data)
    }
  })
  await nc.flush()
  return { stats: () => ({}), close: () => nc.close() }
}

const redisSub = async (a: WorkerArgs, on: OnMessage): Promise<Sub> => {
  const Redis = peersRequire("ioredis")
  const r = new Redis({ host: "127.0.0.1", port: a.port, commandTimeout: undefined, maxRetriesPerRequest: null })
  r.on("messageBuffer", (_channel: Buffer, m: Buffer) => {
    const seq = seqOf(m)
    const t = sentAtOf(m)
    on(seq, t, m)
  })
  await r.subscribe("bench")
  return {
    stats: () => ({}),
    close: async () => {
      r.disconnect()
    }
  }
}

// ---- roles --------------------------------------------------------------------------------

const lines = () => {
  const waiting: Array<(line: string) => void> = []
  const queued: Array<string> = []
  createInterface({ input: process.stdin })
    .on("line", (l) => {
      const w = waiting.shift()
      if (w) w(l)
      else queued.push(l)
    })
    // The suite went away: never linger (a stray publisher would disturb the next runs).
    .on("close", () => process.exit(2))
  return () => new Promise<string>((resolve) => (queued.length > 0 ? resolve(queued.shift()!) : waiting.push(resolve)))
}

/** Main thread's scheduler record (Linux): [on-CPU ns, runnable-but-waiting ns, time slices]. */
const schedstat = (): Array<number> => {
  try {
    return readFileSync("/proc/thread-self/schedstat", "utf8").trim().split(" ").map(Number)
  } catch {
    return [0, 0, 0]
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve))
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** CPU (user + system) of this process since `cpu0`, µs. */
const cpuSince = (cpu0: NodeJS.CpuUsage) => {
  const cpu = process.cpuUsage(cpu0)
  return cpu.user + cpu.system
}

/**
 * `BENCH_SENDTIME=1` (with `BENCH_TRACE=1` to see it): how long each single send call took, in µs,
 * printed by the publisher at exit (p10 / p50 / p90 of its last 6 000). Off by default: two clock
 * reads per send.
 */
const sendTimes: Array<number> | undefined = process.env.BENCH_SENDTIME ? [] : undefined
process.on("exit", () => {
  if (sendTimes === undefined || sendTimes.length === 0) return
  const x = sendTimes.slice(-6000).sort((a, b) => a - b)
  const at = (q: number) => x[Math.min(x.length - 1, Math.floor(x.length * q))].toFixed(1)
  process.stderr.write(`send call µs: p10 ${at(0.1)} p50 ${at(0.5)} p90 ${at(0.9)}\n`)
})

/**
 * Paced sends from message `seq` up to `total` (exclusive), starting at `t0` (µs); returns the next
 * message number.
 */
const paced = async (a: WorkerArgs, p: Pub, seq: number, total: number, t0: number) => {
  const interval = 1e6 / a.rate
  let next = t0
  while (seq < total) {
    const t = nowUs()
    if (a.batch > 1) {
      // Always whole batches of `batch` messages (late ones catch up as more whole batches), so
      // the packing is the same however busy the machine is.
      while (next <= t && seq < total) {
        const batch: Array<Uint8Array> = []
        for (let i = 0; i < a.batch && seq < total; i++) batch.push(makeMessage(a.size, seq++))
        await p.sendBatch(batch)
        next += interval * a.batch
      }
    } else {
      while (next <= t && seq < total) {
        const m = makeMessage(a.size, seq++)
        const s0 = sendTimes === undefined ? 0 : nowUs()
        const r = p.sendOne(m)
        sendTimes?.push(nowUs() - s0)
        if (r !== undefined) await r
        next += interval
      }
    }
    const wait = (next - nowUs()) / 1000
    if (a.batch > 1) {
      // Bursts (the fan-out scenario): sleep until the next one is due. Spinning through the
      // last millisecond, as single sends do, would count as the publisher's CPU: about as
      // much as the sends themselves at 200 bursts/s.
      if (wait > 0) await sleep(wait)
      else await tick()
    } else if (wait >= 1.5) {
      // Timers are ~1 ms coarse: sleep when the next send is far, else just let the loop in.
      await sleep(Math.floor(wait - 0.5))
    } else await tick()
  }
  return seq
}

/**
 * Bursts of `a.batch` messages numbered from `first`, each sent as soon as the last one was taken,
 * until `endUs`; the warm-up and the measured load are the same loop. Returns how many were sent.
 */
const bursts = async (a: WorkerArgs, p: Pub, first: number, endUs: number) => {
  let seq = first
  let inSend = 0
  let iterations = 0
  while (nowUs() < endUs) {
    const batch: Array<Uint8Array> = []
    for (let i = 0; i < a.batch; i++) batch.push(makeMessage(a.size, seq++))
    const s0 = nowUs()
    await p.sendBatch(batch)
    inSend += nowUs() - s0
    iterations++
    // Let the event loop in: socket callbacks, timers, NAKs.
    await tick()
  }
  if (process.env.BENCH_TRACE)
    process.stderr.write(`pub: ${iterations} bursts, ${Math.round(inSend / 1000)} ms sending\n`)
  return seq - first
}

/**
 * Whether the case's warm-up is numbered from WARMUP_SEQ, and so left out of everything the
 * subscribers count: bursts, and latency cases (whose samples would otherwise include it).
 */
const warmupApart = (a: WorkerArgs) =>
  (a.mode === "burst" || (a.mode === "paced" && a.latency)) && (a.warmupMs ?? 0) > 0

/** The load; `once` is the single message of the "once" mode, built (pattern written) beforehand. */
const publish = async (a: WorkerArgs, p: Pub, once: Uint8Array | undefined) => {
  let seq = 0
  // Warm-up: the same load, sent and delivered but not in the figures (paced: numbered on, left
  // out of the CPU; burst and latency: numbered from WARMUP_SEQ, left out of everything). Then a full
  // collection (run.ts starts workers with --expose-gc): the first one after start-up otherwise
  // lands in the measurement or not, at random (its startup garbage, not the load's).
  const pacedWarmup = a.mode === "paced" && !once ? Math.floor((a.rate * (a.warmupMs ?? 0)) / 1000) : 0
  // Numbered apart, or on from 0 (then in `seq`, so in `sent`).
  const first = warmupApart(a) ? WARMUP_SEQ : 0
  if (pacedWarmup > 0) await paced(a, p, first, first + pacedWarmup, nowUs())
  // Paced warm-up messages numbered on.
  const warmup = first === 0 ? pacedWarmup : 0
  seq = warmup
  const burstWarmup =
    a.mode === "burst" && warmupApart(a) ? await bursts(a, p, WARMUP_SEQ, nowUs() + (a.warmupMs ?? 0) * 1000) : 0
  if (pacedWarmup > 0 || burstWarmup > 0) (globalThis as { gc?: () => void }).gc?.()
  const cpu0 = process.cpuUsage()
  const sched0 = schedstat()
  const t0 = nowUs()
  const end = t0 + a.durationMs * 1000
  if (once) {
    seq++
    await p.sendOne(stamp(once))
  } else if (a.mode === "burst") {
    seq = await bursts(a, p, 0, end)
  } else {
    seq = await paced(a, p, seq, warmup + Math.floor((a.rate * a.durationMs) / 1000), t0)
  }
  const elapsedUs = nowUs() - t0
  const sched = schedstat().map((x, i) => x - sched0[i])
  return {
    sent: seq,
    // What the CPU and elapsed time figures cover (`sent` less a paced warm-up; a warm-up numbered
    // apart is not in `sent`).
    measured: seq - warmup,
    warmupUpdates: pacedWarmup + burstWarmup,
    elapsedUs,
    cpuUs: cpuSince(cpu0),
    sysUs: process.cpuUsage(cpu0).system,
    runUs: Math.round(sched[0] / 1000),
    runDelayUs: Math.round(sched[1] / 1000),
    slices: sched[2],
    ...p.stats()
  }
}

const runPub = async (a: WorkerArgs) => {
  const open = { ours: oursPub, dgram: dgramPub, zeromq: zeromqPub, nats: natsPub, redis: redisPub }[
    implementation(a.system)
  ]
  const p = await open(a)
  const next = lines()
  if (p.limit && a.size > p.limit.bytes) {
    await out({ ready: true, unsupported: p.limit.reason })
    await p.close()
    return
  }
  const once = a.mode === "once" ? makeMessage(a.size, 0, true) : undefined
  await out({ ready: true })
  while ((await next()) !== "go") {}
  const receiversPresent = p.awaitReceivers ? await p.awaitReceivers(a.subscribers) : true
  const cpu0 = process.cpuUsage()
  await out({ result: { ...(await publish(a, p, once)), receiversPresent } })
  while ((await next()) !== "exit") {}
  // Final stats (NAKs answered after the load ended included), and the CPU from `go` to here.
  await out({ final: { ...p.stats(), cpuUsToExit: cpuSince(cpu0) } })
  await p.close()
}

/** What one subscriber counts: distinct messages, duplicates, latency samples, intact "once" messages. */
const tracker = (a: WorkerArgs) => {
  let received = 0
  let duplicates = 0
  let first = 0
  let last = 0
  let seen = new Uint8Array(1 << 16)
  let distinct = 0
  let samples = new Float64Array(a.latency ? 1 << 16 : 0)
  let nSamples = 0
  let losses = 0
  let intactCount = 0
  let checkCpuUs = 0
  let warm = 0
  let cpuFrom: NodeJS.CpuUsage | undefined
  // Throughput cases need only the first and the last arrival: the clock is read at the first, then
  // once per run of messages handled together (a microtask after the run), not per message. The
  // end of the run is when its last message was handled, for every system alike.
  let lastPending = false
  const stampLast = () => {
    lastPending = false
    last = nowUs()
  }
  const on: OnMessage = (seq, sentAt, payload) => {
    if (seq >= WARMUP_SEQ) {
      warm++
      return
    }
    // The subscriber's CPU is counted from here when the case has a warm-up.
    if (received === 0) cpuFrom = process.cpuUsage()
    let t = 0
    if (a.latency) {
      t = nowUs()
      if (received === 0) first = t
      last = t
    } else if (received === 0) {
      first = last = nowUs()
    } else if (!lastPending) {
      lastPending = true
      queueMicrotask(stampLast)
    }
    received++
    if (seq >= seen.length) {
      const grown = new Uint8Array(Math.max(seen.length * 2, seq + 1))
      grown.set(seen)
      seen = grown
    }
    if (seen[seq] === 1) {
      duplicates++
      return
    }
    seen[seq] = 1
    distinct++
    if (a.latency) {
      if (nSamples === samples.length) {
        const grown = new Float64Array(samples.length * 2)
        grown.set(samples)
        samples = grown
      }
      samples[nSamples++] = t - sentAt
    }
    if (a.mode === "once" && payload) {
      // The check's CPU is not the system's: it is left out of the subscriber's CPU.
      const c0 = process.cpuUsage()
      if (intact(payload, a.size)) intactCount++
      checkCpuUs += cpuSince(c0)
    }
  }
  return {
    on,
    onLoss: () => {
      losses++
    },
    distinct: () => distinct,
    activity: () => warm + received + losses,
    /** CPU usage when the first measured message arrived (undefined before). */
    cpuFrom: () => cpuFrom,
    checkCpuUs: () => checkCpuUs,
    result: (cpuUs: number) => ({
      cpuUs,
      received,
      distinct,
      duplicates,
      intact: intactCount,
      firstUs: first,
      lastUs: last,
      latencyUs: Array.from(samples.subarray(0, nSamples), (x) => Math.round(x * 10) / 10)
    })
  }
}

const runSub = async (a: WorkerArgs) => {
  const k = a.clients ?? 1
  const trackers = Array.from({ length: k }, () => tracker(a))
  const open =
    a.gateway !== undefined
      ? gatewaySub
      : { ours: oursSub, dgram: dgramSub, zeromq: zeromqSub, nats: natsSub, redis: redisSub }[implementation(a.system)]
  const subs: Array<Sub> = []
  for (const t of trackers) subs.push(await open(a, t.on, t.onLoss))
  const next = lines()
  await out({ ready: true })
  const cpu0 = process.cpuUsage()
  let line = await next()
  while (!line.startsWith("stop")) line = await next()
  const sent = Number(line.split(" ")[1] ?? "0")
  // Wait for the tail (brokers' backlogs, NAK recovery) until everything arrived or it went quiet
  // (in "once" mode: quiet after something arrived — a message, a loss notice, a datagram — as a
  // large message may take longer than `idleMs` to arrive at all).
  const activity = () => trackers.reduce((n, t, i) => n + t.activity() + (subs[i].progress?.() ?? 0), 0)
  const done = () => trackers.every((t) => t.distinct() >= sent)
  const deadline = Date.now() + a.waitMs
  while (!done() && Date.now() < deadline) {
    const before = activity()
    await sleep(a.idleMs)
    if (activity() === before && (a.mode !== "once" || before > 0)) break
  }
  // The process's CPU, shared evenly by its subscribers; after a warm-up numbered apart, from the first
  // measured message on (one subscriber per process in those cases).
  const from = warmupApart(a) ? (trackers[0].cpuFrom() ?? cpu0) : cpu0
  const cpuUs = cpuSince(from) - trackers.reduce((n, t) => n + t.checkCpuUs(), 0)
  for (let i = 0; i < k; i++) await out({ result: { ...trackers[i].result(cpuUs / k), ...subs[i].stats() } })
  await Promise.all(subs.map((s) => s.close()))
}

/** A connection served by a Gateway; its CPU from `go` to `exit` is the gateway's cost. */
const runGateway = async (a: WorkerArgs) => {
  const scope = Effect.runSync(Scope.make())
  const gateway = await Effect.runPromise(
    Effect.gen(function* () {
      const d = yield* Distributor.make({ application: "bench-gateway", console: { enabled: false } })
      const connection = yield* d.connection(oursConfig(a))
      return yield* Gateway.make({ connections: [connection] })
    }).pipe(Effect.provide(udpLayer(a.system)), Scope.extend(scope))
  )
  const next = lines()
  await out({ ready: true, url: gateway.url })
  while ((await next()) !== "go") {}
  const cpu0 = process.cpuUsage()
  while ((await next()) !== "exit") {}
  const { counters } = Effect.runSync(gateway.stats)
  await out({ final: { cpuUs: cpuSince(cpu0), ...counters } })
  await Effect.runPromise(Scope.close(scope, Exit.void))
}

const args = JSON.parse(process.argv[2] ?? "{}") as WorkerArgs
stamping = args.latency
;(args.role === "pub" ? runPub(args) : args.role === "gateway" ? runGateway(args) : runSub(args)).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`worker ${args.role}/${args.system}: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exit(1)
  }
)
