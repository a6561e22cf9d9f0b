/**
 * One connection's protocol engine: the local senders, a receiver per remote session, the token
 * bucket, and the dispatch of decoded datagrams. Sans-I/O: every input carries `now`, every output
 * goes synchronously to the `EngineSink` (one `send` per datagram). This is the only class the
 * Effect shell (`internal/connection.ts`) and the simulator drive.
 *
 * Remote sessions (docs/PROTOCOL.md "Engine behaviour"):
 * - created on the first live packet of an unknown session (data that is not a retransmission,
 *   heartbeat, announce) and synchronised there: no NAKs for earlier history (a late joiner).
 *   Exception: when that packet carries the fresh flag and this endpoint has been open for at least
 *   `freshWindowMs + FRESH_JOIN_MARGIN_MS`, the endpoint was listening before the session's first
 *   data segment, so it synchronises at sequence 1 and requests whatever it missed (unless it
 *   received the same session before, e.g. one that went Gone and came back). Retransmissions,
 *   Lost and Goodbye from an unknown session are ignored;
 * - a new session with the restart key (host, application, senderIndex) of an existing one
 *   replaces it ("Restarted", its open gaps SenderGone) only if the old one has been quiet for
 *   `quietMs`; while the old one is live both are received (a Conflict) and the old one ends
 *   "restarted" once quiet, so a forged session cannot end a live one;
 * - closed sessions are tombstoned (their lingering Goodbyes and retransmissions must not re-create
 *   them) for `senderTimeoutMs`; a live packet beyond the Goodbye resumes the session where it
 *   closed (a forged Goodbye); a session that went silent ("gone") or was replaced is not, so if it
 *   comes back it rejoins as a new receiver synchronised at its current position;
 * - at most `maxRemoteSessions`, a quarter of them on probation (not proven); further new sessions
 *   are refused, never evicting a live one. Deadlines live in a heap: timers visit due sessions only.
 * See docs/PROTOCOL.md "Hostile networks" for every check against forged traffic.
 *
 * Datagrams from this endpoint's own sessions (multicast loopback), including the control session
 * that is the source of its NAKs (senderIndex 0xffff), are ignored.
 *
 * Receivers and flow control (docs/PROTOCOL.md "Flow control"): while `listening` (the connection has
 * subscriptions) the endpoint reports its position in every remote session it receives in Status
 * packets from its control session — at once when it joins a session, whenever a quarter of its
 * window has arrived since the last report, and periodically (every `statusIntervalMs` while data
 * flows, doubling while idle up to a quarter of `receiverTimeoutMs`), plus once `leaving` when it
 * stops; each report is flushed at once (`EngineSink.flushControl`), not at the end of the drive.
 * As a sender it keeps the remote receivers it hears (presence) and feeds their positions to each
 * local sender's `FlowWindow`; a receiver not heard for `receiverTimeoutMs` leaves.
 *
 * Wire dialect (docs/PROTOCOL.md "pycast dialect"): datagrams are decoded and encoded by the
 * connection's `Dialect` (native, or pycast's when `config.pycast` is set); the engine itself only
 * sees its own packet model. Without Status in the dialect the endpoint never reports as a receiver.
 *
 * Decoded payloads are views into the received datagram: the driver must not reuse receive buffers.
 */
import { ENVELOPE_OVERHEAD, looksSealed, SecureChannel } from "../security/envelope.js"
import { zeroEngineStats } from "./counters.js"
import { type ControlCodec, type Dialect, nativeDialect } from "./dialect.js"
import {
  type ConflictReason,
  connectionBufferBytes,
  type EngineConfig,
  type EngineSink,
  type EngineStats,
  FRESH_JOIN_MARGIN_MS,
  freshWindowMs,
  type LossReport,
  maxRemoteSessions,
  maxUnconfirmedSessions,
  quietMs,
  type ReceivedUpdate,
  type ReceiverInfo,
  type RemoteReceiverStats,
  type RemoteSessionStats,
  retransmitRateBytes,
  type SessionEvent,
  type SessionInfo,
  stallMs
} from "./engine.js"
import { makeSenderFlow } from "./flow.js"
import { DeadlineHeap } from "./heap.js"
import { PacketKind, type SeqRange, type Source, type StatusEntry, type StatusPacket } from "./packets.js"
import { pycastDialect } from "./pycastDialect.js"
import { type ReceiverHost, RemoteSession } from "./receiver.js"
import { LocalSender, type PublishResult, type SenderHost } from "./sender.js"
import {
  encodeReceiverName,
  encodeStatus,
  isDecodeFailure,
  makeSourcePrefix,
  type SourcePrefix,
  STATUS_ENTRY_SIZE,
  statusHeaderSize
} from "./wire.js"

export { LocalSender, type PublishResult } from "./sender.js"

/** senderIndex of the control session that sends this endpoint's NAKs. */
export const CONTROL_SENDER_INDEX = 0xffff
const MAX_TOMBSTONES = 1024
const MAX_ENDED_SESSIONS = 64
/** Distinct hosts counted in `nakRequesters`; later hosts are counted under OTHER_REQUESTERS. */
const MAX_NAK_REQUESTERS = 256
export const OTHER_REQUESTERS = "(other hosts)"
/** Remote receivers tracked per connection; statuses from further unknown receivers are dropped and counted. */
const MAX_RECEIVERS = 4096
/** NAK requesters (addresses) with a retransmission token bucket; the oldest is forgotten beyond this. */
const MAX_REQUESTER_BUCKETS = 4096
/**
 * What all remote sessions of a connection remember together of the datagrams they accepted, for
 * the duplicate-content check (`ContentMismatch`): at most this many bytes and datagrams, the
 * oldest forgotten first. Each session keeps its last 16 on top of this bound, so without it 1 024
 * sessions of 1 400-byte datagrams held ~22 MB (1 GB with 65 000-byte segments).
 */
export const REMEMBERED_BYTES = 4 * 1024 * 1024
export const REMEMBERED_DATAGRAMS = 4096
/** Where the copy ring wraps while what is remembered is small (see `remember`). */
const RING_SOFT_BYTES = 256 * 1024
/** `memOffset` of an entry whose datagram is to be copied at the end of the receive batch. */
const UNCOPIED = -2

/** A closed session's id is ignored for a while; data beyond its Goodbye resumes it (a forged Goodbye). */
interface Tombstone {
  at: number
  /** The last sequence number the session had when it closed. */
  readonly seq: number
}

/** A token bucket in bytes: the publish bandwidth, a requester's or all requesters' retransmissions. */
interface TokenBucket {
  tokens: number
  at: number
}

/** Adds what `ratePerSecond` earned since `b.at`, up to `cap`. */
const refill = (b: TokenBucket, ratePerSecond: number, cap: number, now: number): void => {
  if (now > b.at) {
    b.tokens = Math.min(cap, b.tokens + ((now - b.at) * ratePerSecond) / 1000)
    b.at = now
  }
}

/** A remote receiving endpoint heard through its Status packets. */
interface RemoteReceiver {
  readonly id: bigint
  readonly info: ReceiverInfo
  readonly joinedAt: number
  lastHeardAt: number
  /** Its window per session it reports on. */
  windowBytes: number
  windowSegments: number
  /** Its position in each local sender it reported on. */
  readonly positions: Map<LocalSender, number>
  /** Local senders it is left out of flow control for (stalled: see `stallMs`). */
  readonly stalled: Set<LocalSender>
  /** Earliest time the next Conflict event about it may be emitted (rate limit). */
  conflictEventAt: number
}

export interface EndpointOptions {
  readonly config: EngineConfig
  readonly sink: EngineSink
  /** Uniform in [0, 1); seeded in tests. Used for NAK back-off and (by default) session ids. */
  readonly random: () => number
  readonly now: number
  /**
   * Session ids (tests). Default: random 64-bit ids, or in the pycast dialect ids of pycast's form
   * (`pycastSessionId`: host, start second, random sender id), which a replacement must keep.
   */
  readonly newSessionId?: () => bigint
  /** Wall-clock ms since the epoch carried by Announce (informational); default: `now`. */
  readonly wallClock?: () => number
  /** Random bytes of the security envelope's nonce prefix; default: node:crypto `randomBytes`. */
  readonly randomBytes?: (n: number) => Uint8Array
}

export interface LocalSenderStats {
  readonly session: SessionInfo
  /** Same as `session` (the shell's console names it `source`). */
  readonly source: SessionInfo
  readonly highestSeq: number
  readonly cachedSegments: number
  readonly cachedBytes: number
}

const hex16 = (id: bigint): string => id.toString(16).padStart(16, "0")

export class Endpoint implements SenderHost, ReceiverHost {
  readonly config: EngineConfig
  readonly stats: EngineStats
  /** NAK packets received for this endpoint's sessions, per requesting host (web console). */
  readonly nakRequesters = new Map<string, number>()
  readonly random: () => number
  /** The wire dialect of this connection (native, or pycast's). */
  readonly dialect: Dialect
  private readonly sink: EngineSink
  private readonly newSessionId: (now: number) => bigint
  private readonly wallClock: (() => number) | undefined
  /** Seals every datagram sent and opens every datagram received (`config.security`). */
  private readonly channel: SecureChannel | undefined
  private closed = false

  private readonly senders: Array<LocalSender> = []
  private senderCount = 0
  private readonly sendersById = new Map<bigint, LocalSender>()
  /** Ids of every session this endpoint ever owned (loopback filter). */
  private readonly ownIds = new Set<bigint>()
  private readonly control: SourcePrefix
  private readonly controlCodec: ControlCodec
  private readonly maxNakRanges: number
  /** From this time on, a fresh session first heard is synchronised at sequence 1. */
  private freshSyncFrom: number

  private readonly receivers = new Map<bigint, RemoteSession>()
  private readonly byKey = new Map<string, RemoteSession>()
  private readonly tombstones = new Map<bigint, Tombstone>()
  /** Remote sessions not proven yet (probation: see `RemoteSession.proven`). */
  private readonly unconfirmed = new Set<RemoteSession>()
  private readonly sessionCap: number
  private readonly unconfirmedCap: number
  /** Remote sessions by their next deadline (lazy; see heap.ts). */
  private readonly heap = new DeadlineHeap<RemoteSession>()
  /** Sessions whose timers `onTimer` ran (tests: the work per timer does not scan every session). */
  sessionVisits = 0
  /** Reorder + reassembly bytes held over every remote session, and how many sessions hold any. */
  bufferedBytes = 0
  private sessionsBuffering = 0
  private readonly bufferBudget: number
  private readonly stallMs: number
  private readonly requesterBuckets = new Map<string, TokenBucket>()
  private readonly retransmitRate: number
  private readonly retransmitBurst: number
  /** Retransmission allowance over all requesters (4 × the per-requester rate and burst). */
  private readonly totalBucket: TokenBucket
  private readonly ended: Array<RemoteSessionStats> = []
  /** FIFO of remembered datagrams (session, sequence, size), a ring of REMEMBERED_DATAGRAMS. */
  private readonly memSession: Array<RemoteSession | undefined> = new Array(REMEMBERED_DATAGRAMS).fill(undefined)
  private readonly memSeq = new Float64Array(REMEMBERED_DATAGRAMS)
  private readonly memSize = new Int32Array(REMEMBERED_DATAGRAMS)
  /** Where each entry's copy is in `memRing`; -1: a view of its datagram; UNCOPIED: copied at the batch's end. */
  private readonly memOffset = new Int32Array(REMEMBERED_DATAGRAMS)
  /**
   * Copies of remembered fragments (allocated at the first), so that their datagrams' memory can
   * go back to the socket. Filled in FIFO order, wrapping at the end: the live copies form one arc
   * from the oldest to `memTail`.
   */
  private memRing: Uint8Array | undefined = undefined
  private memTail = 0
  private memHead = 0
  /** Entries that ever left the FIFO: `memHead` counted without wrapping. */
  private memHeadAbs = 0
  private memCount = 0
  /** The first entry (counted as `memHeadAbs`) still to copy at the end of the batch, or -1. */
  private memUncopiedFrom = -1
  /** Bytes counted in that FIFO (an entry a session already replaced counts until it leaves it). */
  rememberedBytes = 0
  /** Last receiver looked up by its (cached, shared) decoded Source object. */
  private lastSource: Source | undefined = undefined
  private lastSession: RemoteSession | undefined = undefined

  // --- as a receiver: status reports
  private listening: boolean
  private readonly nameBytes: Uint8Array
  private readonly maxStatusEntries: number
  private statusDue = Number.POSITIVE_INFINITY
  private statusInterval: number
  /** Data bytes arrived since the last status (a quarter of the window triggers one). */
  private arrivedBytes = 0
  private arrivedSinceStatus = false
  private statusNow = false

  // --- as a sender: remote receivers (presence) and the window they allow
  private readonly remoteReceivers = new Map<bigint, RemoteReceiver>()
  /** Earliest time a remote receiver may time out (a lower bound; rescanned when reached). */
  private receiversDue = Number.POSITIVE_INFINITY

  /** Publish bandwidth (bytes); only used when maxBandwidth > 0. */
  private readonly bandwidth: TokenBucket
  private readonly burst: number

  constructor(options: EndpointOptions) {
    const security = options.config.security
    // Packets are built smaller by the envelope, so a sealed datagram still fits `segmentSize`.
    this.config =
      security === undefined
        ? options.config
        : { ...options.config, segmentSize: options.config.segmentSize - ENVELOPE_OVERHEAD }
    this.sink = options.sink
    this.random = options.random
    this.wallClock = options.wallClock
    const random = options.random
    const wallClock = options.wallClock
    const wall = wallClock !== undefined ? () => wallClock() : (now: number) => now
    const dialect =
      this.config.pycast !== undefined
        ? pycastDialect(this.config, this.config.pycast, wall, wall(options.now))
        : nativeDialect
    this.dialect = dialect
    const given = options.newSessionId
    this.newSessionId =
      given !== undefined
        ? () => given()
        : dialect.sessionId !== undefined
          ? (now) => dialect.sessionId!(random, wall(now))
          : () => (BigInt(Math.floor(random() * 4294967296)) << 32n) | BigInt(Math.floor(random() * 4294967296))
    this.stats = zeroEngineStats()
    this.channel = security === undefined ? undefined : new SecureChannel(security, this.stats, options.randomBytes)
    const controlSource: Source = {
      sessionId: this.freshId(options.now),
      senderIndex: CONTROL_SENDER_INDEX,
      host: this.config.host,
      application: this.config.application
    }
    this.control = makeSourcePrefix(controlSource)
    this.controlCodec = dialect.control(controlSource, this.config.segmentSize)
    this.maxNakRanges = this.controlCodec.maxNakRanges
    this.freshSyncFrom = options.now + freshWindowMs(this.config) + FRESH_JOIN_MARGIN_MS
    // Status (flow control, presence) exists only in the native dialect.
    this.listening = dialect.status && (this.config.listening ?? false)
    this.nameBytes = encodeReceiverName(this.config.receiverName)
    this.maxStatusEntries = Math.max(
      1,
      Math.floor((this.config.segmentSize - statusHeaderSize(this.control, this.nameBytes)) / STATUS_ENTRY_SIZE)
    )
    this.statusInterval = this.config.statusIntervalMs
    if (this.listening) this.statusNow = true
    this.sessionCap = maxRemoteSessions(this.config)
    this.unconfirmedCap = maxUnconfirmedSessions(this.config)
    this.bufferBudget = connectionBufferBytes(this.config)
    this.stallMs = stallMs(this.config)
    this.retransmitRate = retransmitRateBytes(this.config)
    // A requester may get 1/32 s worth at once (128 KiB by default, at least two segments): enough
    // for a burst loss to be repaired over a few retries, little for one forged NAK.
    this.retransmitBurst = Math.max(2 * this.config.segmentSize, this.retransmitRate / 32)
    this.totalBucket = { tokens: 4 * this.retransmitBurst, at: options.now }
    this.burst = Math.max(65536, this.config.maxBandwidth * 0.01)
    this.bandwidth = { tokens: this.burst, at: options.now }
  }

  /** A session id not used by this endpoint yet. */
  private freshId(now: number): bigint {
    let id = this.newSessionId(now)
    while (this.ownIds.has(id)) id = this.newSessionId(now)
    this.ownIds.add(id)
    return id
  }

  // ---------------------------------------------------------------------------------------------
  // Output helpers (SenderHost / ReceiverHost)
  // ---------------------------------------------------------------------------------------------

  /**
   * The shell flushed its sockets: with `reuseSendMemory`, what the senders' caches evicted so far
   * may be carved again (see `EngineConfig.reuseSendMemory`).
   */
  afterFlush(): void {
    const senders = this.senders
    for (let i = 0; i < senders.length; i++) senders[i].recycle()
  }

  /** Data-channel packets: data, retransmissions, heartbeats, announce, lost, goodbye. */
  emit(datagram: Uint8Array, now: number): void {
    this.sink.send(this.account(datagram, now))
  }

  /** Control-channel packets: NAKs and Status, which only senders (and suppressing receivers) need. */
  private emitControl(datagram: Uint8Array, now: number): void {
    datagram = this.account(datagram, now)
    if (this.sink.sendControl !== undefined) this.sink.sendControl(datagram)
    else this.sink.send(datagram)
  }

  private account(datagram: Uint8Array, now: number): Uint8Array {
    // Every packet kind leaves through here: sealed with a fresh nonce each time (retransmissions too).
    if (this.channel !== undefined) datagram = this.channel.seal(datagram, now)
    const stats = this.stats
    stats.datagramsOut++
    stats.bytesOut += datagram.length
    if (this.config.maxBandwidth > 0) {
      refill(this.bandwidth, this.config.maxBandwidth, this.burst, now)
      this.bandwidth.tokens -= datagram.length
    }
    return datagram
  }

  deliverLocal(sender: LocalSender, topic: string, payload: Uint8Array, sequence: number): void {
    if (this.sink.hasLocalSubscribers?.() === false) return
    this.sink.deliver({ topic, payload, source: sender.session, sequence })
  }

  deliver(update: ReceivedUpdate): void {
    this.sink.deliver(update)
  }

  loss(report: LossReport): void {
    this.sink.loss(report)
  }

  event(event: SessionEvent): void {
    this.sink.event(event)
  }

  conflict(session: RemoteSession, reason: ConflictReason, detail: string, now: number): void {
    if (reason === "ImplausibleClaim") this.stats.implausible++
    else this.stats.conflicts++
    if (now < session.conflictEventAt) return
    session.conflictEventAt = now + 1000
    this.sink.event({ _tag: "Conflict", session: session.info, reason, detail })
  }

  remember(session: RemoteSession, seq: number, bytes: Uint8Array, copy: boolean): void {
    const size = bytes.length
    // Entries their session has replaced since (it keeps its last RECENT) cover nothing: leaving
    // first, they keep the FIFO as short as what is really remembered.
    while (this.memCount > 0 && !this.memSession[this.memHead]!.remembers(this.memSeq[this.memHead])) {
      this.forgetOldest()
    }
    while (
      this.memCount > 0 &&
      (this.memCount === REMEMBERED_DATAGRAMS || this.rememberedBytes + size > REMEMBERED_BYTES)
    ) {
      this.forgetOldest()
    }
    const i = (this.memHead + this.memCount) & (REMEMBERED_DATAGRAMS - 1)
    if (copy && this.memUncopiedFrom < 0) this.memUncopiedFrom = this.memHeadAbs + this.memCount
    this.memSession[i] = session
    this.memSeq[i] = seq
    this.memSize[i] = size
    this.memOffset[i] = copy ? UNCOPIED : -1
    this.memCount++
    this.rememberedBytes += size
  }

  /**
   * End of a receive batch (the socket's wake-up): the datagrams remembered with `copy` whose memory
   * goes back to the socket now are copied to the ring — only those their session still remembers.
   * A session keeps its last 16, so of a 64 KiB update read as one run of 47 fragments, 16 are
   * copied, not 47 (the copies were 8.5 % of a 64 KiB subscriber's CPU).
   */
  endReceiveBatch(): void {
    const from = this.memUncopiedFrom
    if (from < 0) return
    this.memUncopiedFrom = -1
    const ring = (this.memRing ??= new Uint8Array(REMEMBERED_BYTES))
    for (let abs = Math.max(from, this.memHeadAbs); abs < this.memHeadAbs + this.memCount; abs++) {
      const i = (this.memHead + (abs - this.memHeadAbs)) & (REMEMBERED_DATAGRAMS - 1)
      if (this.memOffset[i] !== UNCOPIED) continue
      const session = this.memSession[i]!
      const seq = this.memSeq[i]
      const bytes = session.uncopied(seq)
      this.memOffset[i] = -1
      // Replaced by a later datagram of its session: covers nothing, leaves the FIFO in turn.
      if (bytes === undefined) continue
      const size = bytes.length
      // Wrapped early while little is remembered: the copies then cycle through a few hundred KiB
      // that stay in the CPU's cache. Sweeping all 4 MiB for one session's last 16 fragments made
      // every copy a cache miss (10 % of a 64 KiB subscriber's CPU).
      const end = Math.min(ring.length, Math.max(RING_SOFT_BYTES, 2 * this.rememberedBytes))
      if (this.memTail + size > end) this.memTail = 0
      const offset = this.memTail
      this.memTail += size
      // The oldest copies lie right after the tail: forget them until the new one fits (never this
      // entry: the loop stops once no copy is left, and this one is not a copy yet).
      while (this.memCount > 0 && this.oldestCopyOverlaps(offset, size)) this.forgetOldest()
      ring.set(bytes, offset)
      this.memOffset[i] = offset
      session.rememberedCopy(seq, ring, offset)
    }
  }

  private forgetOldest(): void {
    const i = this.memHead
    this.memSession[i]!.forget(this.memSeq[i])
    this.memSession[i] = undefined
    this.rememberedBytes -= this.memSize[i]
    this.memHead = (i + 1) & (REMEMBERED_DATAGRAMS - 1)
    this.memHeadAbs++
    this.memCount--
  }

  /** Whether the oldest remembered copy (entries before it are views) overlaps `[offset, +size)`. */
  private oldestCopyOverlaps(offset: number, size: number): boolean {
    for (let k = 0; k < this.memCount; k++) {
      const i = (this.memHead + k) & (REMEMBERED_DATAGRAMS - 1)
      const at = this.memOffset[i]
      if (at < 0) continue
      return at < offset + size && offset < at + this.memSize[i]
    }
    return false
  }

  buffered(session: RemoteSession, delta: number): void {
    this.bufferedBytes += delta
    const before = session.bufferedBytes - delta
    if (before === 0 && session.bufferedBytes > 0) this.sessionsBuffering++
    else if (before > 0 && session.bufferedBytes === 0) this.sessionsBuffering--
  }

  /**
   * Per-connection memory bound: over budget, the session that just grew gives up its oldest
   * pending data if it holds at least its fair share (so a flood of forged sessions sheds its own
   * buffers, not the live session's).
   */
  private enforceBudget(session: RemoteSession, now: number): void {
    const excess = this.bufferedBytes - this.bufferBudget
    if (excess <= 0 || session.bufferedBytes === 0) return
    if (session.bufferedBytes * Math.max(1, this.sessionsBuffering) < this.bufferedBytes) return
    session.shed(Math.max(0, session.bufferedBytes - excess), now)
  }

  /**
   * Answers a NAK within the requester's allowance and the endpoint's total one (four requesters'
   * worth: a forger rotating source addresses gets no more). Returns whether it was cut.
   */
  private answerNak(sender: LocalSender, ranges: ReadonlyArray<SeqRange>, address: string, now: number): boolean {
    const requester = this.requesterBucket(address, now)
    if (requester === undefined) return sender.onNak(ranges, now)
    const total = this.totalBucket
    refill(total, 4 * this.retransmitRate, 4 * this.retransmitBurst, now)
    const allowance = { tokens: Math.min(requester.tokens, total.tokens) }
    const before = allowance.tokens
    const cut = sender.onNak(ranges, now, allowance)
    const spent = before - allowance.tokens
    requester.tokens -= spent
    total.tokens -= spent
    return cut
  }

  /** The retransmission allowance of a requesting address, refilled to `now`; undefined: unlimited. */
  private requesterBucket(address: string, now: number): TokenBucket | undefined {
    const rate = this.retransmitRate
    if (rate <= 0) return undefined
    const buckets = this.requesterBuckets
    let b = buckets.get(address)
    if (b === undefined) {
      if (buckets.size >= MAX_REQUESTER_BUCKETS) {
        const oldest = buckets.keys().next().value
        if (oldest !== undefined) buckets.delete(oldest)
      }
      b = { tokens: this.retransmitBurst, at: now }
      buckets.set(address, b)
    } else refill(b, rate, this.retransmitBurst, now)
    return b
  }

  sendNak(target: bigint, ranges: ReadonlyArray<SeqRange>, now: number): void {
    const max = this.maxNakRanges
    for (let i = 0; i < ranges.length; i += max) {
      this.stats.naksSent++
      const datagrams = this.controlCodec.nak(
        target,
        i === 0 && ranges.length <= max ? ranges : ranges.slice(i, i + max)
      )
      for (let k = 0; k < datagrams.length; k++) this.emitControl(datagrams[k], now)
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Publishing
  // ---------------------------------------------------------------------------------------------

  openSender(now: number): LocalSender {
    if (this.closed) throw new Error("Endpoint.openSender: endpoint is closed")
    const sessionId = this.freshId(now)
    const session: SessionInfo = {
      sessionId,
      sessionIdHex: hex16(sessionId),
      senderIndex: this.senderCount++,
      host: this.config.host,
      application: this.config.application,
      address: "local"
    }
    const mode = this.config.flowControl
    const flow = mode === "none" ? undefined : makeSenderFlow(mode)
    // Receivers present now were listening before this session began: they will start at sequence 1.
    if (flow !== undefined) {
      for (const r of this.remoteReceivers.values()) {
        flow.bytes.set(r.id, r.windowBytes)
        flow.seqs.set(r.id, r.windowSegments)
      }
    }
    const sender = new LocalSender(this, session, now, this.wallClock !== undefined ? this.wallClock() : now, flow)
    this.senders.push(sender)
    this.sendersById.set(sessionId, sender)
    return sender
  }

  publish(sender: LocalSender, topic: string, payload: Uint8Array, now: number): PublishResult {
    if (this.closed) return "closed"
    return sender.publish(topic, payload, now)
  }

  endBatch(sender: LocalSender, now: number): void {
    if (!this.closed) sender.endBatch(now)
  }

  flush(sender: LocalSender, now: number): void {
    if (!this.closed) sender.flushOpen(now)
  }

  /** Milliseconds until the token bucket allows more publishing (0 = go). */
  publishDelay(_sender: LocalSender, now: number): number {
    const rate = this.config.maxBandwidth
    if (rate <= 0) return 0
    refill(this.bandwidth, rate, this.burst, now)
    const tokens = this.bandwidth.tokens
    return tokens >= 0 ? 0 : Math.ceil((-tokens * 1000) / rate)
  }

  closeSender(sender: LocalSender, now: number): void {
    if (!this.closed) sender.close(now)
  }

  /**
   * Closes every sender (flush, the flow-control queue sent at once, goodbye), tells the remote
   * senders this receiver leaves, and drops all receivers without further events.
   */
  close(now: number): void {
    if (this.closed) return
    if (this.listening) this.sendStatus(now, true)
    for (const s of this.senders) {
      s.close(now, true)
      s.release()
    }
    this.closed = true
    this.senders.length = 0
    this.sendersById.clear()
    this.receivers.clear()
    this.unconfirmed.clear()
    this.heap.clear()
    this.byKey.clear()
    this.remoteReceivers.clear()
    this.memSession.fill(undefined)
    this.memCount = 0
    this.rememberedBytes = 0
    this.memRing = undefined
    this.memTail = 0
    this.memUncopiedFrom = -1
    this.lastSource = undefined
    this.lastSession = undefined
  }

  // ---------------------------------------------------------------------------------------------
  // Receiving
  // ---------------------------------------------------------------------------------------------

  /**
   * One received datagram. `channel`: the socket it came from when the connection has two
   * ("Channels" in docs/PROTOCOL.md): each accepts only its own kinds, so a connection on the port
   * next to another's cannot take that one's traffic for its own. Omitted: one channel, any kind.
   * Returns false when nothing of `bytes` is kept past the batch: after `endReceiveBatch` the
   * socket may read into its memory again.
   */
  onDatagram(bytes: Uint8Array, address: string, now: number, channel?: "data" | "control"): boolean {
    const stats = this.stats
    stats.datagramsIn++
    stats.bytesIn += bytes.length
    if (this.closed) return false
    // Nothing reaches the decoder unless it is authentic, fresh and new (docs/PROTOCOL.md "Security").
    if (this.channel !== undefined) {
      const inner = this.channel.open(bytes, now)
      if (inner === undefined) return false
      bytes = inner
    } else if (looksSealed(bytes)) {
      stats.securityMismatch++
      return false
    }
    const p = this.dialect.decode(bytes, now)
    if (p === undefined) return false
    if (isDecodeFailure(p)) {
      stats.decodeErrors++
      return false
    }
    if (
      channel !== undefined &&
      (p.kind === PacketKind.Nak || p.kind === PacketKind.Status) !== (channel === "control")
    ) {
      stats.wrongChannel++
      return false
    }
    const source = p.source
    let session: RemoteSession | undefined
    if (source === this.lastSource) {
      session = this.lastSession
    } else {
      const id = source.sessionId
      if (this.ownIds.has(id)) return false
      session = this.receivers.get(id)
      if (session !== undefined) {
        this.lastSource = source
        this.lastSession = session
      }
    }
    // Whether `bytes` is referenced after this batch (the socket may reuse its memory if not).
    let kept = true
    switch (p.kind) {
      case PacketKind.Data: {
        if (session === undefined) {
          if (p.retransmission) return false
          session = this.join(source, address, now, p.seq, p.fresh && this.listenedSinceStart(source, now) ? 1 : p.seq)
          if (session === undefined) return false
        }
        kept = session.onData(p, now, bytes)
        if (session.bufferedBytes > 0 && this.bufferedBytes > this.bufferBudget) this.enforceBudget(session, now)
        if (this.unconfirmed.size > 0 && session.proven) this.unconfirmed.delete(session)
        if (this.listening) {
          this.arrivedSinceStatus = true
          this.arrivedBytes += bytes.length
          if (this.arrivedBytes * 4 * Math.max(1, this.receivers.size) >= this.config.receiverWindowBytes)
            this.statusNow = true
        }
        break
      }
      case PacketKind.Heartbeat:
      case PacketKind.Announce: {
        if (session === undefined) {
          session = this.join(
            source,
            address,
            now,
            p.highestSeq,
            p.fresh && this.listenedSinceStart(source, now) ? 1 : p.highestSeq + 1
          )
          if (session === undefined) return true
        }
        session.onHeartbeat(p.highestSeq, p.kind === PacketKind.Heartbeat ? p.oldestCached : -1, now)
        break
      }
      case PacketKind.Lost:
        if (session === undefined) return true
        session.onLost(p.ranges, now)
        break
      case PacketKind.Goodbye:
        if (session === undefined) return true
        session.onGoodbye(p.highestSeq, now)
        break
      case PacketKind.Nak: {
        const target = p.target
        const sender = this.sendersById.get(target)
        if (sender !== undefined) {
          this.countNakRequester(source.host)
          if (this.answerNak(sender, p.ranges, address, now)) this.stats.naksThrottled++
          return true
        }
        // Another receiver's NAK for a session we receive too: suppression.
        const heard = this.receivers.get(target)
        if (heard !== undefined) {
          heard.onHeardNak(p.ranges, now)
          this.heap.schedule(heard, heard.deadline())
        }
        return true
      }
      case PacketKind.Status:
        this.onStatus(p, address, now)
        return true
    }
    if (session.closingDone) this.endSession(session, "closed", now)
    else this.heap.schedule(session, session.deadline())
    if (this.statusNow) this.sendStatus(now, false)
    return kept
  }

  // ---------------------------------------------------------------------------------------------
  // Status: as a receiver (reports) and as a sender (presence, flow control)
  // ---------------------------------------------------------------------------------------------

  /**
   * The shell joined the data channel only now (it was sending only): fresh sessions count from
   * here, as from opening, since nothing sent before was heard.
   */
  joinedData(now: number): void {
    this.freshSyncFrom = now + freshWindowMs(this.config) + FRESH_JOIN_MARGIN_MS
  }

  /** Start or stop reporting as a receiver (the shell: while the connection has subscriptions). */
  setListening(listening: boolean, now: number): void {
    if (this.closed || listening === this.listening || !this.dialect.status) return
    if (!listening) this.sendStatus(now, true)
    this.listening = listening
    this.statusInterval = this.config.statusIntervalMs
    if (listening) this.sendStatus(now, false)
    else this.statusDue = Number.POSITIVE_INFINITY
  }

  /** One report (split over several packets when it lists more sessions than fit one). */
  private sendStatus(now: number, leaving: boolean): void {
    const config = this.config
    const entries: Array<StatusEntry> = []
    for (const r of this.receivers.values()) entries.push({ target: r.info.sessionId, position: r.next - 1 })
    const max = this.maxStatusEntries
    let i = 0
    do {
      this.stats.statusSent++
      this.emitControl(
        encodeStatus(
          this.control,
          this.nameBytes,
          leaving,
          config.receiverWindowBytes,
          config.receiverWindowSegments,
          entries.length <= max ? entries : entries.slice(i, i + max)
        ),
        now
      )
      i += max
    } while (i < entries.length)
    this.sink.flushControl?.()
    // Data flowing: report at the base interval; idle: back off to a quarter of the receiver timeout.
    this.statusInterval = this.arrivedSinceStatus
      ? config.statusIntervalMs
      : Math.min(Math.max(config.statusIntervalMs, config.receiverTimeoutMs / 4), this.statusInterval * 2)
    this.statusDue = now + this.statusInterval
    this.arrivedBytes = 0
    this.arrivedSinceStatus = false
    this.statusNow = false
  }

  /** Largest window a sender allows, whatever receivers ask: nothing unconsumed may leave the cache. */
  private maxFlowBytes(): number {
    return Math.max(1, Math.floor(this.config.cacheMaxBytes / 2))
  }

  private onStatus(p: StatusPacket, address: string, now: number): void {
    this.stats.statusReceived++
    const id = p.source.sessionId
    let r = this.remoteReceivers.get(id)
    // A receiver id is one endpoint's control session, sending from one socket: heard from another
    // host or address it is forged (or two endpoints drew one id). The first one heard keeps it, so
    // a forger can neither move a live receiver's position nor make it leave.
    if (r !== undefined && (r.info.address !== address || r.info.host !== p.source.host)) {
      this.stats.statusRejected++
      this.receiverConflict(r, p, address, now)
      return
    }
    if (p.leaving) {
      if (r !== undefined) this.dropReceiver(r, "Left", now)
      return
    }
    // Its window is shared by the sessions it reports on, and capped so that nothing it has not
    // consumed can be evicted from the cache or land beyond its reorder buffer.
    const shares = Math.max(1, p.entries.length)
    const windowBytes = Math.max(1, Math.min(this.maxFlowBytes(), Math.floor(p.windowBytes / shares)))
    const windowSegments = Math.max(
      1,
      Math.min(this.config.reorderBufferSegments, Math.floor(p.windowSegments / shares))
    )
    if (r === undefined) {
      // Full: the newcomer is refused, never a live receiver evicted (forged ones expire unheard).
      if (this.remoteReceivers.size >= MAX_RECEIVERS) {
        this.stats.statusRejected++
        return
      }
      r = {
        id,
        info: {
          sessionIdHex: hex16(id),
          name: p.name,
          host: p.source.host,
          application: p.source.application,
          address
        },
        joinedAt: now,
        lastHeardAt: now,
        windowBytes,
        windowSegments,
        positions: new Map(),
        stalled: new Set(),
        conflictEventAt: Number.NEGATIVE_INFINITY
      }
      this.remoteReceivers.set(id, r)
      const due = now + this.config.receiverTimeoutMs
      if (due < this.receiversDue) this.receiversDue = due
      this.sink.event({ _tag: "ReceiverJoined", receiver: r.info })
    } else {
      r.lastHeardAt = now
      r.windowBytes = windowBytes
      r.windowSegments = windowSegments
    }
    const entries = p.entries
    // Positions for sessions nobody here sends or receives are ignored (a receiver may know a new
    // session a moment before we do; a forger's inventions show up here).
    for (let k = 0; k < entries.length; k++) {
      const target = entries[k].target
      if (!this.sendersById.has(target) && !this.receivers.has(target)) this.stats.statusUnknownSessions++
    }
    const senders = this.senders
    for (let i = 0; i < senders.length; i++) {
      const s = senders[i]
      let position: number | undefined
      const target = s.session.sessionId
      for (let k = 0; k < entries.length; k++) {
        if (entries[k].target === target) {
          // A position beyond what was sent is confused or forged: it opens no more than "all consumed".
          position = Math.min(entries[k].position, s.highestSeq)
          break
        }
      }
      if (position !== undefined) r.positions.set(s, position)
      else r.positions.delete(s)
      const flow = s.flow
      if (flow === undefined) continue
      // Not heard from this session yet: while it is fresh the receiver will start at sequence 1.
      if (position === undefined && now < s.freshUntil) position = 0
      if (position !== undefined && this.stalledAt(r, s, position, now)) position = undefined
      if (position !== undefined && position < s.highestSeq) {
        // Judged again when it would stall, even if it never reports again (expireReceivers).
        const due = s.sentAt(position + 1) + this.stallMs + 1
        if (due < this.receiversDue) this.receiversDue = due
      }
      if (position !== undefined) {
        flow.bytes.set(id, s.sentThrough(position) + windowBytes)
        flow.seqs.set(id, position + windowSegments)
      } else {
        flow.bytes.delete(id)
        flow.seqs.delete(id)
      }
      if (s.backlog) s.pump(now)
    }
  }

  /**
   * Whether receiver `r` at `position` is left out of `s`'s flow control: it is behind a segment
   * sent more than `stallMs` ago. A live receiver has that segment, or has given it up, within one
   * NAK retry budget, so this one is dead, stuck or forged (a forged Status at position 0 would
   * otherwise hold the publisher for as long as the forger repeats it). Judged on the sender's own
   * send times, not on when the receiver was first heard, so fresh forged ids gain nothing. It
   * counts again once it catches up.
   */
  private stalledAt(r: RemoteReceiver, s: LocalSender, position: number, now: number): boolean {
    const stalled = position < s.highestSeq && now - s.sentAt(position + 1) > this.stallMs
    if (stalled) {
      if (!r.stalled.has(s)) {
        r.stalled.add(s)
        this.stats.receiversStalled++
      }
    } else if (r.stalled.size > 0) r.stalled.delete(s)
    return stalled
  }

  private receiverConflict(r: RemoteReceiver, p: StatusPacket, address: string, now: number): void {
    this.stats.conflicts++
    if (now < r.conflictEventAt) return
    r.conflictEventAt = now + 1000
    const src = p.source
    this.sink.event({
      _tag: "Conflict",
      session: {
        sessionId: src.sessionId,
        sessionIdHex: r.info.sessionIdHex,
        senderIndex: src.senderIndex,
        host: src.host,
        application: src.application,
        address
      },
      reason: "ReceiverAddressChanged",
      detail: `receiver ${r.info.sessionIdHex} (${r.info.name}) known at ${r.info.host} ${r.info.address}, reported from ${src.host} ${address}: ignored`
    })
  }

  private dropReceiver(r: RemoteReceiver, reason: "Left" | "Timeout", now: number): void {
    this.remoteReceivers.delete(r.id)
    this.sink.event({ _tag: "ReceiverLeft", receiver: r.info, reason })
    for (const s of this.senders) {
      const flow = s.flow
      if (flow === undefined) continue
      flow.bytes.delete(r.id)
      if (flow.seqs.delete(r.id) && s.backlog) s.pump(now)
    }
  }

  /** Receivers that reported on `sender` (all live receivers when `sender` is undefined). */
  receiverCount(sender?: LocalSender): number {
    if (sender === undefined) return this.remoteReceivers.size
    let n = 0
    for (const r of this.remoteReceivers.values()) if (r.positions.has(sender)) n++
    return n
  }

  private expireReceivers(now: number): void {
    if (now < this.receiversDue) return
    const timeout = this.config.receiverTimeoutMs
    let due = Number.POSITIVE_INFINITY
    const stall = this.stallMs
    for (const r of Array.from(this.remoteReceivers.values())) {
      const expires = r.lastHeardAt + timeout
      if (expires <= now) {
        this.dropReceiver(r, "Timeout", now)
        continue
      }
      if (expires < due) due = expires
      // A receiver holding a sender from a position that has gone stale since its last report.
      for (const [s, position] of r.positions) {
        const flow = s.flow
        if (flow === undefined || position >= s.highestSeq || r.stalled.has(s)) continue
        if (this.stalledAt(r, s, position, now)) {
          flow.bytes.delete(r.id)
          if (flow.seqs.delete(r.id) && s.backlog) s.pump(now)
        } else {
          const stallDue = s.sentAt(position + 1) + stall + 1
          if (stallDue < due) due = stallDue
        }
      }
    }
    this.receiversDue = due
  }

  private countNakRequester(host: string): void {
    const requesters = this.nakRequesters
    const known = requesters.get(host)
    if (known !== undefined) requesters.set(host, known + 1)
    else if (requesters.size < MAX_NAK_REQUESTERS) requesters.set(host, 1)
    else requesters.set(OTHER_REQUESTERS, (requesters.get(OTHER_REQUESTERS) ?? 0) + 1)
  }

  /**
   * A fresh session first heard now started after this endpoint was listening (it has been open
   * longer than the fresh window plus margin), and it is not one received before (a Gone session
   * coming back resumes where it is, whatever its mark says).
   */
  private listenedSinceStart(source: Source, now: number): boolean {
    if (now < this.freshSyncFrom) return false
    const id = source.sessionId
    for (let i = 0; i < this.ended.length; i++) if (this.ended[i].session.sessionId === id) return false
    return true
  }

  /**
   * A receiver for a new session synchronised at `syncSeq`, or undefined (tombstoned, or no room).
   * `claim` is the packet's sequence number (Data) or highest sequence (Heartbeat, Announce).
   *
   * - A closed session's id stays tombstoned for `senderTimeoutMs` after its last packet; a packet
   *   that contradicts its Goodbye (a sequence beyond it) resumes it where it closed, with a Conflict
   *   event: a forged Goodbye costs a Closed event, never the data that follows.
   * - Room: at most `maxRemoteSessions`, of which a quarter unconfirmed (no complete update delivered
   *   yet); a new session beyond either is refused and counted, nothing live is evicted.
   * - A new session with the restart key of a live session (heard within `quietMs`) does not end it:
   *   both are received, a Conflict is reported, and the older one ends "restarted" once silent for
   *   `quietMs`. Only a quiet one is replaced at once ("Restarted", as a restart looks).
   */
  private join(
    source: Source,
    address: string,
    now: number,
    claim: number,
    syncSeq: number
  ): RemoteSession | undefined {
    const id = source.sessionId
    const tomb = this.tombstones.get(id)
    let resumeAt = 0
    if (tomb !== undefined) {
      if (now - tomb.at < this.config.senderTimeoutMs && claim <= tomb.seq) {
        tomb.at = now
        return undefined
      }
      this.tombstones.delete(id)
      if (now - tomb.at < this.config.senderTimeoutMs) resumeAt = tomb.seq + 1
    }
    if (this.receivers.size >= this.sessionCap || this.unconfirmed.size >= this.unconfirmedCap) {
      this.stats.sessionsRejected++
      return undefined
    }
    const info: SessionInfo = {
      sessionId: id,
      sessionIdHex: hex16(id),
      senderIndex: source.senderIndex,
      host: source.host,
      application: source.application,
      address
    }
    const session = new RemoteSession(this, info, now)
    session.syncAt(resumeAt > 0 ? resumeAt : syncSeq)
    let previous = this.byKey.get(session.key)
    let coexist = false
    if (previous !== undefined && resumeAt === 0) {
      if (now - previous.lastHeardAt >= quietMs(this.config)) {
        previous.terminate(now)
        this.retire(previous, "restarted", now)
      } else {
        coexist = true
        previous.superseded = true
        previous.successor = session
        session.predecessor = previous
        this.heap.schedule(previous, previous.deadline())
      }
    } else previous = undefined
    this.receivers.set(id, session)
    this.unconfirmed.add(session)
    this.byKey.set(session.key, session)
    if (this.listening) this.statusNow = true
    this.lastSource = source
    this.lastSession = session
    this.sink.event(
      previous === undefined || coexist
        ? { _tag: "Joined", session: info }
        : { _tag: "Restarted", session: info, previous: previous.info }
    )
    if (resumeAt > 0)
      this.conflict(session, "ClosedSessionResumed", `sequence ${claim} after its Goodbye at ${resumeAt - 1}`, now)
    if (coexist && previous !== undefined) {
      this.conflict(
        session,
        "SessionKeyInUse",
        `session ${previous.info.sessionIdHex} with the same key is still live`,
        now
      )
    }
    return session
  }

  /** Removes a session that has been terminated; tombstones it when it closed. */
  private retire(session: RemoteSession, state: "restarted" | "closed" | "gone", now: number): void {
    session.state = state
    const id = session.info.sessionId
    this.receivers.delete(id)
    this.unconfirmed.delete(session)
    session.heapAt = Number.POSITIVE_INFINITY
    const predecessor = session.predecessor
    if (this.byKey.get(session.key) === session) {
      // The newer session of a key ends before the older one it superseded: that one is current again.
      if (predecessor !== undefined && predecessor.state === "active") {
        this.byKey.set(session.key, predecessor)
        predecessor.superseded = false
        predecessor.successor = undefined
        this.heap.schedule(predecessor, predecessor.deadline())
      } else this.byKey.delete(session.key)
    } else if (predecessor !== undefined) predecessor.successor = undefined
    session.predecessor = undefined
    if (session.successor !== undefined) session.successor.predecessor = undefined
    if (this.lastSession === session) {
      this.lastSource = undefined
      this.lastSession = undefined
    }
    if (state === "closed") {
      if (this.tombstones.size >= MAX_TOMBSTONES) {
        const oldest = this.tombstones.keys().next().value
        if (oldest !== undefined) this.tombstones.delete(oldest)
      }
      this.tombstones.set(id, { at: now, seq: Math.max(session.highest, session.next - 1) })
    }
    this.ended.push(this.snapshot(session))
    if (this.ended.length > MAX_ENDED_SESSIONS) this.ended.shift()
  }

  private endSession(session: RemoteSession, state: "closed" | "gone" | "restarted", now: number): void {
    session.terminate(now)
    const successor = session.successor
    this.retire(session, state, now)
    if (state === "restarted" && successor !== undefined) {
      this.sink.event({ _tag: "Restarted", session: successor.info, previous: session.info })
    } else {
      this.sink.event({ _tag: state === "closed" ? "Closed" : "Gone", session: session.info })
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Timers
  // ---------------------------------------------------------------------------------------------

  onTimer(now: number): void {
    if (this.closed) return
    this.expireReceivers(now)
    const senders = this.senders
    for (let i = 0; i < senders.length; i++) {
      const s = senders[i]
      if (s.deadline() > now) continue
      if (now >= s.lingerUntil) {
        s.release()
        senders.splice(i--, 1)
        this.sendersById.delete(s.session.sessionId)
        continue
      }
      s.onTimer(now)
    }
    // Only the sessions whose deadline has come are visited (a heap, not a scan).
    const again: Array<RemoteSession> = []
    for (;;) {
      const r = this.heap.popDue(now)
      if (r === undefined) break
      this.sessionVisits++
      if (this.receivers.get(r.info.sessionId) !== r) continue
      if (r.deadline() <= now) {
        const end = r.onTimer(now)
        if (end !== undefined) {
          this.endSession(r, end, now)
          continue
        }
        if (r.closingDone) {
          this.endSession(r, "closed", now)
          continue
        }
      }
      again.push(r)
    }
    for (const r of again) this.heap.schedule(r, r.deadline())
    this.heap.compact(this.receivers.values(), this.receivers.size)
    if (this.listening && (this.statusNow || now >= this.statusDue)) this.sendStatus(now, false)
  }

  nextDeadline(): number {
    if (this.closed) return Number.POSITIVE_INFINITY
    let d = Number.POSITIVE_INFINITY
    const senders = this.senders
    for (let i = 0; i < senders.length; i++) {
      const t = senders[i].deadline()
      if (t < d) d = t
    }
    const t = this.heap.peek()
    if (t < d) d = t
    if (this.listening && this.statusDue < d) d = this.statusDue
    if (this.receiversDue < d) d = this.receiversDue
    return d
  }

  // ---------------------------------------------------------------------------------------------
  // Introspection
  // ---------------------------------------------------------------------------------------------

  private snapshot(r: RemoteSession): RemoteSessionStats {
    return {
      session: r.info,
      state: r.state,
      highestSeq: r.highest,
      delivered: r.delivered,
      lastHeardAt: r.lastHeardAt,
      naksSent: r.naksSent,
      retransmissionsReceived: r.retransmissionsReceived,
      lostSegments: r.lostSegments,
      duplicates: r.duplicates
    }
  }

  /** Active remote sessions, then the most recently ended ones (at most 64). */
  remoteSessions(): ReadonlyArray<RemoteSessionStats> {
    const out: Array<RemoteSessionStats> = []
    for (const r of this.receivers.values()) out.push(this.snapshot(r))
    for (let i = this.ended.length - 1; i >= 0; i--) out.push(this.ended[i])
    return out
  }

  localSenders(): ReadonlyArray<LocalSenderStats> {
    return this.senders.map((s) => ({
      session: s.session,
      source: s.session,
      highestSeq: s.highestSeq,
      cachedSegments: s.cachedSegments,
      cachedBytes: s.cachedBytes
    }))
  }

  /** Remote receivers heard on this connection (presence), with their positions in local senders. */
  remoteReceiverStats(): ReadonlyArray<RemoteReceiverStats> {
    const out: Array<RemoteReceiverStats> = []
    for (const r of this.remoteReceivers.values()) {
      const positions: Array<RemoteReceiverStats["positions"][number]> = []
      for (const [s, position] of r.positions) {
        positions.push({ session: s.session, position, lag: Math.max(0, s.highestSeq - position) })
      }
      out.push({
        receiver: r.info,
        joinedAt: r.joinedAt,
        lastHeardAt: r.lastHeardAt,
        windowBytes: r.windowBytes,
        windowSegments: r.windowSegments,
        positions
      })
    }
    return out
  }

  /** The receiver of a remote session (tests and diagnostics). */
  remoteSession(sessionId: bigint): RemoteSession | undefined {
    return this.receivers.get(sessionId)
  }
}
