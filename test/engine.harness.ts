/**
 * Shared helpers of the engine suites: a default test config, a recording sink that keeps the
 * order of deliveries and loss reports, a simulated cluster (one publisher, N receivers) and the
 * zero-silent-loss invariant checker.
 */

import { Endpoint } from "../src/internal/protocol/endpoint.js"
import type {
  EngineConfig,
  EngineSink,
  LossReport,
  ReceivedUpdate,
  SessionEvent
} from "../src/internal/protocol/engine.js"
import { type LinkConfig, SimNetwork, type SimNode } from "../src/internal/sim/index.js"

export const MiB = 1024 * 1024

export const testConfig = (overrides: Partial<EngineConfig> = {}): EngineConfig => ({
  host: "test-host",
  application: "engine-test",
  segmentSize: 1400,
  maxUpdateSize: 64 * MiB,
  holdbackDelayMs: 2,
  holdbackThreshold: 2000,
  heartbeatIntervalMs: 1000,
  senderTimeoutMs: 10_000,
  nakBackoffMs: 10,
  nakRetryIntervalMs: 50,
  nakMaxRetries: 10,
  retransmitHoldoffMs: 10,
  cacheMaxBytes: 16 * MiB,
  cacheMaxAgeMs: 60_000,
  maxBandwidth: 0,
  reorderBufferSegments: 16_384,
  flowControl: "min",
  receiverName: "",
  receiverWindowBytes: MiB,
  receiverWindowSegments: 2048,
  statusIntervalMs: 100,
  receiverTimeoutMs: 2000,
  ...overrides
})

export type LogItem =
  | { readonly kind: "update"; readonly update: ReceivedUpdate }
  | {
      readonly kind: "loss"
      readonly loss: LossReport
    }

export interface Recorder extends EngineSink {
  readonly sent: Array<Uint8Array>
  readonly updates: Array<ReceivedUpdate>
  readonly losses: Array<LossReport>
  readonly events: Array<SessionEvent>
  /** Deliveries and losses in emission order. */
  readonly log: Array<LogItem>
}

export const recorder = (send: (d: Uint8Array) => void = () => {}): Recorder => {
  const r: Recorder = {
    sent: [],
    updates: [],
    losses: [],
    events: [],
    log: [],
    send: (d) => {
      r.sent.push(d)
      send(d)
    },
    deliver: (u) => {
      r.updates.push(u)
      r.log.push({ kind: "update", update: u })
    },
    loss: (l) => {
      r.losses.push(l)
      r.log.push({ kind: "loss", loss: l })
    },
    event: (e) => {
      r.events.push(e)
    }
  }
  return r
}

export interface Peer {
  readonly node: SimNode
  readonly endpoint: Endpoint
  readonly sink: Recorder
}

/** An engine on a simulated node: its randomness from the node, its sink recording and sending through it. */
export const endpointOn = (
  net: SimNetwork,
  node: SimNode,
  config: EngineConfig
): { readonly endpoint: Endpoint; readonly sink: Recorder } => {
  const sink = recorder(node.send)
  const endpoint = new Endpoint({
    config,
    sink,
    random: () => node.prng.next(),
    newSessionId: () => node.prng.bigint64(),
    now: net.now
  })
  return { endpoint, sink }
}

export const addPeer = (net: SimNetwork, name: string, config: EngineConfig): Peer => {
  let peer: Peer | undefined
  const node = net.addNode(name, (node) => {
    const { endpoint, sink } = endpointOn(net, node, config)
    peer = { node, endpoint, sink } as Peer
    return endpoint
  })
  return { ...peer!, node }
}

export interface Cluster {
  readonly net: SimNetwork
  readonly pub: Peer
  readonly receivers: Array<Peer>
}

export const makeCluster = (options: {
  readonly seed: number | string
  readonly receivers: number
  readonly link?: Partial<LinkConfig> | undefined
  readonly config?: Partial<EngineConfig> | undefined
  readonly receiverConfig?: Partial<EngineConfig> | undefined
}): Cluster => {
  const net = new SimNetwork({ seed: options.seed, defaultLink: options.link ?? {} })
  const config = testConfig(options.config)
  const pub = addPeer(net, "pub", config)
  const receivers: Array<Peer> = []
  for (let i = 0; i < options.receivers; i++) {
    receivers.push(addPeer(net, `r${i}`, testConfig({ ...options.config, ...options.receiverConfig })))
  }
  return { net, pub, receivers }
}

/** Deterministic payload: `length` bytes derived from `id`. */
export const payloadFor = (id: number, length: number): Uint8Array => {
  const p = new Uint8Array(length)
  let x = (id * 2654435761) >>> 0
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    p[i] = x >>> 24
  }
  if (length >= 4) {
    p[0] = id >>> 24
    p[1] = id >>> 16
    p[2] = id >>> 8
    p[3] = id
  }
  return p
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

export interface CheckResult {
  readonly delivered: number
  readonly lostUpdates: number
  readonly lostSegments: number
  readonly syncStart: number
  readonly coveredTo: number
}

/**
 * The zero-silent-loss invariant for one receiver and one session, against what the publisher
 * published (its local deliveries, in order):
 * - deliveries are a subsequence of the published updates, in order, each exactly once, byte-exact;
 * - loss reports and deliveries are emitted in sequence order; loss ranges are disjoint;
 * - every sequence number from the sync point (the first one covered) to `highest` is covered by
 *   exactly one delivered update or one loss range, never both, never neither.
 * Throws with a description on the first violation.
 */
export const checkInvariant = (
  published: ReadonlyArray<ReceivedUpdate>,
  sink: Recorder,
  sessionId: bigint,
  highest: number
): CheckResult => {
  // Segment range of each published update: [previous distinct sequence + 1, its sequence].
  const starts: Array<number> = []
  let prevSeq = 0
  let prevStart = 1
  for (const u of published) {
    const start = u.sequence === prevSeq ? prevStart : prevSeq + 1
    starts.push(start)
    prevStart = start
    prevSeq = u.sequence
  }
  const log = sink.log.filter(
    (i) => (i.kind === "update" ? i.update.source.sessionId : i.loss.source.sessionId) === sessionId
  )
  if (log.length === 0) {
    if (highest > 0) throw new Error(`nothing delivered or reported, highest ${highest}`)
    return { delivered: 0, lostUpdates: 0, lostSegments: 0, syncStart: 1, coveredTo: 0 }
  }
  // Map each delivery to a published index (sequence + position among updates of that segment).
  let pi = 0
  let cursor = 0 // next sequence number expected to be covered
  let syncStart = -1
  let delivered = 0
  let lostSegments = 0
  const deliveredIdx = new Set<number>()
  for (const item of log) {
    if (item.kind === "update") {
      const u = item.update
      while (pi < published.length && published[pi].sequence < u.sequence) pi++
      // Within a packed segment, deliveries follow publish order.
      while (pi < published.length && published[pi].sequence === u.sequence && deliveredIdx.has(pi)) pi++
      if (pi >= published.length || published[pi].sequence !== u.sequence) {
        throw new Error(`delivered update with sequence ${u.sequence} was never published (or duplicated)`)
      }
      const p = published[pi]
      if (p.topic !== u.topic || !sameBytes(p.payload, u.payload)) {
        throw new Error(`delivered update at sequence ${u.sequence} differs from the published one`)
      }
      const start = starts[pi]
      if (syncStart < 0) {
        syncStart = start
        cursor = start
      }
      // The first update of a segment starts at the cursor; later ones share it.
      if (start === cursor) cursor = u.sequence + 1
      else if (!(start < cursor && u.sequence === cursor - 1)) {
        throw new Error(`update [${start}, ${u.sequence}] delivered but coverage is at ${cursor}`)
      } else if (published[pi - 1]?.sequence !== u.sequence || !deliveredIdx.has(pi - 1)) {
        throw new Error(`update ${pi} at sequence ${u.sequence} delivered without its predecessor in the segment`)
      }
      deliveredIdx.add(pi)
      delivered++
      pi++
    } else {
      const l = item.loss
      if (syncStart < 0) {
        syncStart = l.firstSeq
        cursor = l.firstSeq
      }
      if (l.firstSeq !== cursor) throw new Error(`loss [${l.firstSeq}, ${l.lastSeq}] but coverage is at ${cursor}`)
      if (l.lastSeq < l.firstSeq) throw new Error(`reversed loss range`)
      // A partly delivered segment can not be followed by a loss starting inside it: cursor is past it.
      cursor = l.lastSeq + 1
      lostSegments += l.lastSeq - l.firstSeq + 1
      // Updates whose range intersects the loss can not be delivered later: pi moves past them. A
      // loss may end inside a fragmented update if another one follows; the coverage check catches
      // anything else (the next delivery would not start at the cursor).
      while (pi < published.length && starts[pi] <= l.lastSeq) pi++
    }
  }
  if (cursor !== highest + 1) throw new Error(`coverage ends at ${cursor - 1}, highest is ${highest}`)
  // Updates skipped silently between deliveries would show up as a coverage jump, checked above.
  let lostUpdates = 0
  for (let i = 0; i < published.length; i++) {
    if (starts[i] >= syncStart && published[i].sequence <= highest && !deliveredIdx.has(i)) lostUpdates++
  }
  return { delivered, lostUpdates, lostSegments, syncStart, coveredTo: cursor - 1 }
}
