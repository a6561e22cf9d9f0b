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
 *   replaces it: the old one's open gaps are reported lost (SenderGone), it is marked "restarted",
 *   and a "Restarted" event is emitted (instead of "Joined"). The replaced session id is remembered
 *   (tombstone) and its datagrams are ignored while it keeps sending, so two live sessions with the
 *   same key (a misconfiguration) never flip-flop: the newer one wins;
 * - closed sessions are tombstoned as well (their lingering Goodbyes and retransmissions must not
 *   re-create them); a session that went silent ("gone") is not, so if it comes back it rejoins
 *   as a new receiver synchronised at its current position;
 * - tombstones expire after `senderTimeoutMs` of silence and are capped in number.
 *
 * Datagrams from this endpoint's own sessions (multicast loopback), including the control session
 * that is the source of its NAKs (senderIndex 0xffff), are ignored.
 *
 * Receivers and flow control (docs/PROTOCOL.md "Flow control"): while `listening` (the connection has
 * subscriptions) the endpoint reports its position in every remote session it receives in Status
 * packets from its control session — at once when it joins a session, whenever a quarter of its
 * window has arrived since the last report, and periodically (every `statusIntervalMs` while data
 * flows, doubling while idle up to a quarter of `receiverTimeoutMs`), plus once `leaving` when it
 * stops. As a sender it keeps the remote receivers it hears (presence) and feeds their positions to
 * each local sender's `FlowWindow`; a receiver not heard for `receiverTimeoutMs` leaves.
 *
 * Decoded payloads are views into the received datagram: the driver must not reuse receive buffers.
 */
import { ENVELOPE_OVERHEAD, looksSealed, SecureChannel } from "../security/envelope.js"
import { zeroEngineStats } from "./counters.js"
import {
  type EngineConfig,
  type EngineSink,
  type EngineStats,
  FRESH_JOIN_MARGIN_MS,
  freshWindowMs,
  type LossReport,
  type ReceivedUpdate,
  type ReceiverInfo,
  type RemoteReceiverStats,
  type RemoteSessionStats,
  type SessionEvent,
  type SessionInfo
} from "./engine.js"
import { makeSenderFlow } from "./flow.js"
import { PacketKind, type SeqRange, type Source, type StatusEntry, type StatusPacket } from "./packets.js"
import { type ReceiverHost, RemoteSession } from "./receiver.js"
import { LocalSender, type PublishResult, type SenderHost } from "./sender.js"
import {
  decode,
  encodeNak,
  encodeReceiverName,
  encodeStatus,
  isDecodeFailure,
  makeSourcePrefix,
  maxRangesPerPacket,
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
}

export interface EndpointOptions {
  readonly config: EngineConfig
  readonly sink: EngineSink
  /** Uniform in [0, 1); seeded in tests. Used for NAK back-off and (by default) session ids. */
  readonly random: () => number
  readonly now: number
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
  private readonly sink: EngineSink
  private readonly newSessionId: () => bigint
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
  private readonly maxNakRanges: number
  /** From this time on, a fresh session first heard is synchronised at sequence 1. */
  private readonly freshSyncFrom: number

  private readonly receivers = new Map<bigint, RemoteSession>()
  private readonly byKey = new Map<string, RemoteSession>()
  private readonly tombstones = new Map<bigint, number>()
  private readonly ended: Array<RemoteSessionStats> = []
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

  // token bucket (bytes); only used when maxBandwidth > 0
  private tokens: number
  private tokensAt: number
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
    this.newSessionId =
      options.newSessionId ??
      (() => (BigInt(Math.floor(random() * 4294967296)) << 32n) | BigInt(Math.floor(random() * 4294967296)))
    this.stats = zeroEngineStats()
    this.channel = security === undefined ? undefined : new SecureChannel(security, this.stats, options.randomBytes)
    const controlId = this.freshId()
    this.control = makeSourcePrefix({
      sessionId: controlId,
      senderIndex: CONTROL_SENDER_INDEX,
      host: this.config.host,
      application: this.config.application
    })
    this.maxNakRanges = maxRangesPerPacket(this.control, this.config.segmentSize)
    this.freshSyncFrom = options.now + freshWindowMs(this.config) + FRESH_JOIN_MARGIN_MS
    this.listening = this.config.listening ?? false
    this.nameBytes = encodeReceiverName(this.config.receiverName)
    this.maxStatusEntries = Math.max(
      1,
      Math.floor((this.config.segmentSize - statusHeaderSize(this.control, this.nameBytes)) / STATUS_ENTRY_SIZE)
    )
    this.statusInterval = this.config.statusIntervalMs
    if (this.listening) this.statusNow = true
    this.burst = Math.max(65536, this.config.maxBandwidth * 0.01)
    this.tokens = this.burst
    this.tokensAt = options.now
  }

  /** A session id not used by this endpoint yet. */
  private freshId(): bigint {
    let id = this.newSessionId()
    while (this.ownIds.has(id)) id = this.newSessionId()
    this.ownIds.add(id)
    return id
  }

  // ---------------------------------------------------------------------------------------------
  // Output helpers (SenderHost / ReceiverHost)
  // ---------------------------------------------------------------------------------------------

  emit(datagram: Uint8Array, now: number): void {
    // Every packet kind leaves through here: sealed with a fresh nonce each time (retransmissions too).
    if (this.channel !== undefined) datagram = this.channel.seal(datagram, now)
    const stats = this.stats
    stats.datagramsOut++
    stats.bytesOut += datagram.length
    if (this.config.maxBandwidth > 0) {
      this.refill(now)
      this.tokens -= datagram.length
    }
    this.sink.send(datagram)
  }

  deliverLocal(sender: LocalSender, topic: string, payload: Uint8Array, sequence: number): void {
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

  sendNak(target: bigint, ranges: ReadonlyArray<SeqRange>, now: number): void {
    const max = this.maxNakRanges
    for (let i = 0; i < ranges.length; i += max) {
      this.stats.naksSent++
      this.emit(
        encodeNak(this.control, target, i === 0 && ranges.length <= max ? ranges : ranges.slice(i, i + max)),
        now
      )
    }
  }

  private refill(now: number): void {
    const elapsed = now - this.tokensAt
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.config.maxBandwidth) / 1000)
      this.tokensAt = now
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Publishing
  // ---------------------------------------------------------------------------------------------

  openSender(now: number): LocalSender {
    if (this.closed) throw new Error("Endpoint.openSender: endpoint is closed")
    const sessionId = this.freshId()
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
    this.refill(now)
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / rate)
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
    this.byKey.clear()
    this.remoteReceivers.clear()
    this.lastSource = undefined
    this.lastSession = undefined
  }

  // ---------------------------------------------------------------------------------------------
  // Receiving
  // ---------------------------------------------------------------------------------------------

  onDatagram(bytes: Uint8Array, address: string, now: number): void {
    const stats = this.stats
    stats.datagramsIn++
    stats.bytesIn += bytes.length
    if (this.closed) return
    // Nothing reaches the decoder unless it is authentic, fresh and new (docs/PROTOCOL.md "Security").
    if (this.channel !== undefined) {
      const inner = this.channel.open(bytes, now)
      if (inner === undefined) return
      bytes = inner
    } else if (looksSealed(bytes)) {
      stats.securityMismatch++
      return
    }
    const p = decode(bytes)
    if (isDecodeFailure(p)) {
      stats.decodeErrors++
      return
    }
    const source = p.source
    let session: RemoteSession | undefined
    if (source === this.lastSource) {
      session = this.lastSession
    } else {
      const id = source.sessionId
      if (this.ownIds.has(id)) return
      session = this.receivers.get(id)
      if (session !== undefined) {
        this.lastSource = source
        this.lastSession = session
      }
    }
    switch (p.kind) {
      case PacketKind.Data: {
        if (session === undefined) {
          if (p.retransmission) return
          session = this.join(source, address, now)
          if (session === undefined) return
          session.syncAt(p.fresh && this.listenedSinceStart(source, now) ? 1 : p.seq)
        }
        session.onData(p, now)
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
          session = this.join(source, address, now)
          if (session === undefined) return
          session.syncAt(p.fresh && this.listenedSinceStart(source, now) ? 1 : p.highestSeq + 1)
        }
        session.onHeartbeat(p.highestSeq, p.kind === PacketKind.Heartbeat ? p.oldestCached : -1, now)
        break
      }
      case PacketKind.Lost:
        if (session === undefined) return
        session.onLost(p.ranges, now)
        break
      case PacketKind.Goodbye:
        if (session === undefined) return
        session.onGoodbye(p.highestSeq, now)
        break
      case PacketKind.Nak: {
        const target = p.target
        const sender = this.sendersById.get(target)
        if (sender !== undefined) {
          this.countNakRequester(source.host)
          sender.onNak(p.ranges, now)
          return
        }
        // Another receiver's NAK for a session we receive too: suppression.
        this.receivers.get(target)?.onHeardNak(p.ranges, now)
        return
      }
      case PacketKind.Status:
        this.onStatus(p, address, now)
        return
    }
    if (session.closingDone) this.endSession(session, "closed", now)
    if (this.statusNow) this.sendStatus(now, false)
  }

  // ---------------------------------------------------------------------------------------------
  // Status: as a receiver (reports) and as a sender (presence, flow control)
  // ---------------------------------------------------------------------------------------------

  /** Start or stop reporting as a receiver (the shell: while the connection has subscriptions). */
  setListening(listening: boolean, now: number): void {
    if (this.closed || listening === this.listening) return
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
      this.emit(
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
      if (this.remoteReceivers.size >= MAX_RECEIVERS) return
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
        positions: new Map()
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
    const senders = this.senders
    for (let i = 0; i < senders.length; i++) {
      const s = senders[i]
      let position: number | undefined
      const entries = p.entries
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
    for (const r of Array.from(this.remoteReceivers.values())) {
      const expires = r.lastHeardAt + timeout
      if (expires <= now) this.dropReceiver(r, "Timeout", now)
      else if (expires < due) due = expires
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

  /** A receiver for a new session, or undefined while the id is tombstoned. */
  private join(source: Source, address: string, now: number): RemoteSession | undefined {
    const id = source.sessionId
    const tomb = this.tombstones.get(id)
    if (tomb !== undefined) {
      if (now - tomb < this.config.senderTimeoutMs) {
        this.tombstones.set(id, now)
        return undefined
      }
      this.tombstones.delete(id)
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
    const previous = this.byKey.get(session.key)
    if (previous !== undefined) {
      previous.terminate(now)
      this.retire(previous, "restarted", now)
    }
    this.receivers.set(id, session)
    this.byKey.set(session.key, session)
    if (this.listening) this.statusNow = true
    this.lastSource = source
    this.lastSession = session
    this.sink.event(
      previous === undefined
        ? { _tag: "Joined", session: info }
        : { _tag: "Restarted", session: info, previous: previous.info }
    )
    return session
  }

  /** Removes a session that has been terminated; tombstones it unless it merely went silent. */
  private retire(session: RemoteSession, state: "restarted" | "closed" | "gone", now: number): void {
    session.state = state
    const id = session.info.sessionId
    this.receivers.delete(id)
    if (this.byKey.get(session.key) === session) this.byKey.delete(session.key)
    if (this.lastSession === session) {
      this.lastSource = undefined
      this.lastSession = undefined
    }
    if (state !== "gone") {
      if (this.tombstones.size >= MAX_TOMBSTONES) {
        const oldest = this.tombstones.keys().next().value
        if (oldest !== undefined) this.tombstones.delete(oldest)
      }
      this.tombstones.set(id, now)
    }
    this.ended.push(this.snapshot(session))
    if (this.ended.length > MAX_ENDED_SESSIONS) this.ended.shift()
  }

  private endSession(session: RemoteSession, state: "closed" | "gone", now: number): void {
    session.terminate(now)
    this.retire(session, state, now)
    this.sink.event({ _tag: state === "closed" ? "Closed" : "Gone", session: session.info })
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
    for (const r of this.receivers.values()) {
      if (r.deadline() > now) continue
      const end = r.onTimer(now)
      if (end !== undefined) this.endSession(r, end, now)
      else if (r.closingDone) this.endSession(r, "closed", now)
    }
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
    for (const r of this.receivers.values()) {
      const t = r.deadline()
      if (t < d) d = t
    }
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
