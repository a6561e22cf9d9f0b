/**
 * One local publishing session: sequencing, holdback packing, segmenting, the retransmission
 * cache, NAK answers and heartbeats. Plain state machine driven by `Endpoint`; see
 * docs/PROTOCOL.md "Engine behaviour" for the timing rules implemented here.
 *
 * Adaptive holdback (decided at `endBatch`, i.e. at the end of one publish call or burst):
 * - the publish rate is estimated as the larger of (a) a sliding 100 ms window (two fixed 100 ms
 *   buckets, the previous one weighted by how much of it still overlaps the window) and (b) the
 *   instantaneous rate 1000 / (the longer of the gaps before this batch and before the previous
 *   one). Two gaps, not one: with a millisecond clock a publisher paced at 1 000/s often makes two
 *   calls in the same millisecond, and one zero gap must not count as a burst; a tight loop of
 *   publish calls is still recognised from its third call on;
 * - rate < `holdbackThreshold`, or `holdbackDelayMs` = 0 → the open segment leaves now (an idle
 *   publisher gets zero added delay);
 * - the gap before this batch ≥ `holdbackDelayMs` → it leaves now too: bursts that far apart (a
 *   `publishAll` every 5 ms) were packed within themselves, and their tail would leave alone after
 *   the delay, a second datagram and a second wake-up of every receiver per burst;
 * - otherwise the partly filled segment stays open until `holdbackDelayMs` after its FIRST update
 *   was added (timer), or until it is full, whichever comes first. A full segment always leaves at once.
 * Several `publish` calls before one `endBatch` are packed regardless (natural batching).
 *
 * Heartbeats: after the last data segment the first heartbeat follows after
 * `2 · max(nakBackoffMs, holdbackDelayMs)` (≥ 1 ms), then the interval doubles up to
 * `heartbeatIntervalMs` and stays there while idle. Any data segment restarts the schedule, so a
 * lost tail is noticed within tens of ms. A session that has sent nothing yet heartbeats every
 * `heartbeatIntervalMs` after its Announce.
 *
 * Fresh mark: Data, Heartbeat and Announce carry the fresh flag from the session's start until
 * `freshWindowMs` after its first data segment (a retransmission keeps the flag of the original), so
 * a receiver that was listening before the session began can tell and synchronise at sequence 1.
 *
 * Flow control (docs/PROTOCOL.md "Flow control"): with a `SenderFlow`, a data segment leaves only
 * within the bounding receiver's limits (its position plus its window, in bytes and in sequence
 * numbers); otherwise it waits in a queue, in sequence order, until a Status opens the window. The queue holds at most the segments of one publish call beyond the window plus the
 * rest of one large update, which is cut into fragments only as they leave (`FragmentCursor`); the
 * shell stops publishing while `backlog` is set, so nothing grows without bound.
 *
 * Close: the open segment is flushed (after the queue drains), then Goodbye(highestSeq). The session lingers for
 * `closeGraceMs` = `nakBackoffMs + (nakMaxRetries + 1) · nakRetryIntervalMs` answering NAKs from its
 * cache (receivers repair gaps for the same time after the Goodbye) and repeats the Goodbye on the
 * heartbeat schedule.
 */

import type { Dialect, SegmentWriter, SessionCodec } from "./dialect.js"
import { closeGraceMs, type EngineConfig, freshWindowMs, type SessionInfo } from "./engine.js"
import type { SenderFlow } from "./flow.js"
import type { SeqRange } from "./packets.js"
import { topicBytes } from "./wire.js"

/** What a sender needs from its endpoint. */
export interface SenderHost {
  readonly config: EngineConfig
  /** The connection's wire dialect: every datagram of this session is encoded by it. */
  readonly dialect: Dialect
  /** Puts one datagram on the wire (counts it, charges the token bucket). */
  emit(datagram: Uint8Array, now: number): void
  /** Local delivery of a published update (the endpoint counts and forwards to the sink). */
  deliverLocal(sender: LocalSender, topic: string, payload: Uint8Array, sequence: number): void
  /** Counters shared with the endpoint. */
  readonly stats: {
    naksReceived: number
    retransmissionsSent: number
    lostPacketsSent: number
    updatesOut: number
    flowControlWaits: number
  }
}

/** The rest of a large update, cut into fragments as the window lets them leave. */
interface FragmentCursor {
  /**
   * The update's bytes: `length` of them in `buffer` from `base` (its `buffer` and `byteOffset` are
   * read once: in Node 20 those getters are calls into C++).
   */
  readonly buffer: ArrayBufferLike
  readonly base: number
  readonly length: number
  offset: number
  /** Sequence number of the next fragment. */
  seq: number
  readonly last: number
}

/** Rate-estimate bucket width (ms). */
const RATE_WINDOW_MS = 100
const INITIAL_CACHE_SLOTS = 64

export type PublishResult = "ok" | "too-large" | "closed"

export class LocalSender {
  readonly session: SessionInfo
  private readonly host: SenderHost
  private readonly codec: SessionCodec
  private readonly writer: SegmentWriter
  /** Bytes of a packed segment holding no update yet. */
  private readonly emptyPackedSize: number
  /** Bytes one update costs in a packed segment besides topic and payload (the dialect's fit rule). */
  private readonly updateOverhead: number
  /** Payload bytes of a middle or last fragment. */
  private readonly fragmentRest: number
  private readonly segmentSize: number
  private readonly startedAt: number
  /** When the session announces itself again (pycast: every 15 s; native: never). */
  private announceDue: number

  /** Highest sequence number sent (0 when none). The open segment and the queue are not counted. */
  highestSeq = 0
  /** Highest sequence number assigned: sent, or queued behind the flow-control window. */
  private assignedSeq = 0
  /**
   * Data bytes sent so far (in-flight accounting against the receivers' window), in `[0]`. A
   * Float64Array, as are the cache's numbers: the total passes 2^31 within seconds at loopback
   * rates, and a small-integer field or array that overflows deoptimizes every function using it.
   */
  private readonly sent = new Float64Array(1)
  /** Flow control of this sender; undefined when the connection's mode is "none". */
  readonly flow: SenderFlow | undefined
  /** Encoded segments waiting for the window, from `queue[queueHead]`, sequence numbers highestSeq + 1 … */
  private queue: Array<Uint8Array | undefined> = []
  /** Each queued datagram's memory (`codec.lastSlab` when it was encoded), for the cache. */
  private queueSlabs: Array<ArrayBufferLike | undefined> = []
  private queueHead = 0
  private cursor: FragmentCursor | undefined = undefined
  private goodbyeSent = false
  /** Sequence number of the open packed segment, 0 when none is open. */
  private openSeq = 0
  private openedAt = 0
  closed = false
  /** When a closed sender stops answering NAKs and is dropped by the endpoint. */
  lingerUntil = Number.POSITIVE_INFINITY
  /** Packets sent before this time carry the fresh flag (set by the first data segment). */
  freshUntil = Number.POSITIVE_INFINITY

  // --- rate estimate
  private bucket = Number.NEGATIVE_INFINITY
  private bucketCount = 0
  private prevBucketCount = 0
  private lastPublishAt = Number.NEGATIVE_INFINITY
  private batchGap = Number.POSITIVE_INFINITY
  private prevBatchGap = Number.POSITIVE_INFINITY
  private inBatch = false

  // --- retransmission cache: a ring of consecutive sequence numbers oldestSeq .. oldestSeq+count-1
  private cData: Array<Uint8Array | undefined> = new Array(INITIAL_CACHE_SLOTS).fill(undefined)
  /** Each cached datagram's memory, when the codec takes it back (`release`). */
  private cSlab: Array<ArrayBufferLike | undefined> = new Array(INITIAL_CACHE_SLOTS).fill(undefined)
  /** Each cached datagram's length: evicting reads no cached view (cold by then) at all. */
  private cLen = new Int32Array(INITIAL_CACHE_SLOTS)
  private cSentAt = new Float64Array(INITIAL_CACHE_SLOTS)
  private cRetxAt = new Float64Array(INITIAL_CACHE_SLOTS)
  /** Cumulative data bytes sent up to and including each cached sequence number. */
  private cCum = new Float64Array(INITIAL_CACHE_SLOTS)
  private cHead = 0
  private cCount = 0
  private oldestSeq = 1
  cachedBytes = 0
  /** Largest number of bytes the cache ever held (tests assert the bound). */
  cachedBytesPeak = 0

  /** Cached segments one NAK may make us examine (a legitimate receiver asks for its window at most). */
  private readonly maxNakSegments: number
  /** Last answer to a NAK above the highest sequence sent. */
  private lastAheadAt = Number.NEGATIVE_INFINITY

  // --- "lost" answer coalescing
  private lastLostFirst = 0
  private lastLostLast = 0
  private lastLostAt = Number.NEGATIVE_INFINITY

  // --- heartbeat schedule
  private readonly hbInitial: number
  private hbInterval: number
  private hbDue: number

  constructor(host: SenderHost, session: SessionInfo, now: number, startedAt: number, flow?: SenderFlow) {
    this.host = host
    this.session = session
    this.flow = flow
    const config = host.config
    this.segmentSize = config.segmentSize
    this.maxNakSegments = Math.max(1, Math.min(config.reorderBufferSegments, config.receiverWindowSegments))
    this.codec = host.dialect.session(
      {
        sessionId: session.sessionId,
        senderIndex: session.senderIndex,
        host: session.host,
        application: session.application
      },
      config.segmentSize,
      config.reuseSendMemory === true
    )
    this.writer = this.codec.writer
    this.updateOverhead = this.codec.updateOverhead
    this.fragmentRest = this.codec.fragmentCapacity(new Uint8Array(0)).rest
    this.writer.begin(1)
    this.emptyPackedSize = this.writer.size
    this.writer.tryAppend(topicBytes("/"), new Uint8Array(0))
    this.writer.finish()
    this.hbInitial = Math.max(1, 2 * Math.max(config.nakBackoffMs, config.holdbackDelayMs))
    this.hbInterval = config.heartbeatIntervalMs
    this.hbDue = now + this.hbInterval
    this.startedAt = startedAt
    this.announceDue = now + this.codec.reannounceMs
    for (const d of this.codec.announce(0, startedAt)) host.emit(d, now)
  }

  get cachedSegments(): number {
    return this.cCount
  }

  /** Oldest sequence number still cached, 0 when the cache is empty (as carried by heartbeats). */
  get oldestCached(): number {
    return this.cCount > 0 ? this.oldestSeq : 0
  }

  // ---------------------------------------------------------------------------------------------
  // Publishing
  // ---------------------------------------------------------------------------------------------

  publish(topic: string, payload: Uint8Array, now: number): PublishResult {
    if (this.closed) return "closed"
    const length = payload.length
    const config = this.host.config
    if (length > config.maxUpdateSize) return "too-large"
    const tb = topicBytes(topic)
    const w = this.writer

    // Rate bookkeeping: fixed 100 ms buckets + the gap before the first publish of this batch.
    const b = Math.floor(now / RATE_WINDOW_MS)
    if (b !== this.bucket) {
      this.prevBucketCount = b === this.bucket + 1 ? this.bucketCount : 0
      this.bucket = b
      this.bucketCount = 0
    }
    this.bucketCount++
    if (!this.inBatch) {
      this.inBatch = true
      this.prevBatchGap = this.batchGap
      this.batchGap = now - this.lastPublishAt
    }
    this.lastPublishAt = now

    if (w.isOpen) {
      if (w.tryAppend(tb, payload)) {
        this.afterAppend(topic, payload, now)
        return "ok"
      }
      this.flushOpen(now)
    }
    if (this.emptyPackedSize + this.updateOverhead + tb.length + length <= this.segmentSize) {
      this.openSeq = this.assignedSeq + 1
      this.openedAt = now
      w.begin(this.openSeq)
      w.tryAppend(tb, payload)
      this.afterAppend(topic, payload, now)
      return "ok"
    }
    return this.publishFragmented(topic, tb, payload, now)
  }

  private afterAppend(topic: string, payload: Uint8Array, now: number): void {
    this.host.stats.updatesOut++
    this.host.deliverLocal(this, topic, payload, this.openSeq)
    // Full: not even an empty update with a one-byte topic would fit any more.
    if (this.segmentSize - this.writer.size < this.updateOverhead + 2) this.flushOpen(now)
  }

  private publishFragmented(topic: string, tb: Uint8Array, payload: Uint8Array, now: number): PublishResult {
    const length = payload.length
    const cap = this.codec.fragmentCapacity(tb)
    // The topic does not leave room for payload (or the update cannot be split in two).
    if (cap.first < 1 || cap.rest < 1 || length < 2) return "too-large"
    this.flushOpen(now)
    // The First chunk is shorter than the payload so a Last fragment always follows.
    const offset = Math.min(cap.first, length - 1)
    const seq = this.assignedSeq + 1
    const last = seq + Math.ceil((length - offset) / cap.rest)
    this.assignedSeq = last
    const buffer = payload.buffer
    const base = payload.byteOffset
    const first = this.codec.fragment(seq, 1, new Uint8Array(buffer, base, offset), tb, length)
    this.sendData(seq, first, this.codec.lastSlab?.(), now)
    // The rest is cut as it leaves: a 64 MiB update is not encoded twice into memory up front.
    this.cursor = { buffer, base, length, offset, seq: seq + 1, last }
    this.pump(now)
    // This update's segments still pending waited for the window too; sendData counted only the
    // First, if it was queued (pending segments leave in order, so they are the last ones).
    const pending = Math.min(this.queuedSegments, last - seq + 1)
    this.host.stats.flowControlWaits += pending - (this.highestSeq < seq ? 1 : 0)
    this.host.stats.updatesOut++
    this.host.deliverLocal(this, topic, payload, last)
    return "ok"
  }

  /** The next fragment of the large update being sent, queued; false when there is none. */
  private cutFragment(): boolean {
    const c = this.cursor
    if (c === undefined) return false
    const end = c.seq === c.last ? c.length : c.offset + this.fragmentRest
    // A plain view: `subarray` goes through the species constructor (a Buffer when it is one).
    const chunk = new Uint8Array(c.buffer, c.base + c.offset, end - c.offset)
    this.queue.push(this.codec.fragment(c.seq, c.seq === c.last ? 3 : 2, chunk))
    this.queueSlabs.push(this.codec.lastSlab?.())
    c.offset = end
    if (c.seq++ === c.last) this.cursor = undefined
    return true
  }

  /** Estimated publish rate (updates/s) at `now`. */
  private rate(now: number): number {
    const b = Math.floor(now / RATE_WINDOW_MS)
    let current = 0
    let previous = 0
    if (b === this.bucket) {
      current = this.bucketCount
      previous = this.prevBucketCount
    } else if (b === this.bucket + 1) {
      previous = this.bucketCount
    }
    const overlap = 1 - (now - b * RATE_WINDOW_MS) / RATE_WINDOW_MS
    const windowed = ((previous * overlap + current) * 1000) / RATE_WINDOW_MS
    const gap = Math.max(this.batchGap, this.prevBatchGap)
    const instant = gap > 0 ? 1000 / gap : Number.POSITIVE_INFINITY
    return Math.max(windowed, instant)
  }

  /** End of one publish call / burst: flush now, or hold the partly filled segment back. */
  endBatch(now: number): void {
    this.inBatch = false
    if (!this.writer.isOpen) return
    const config = this.host.config
    if (
      config.holdbackDelayMs <= 0 ||
      now - this.openedAt >= config.holdbackDelayMs ||
      // Batches further apart than the holdback: the next would not join this segment in time.
      this.batchGap >= config.holdbackDelayMs ||
      this.rate(now) < config.holdbackThreshold
    ) {
      this.flushOpen(now)
    }
  }

  /** Sends the open packed segment, if any. */
  flushOpen(now: number): void {
    if (!this.writer.isOpen) return
    this.assignedSeq = this.openSeq
    const datagram = this.writer.finish()
    this.sendData(this.openSeq, datagram, this.codec.lastSlab?.(), now)
    this.openSeq = 0
  }

  /** Segments wait for the flow-control window (publishing should pause until it is false). */
  get backlog(): boolean {
    return this.queueHead < this.queue.length || this.cursor !== undefined
  }

  /** Segments assigned but not sent yet (queued behind the window). */
  get queuedSegments(): number {
    return this.assignedSeq - this.highestSeq
  }

  private sendData(seq: number, datagram: Uint8Array, slab: ArrayBufferLike | undefined, now: number): void {
    if (!this.backlog && this.windowAllows(seq)) {
      this.emitData(seq, datagram, slab, now)
      return
    }
    this.host.stats.flowControlWaits++
    this.queue.push(datagram)
    this.queueSlabs.push(slab)
  }

  private emitData(seq: number, datagram: Uint8Array, slab: ArrayBufferLike | undefined, now: number): void {
    if (seq === 1) this.freshUntil = now + freshWindowMs(this.host.config)
    if (now < this.freshUntil) this.codec.markFresh(datagram)
    this.highestSeq = seq
    this.sent[0] += datagram.length
    this.cachePush(datagram, slab, now)
    this.host.emit(datagram, now)
    this.hbInterval = this.hbInitial
    this.hbDue = now + this.hbInitial
  }

  /**
   * Whether data segment `seq` may leave now: within the bounding receivers' limits in sequence
   * numbers and in bytes (the segment that crosses the byte limit still leaves, so a window smaller
   * than a segment cannot stall the session). No receiver (or mode "none"): always.
   */
  private windowAllows(seq: number): boolean {
    const flow = this.flow
    if (flow === undefined) return true
    const seqs = flow.seqs.limit()
    const bytes = flow.bytes.limit()
    return (seqs === undefined || seq <= seqs) && (bytes === undefined || this.sent[0] < bytes)
  }

  /** When `seq` was first sent: -Infinity once it left the cache, +Infinity while not sent yet. */
  sentAt(seq: number): number {
    if (seq > this.highestSeq) return Number.POSITIVE_INFINITY
    if (this.cCount === 0 || seq < this.oldestSeq) return Number.NEGATIVE_INFINITY
    return this.cSentAt[(this.cHead + (seq - this.oldestSeq)) & (this.cData.length - 1)]
  }

  /** Data bytes sent up to and including `seq` (an evicted position counts from the oldest cached). */
  sentThrough(seq: number): number {
    if (seq >= this.highestSeq || this.cCount === 0) return this.sent[0]
    if (seq < this.oldestSeq) return this.cCum[this.cHead] - this.cLen[this.cHead]
    return this.cCum[(this.cHead + (seq - this.oldestSeq)) & (this.cData.length - 1)]
  }

  /**
   * Sends what the window allows from the queue (a Status opened it, a receiver left, or the sender
   * is forced at close), and the Goodbye of a closing sender once everything has left.
   */
  pump(now: number, force = false): void {
    const queue = this.queue
    for (;;) {
      if (this.queueHead === queue.length && !this.cutFragment()) break
      const datagram = queue[this.queueHead]!
      const seq = this.highestSeq + 1
      if (!force && !this.windowAllows(seq)) return
      const slab = this.queueSlabs[this.queueHead]
      this.queueSlabs[this.queueHead] = undefined
      queue[this.queueHead++] = undefined
      this.emitData(seq, datagram, slab, now)
    }
    if (this.queueHead > 0) {
      this.queue = []
      this.queueSlabs = []
      this.queueHead = 0
    }
    if (this.closed && !this.goodbyeSent) this.sayGoodbye(now)
  }

  // ---------------------------------------------------------------------------------------------
  // Retransmission cache
  // ---------------------------------------------------------------------------------------------

  private cachePush(datagram: Uint8Array, slab: ArrayBufferLike | undefined, now: number): void {
    const config = this.host.config
    if (this.cCount === this.cData.length) this.cacheGrow()
    if (this.cCount === 0) this.oldestSeq = this.highestSeq
    const mask = this.cData.length - 1
    const i = (this.cHead + this.cCount) & mask
    this.cData[i] = datagram
    this.cSlab[i] = slab
    this.cLen[i] = datagram.length
    this.cSentAt[i] = now
    this.cRetxAt[i] = Number.NEGATIVE_INFINITY
    this.cCum[i] = this.sent[0]
    this.cCount++
    this.cachedBytes += datagram.length
    // Evict oldest first until within the byte bound (a datagram larger than the bound evicts itself).
    while (this.cachedBytes > config.cacheMaxBytes && this.cCount > 0) this.cacheDropOldest()
    if (this.cachedBytes > this.cachedBytesPeak) this.cachedBytesPeak = this.cachedBytes
  }

  private cacheDropOldest(): void {
    const i = this.cHead
    this.cachedBytes -= this.cLen[i]
    this.cData[i] = undefined
    const slab = this.cSlab[i]
    if (slab !== undefined) {
      this.cSlab[i] = undefined
      this.codec.release?.(slab)
    }
    this.cHead = (i + 1) & (this.cData.length - 1)
    this.cCount--
    this.oldestSeq++
  }

  private cacheGrow(): void {
    const n = this.cData.length
    const data: Array<Uint8Array | undefined> = new Array(n * 2).fill(undefined)
    const slabs: Array<ArrayBufferLike | undefined> = new Array(n * 2).fill(undefined)
    const lengths = new Int32Array(n * 2)
    const sentAt = new Float64Array(n * 2)
    const retxAt = new Float64Array(n * 2)
    const cum = new Float64Array(n * 2)
    for (let k = 0; k < this.cCount; k++) {
      const j = (this.cHead + k) & (n - 1)
      data[k] = this.cData[j]
      slabs[k] = this.cSlab[j]
      lengths[k] = this.cLen[j]
      sentAt[k] = this.cSentAt[j]
      retxAt[k] = this.cRetxAt[j]
      cum[k] = this.cCum[j]
    }
    this.cData = data
    this.cSlab = slabs
    this.cLen = lengths
    this.cSentAt = sentAt
    this.cRetxAt = retxAt
    this.cCum = cum
    this.cHead = 0
  }

  private cacheExpire(now: number): void {
    const maxAge = this.host.config.cacheMaxAgeMs
    while (this.cCount > 0 && this.cSentAt[this.cHead] + maxAge <= now) this.cacheDropOldest()
  }

  // ---------------------------------------------------------------------------------------------
  // NAKs
  // ---------------------------------------------------------------------------------------------

  /**
   * A NAK for this session. Cached segments not retransmitted within `retransmitHoldoffMs` go out
   * again (flagged as retransmissions); requested segments no longer cached are answered with one
   * Lost packet. Bounds (docs/PROTOCOL.md "Hostile networks"): ranges are clamped to the cache; one
   * NAK examines at most `maxNakSegments` cached segments whatever its ranges; the requester's
   * `allowance` (token bucket, bytes) bounds what it gets retransmitted. A request above the highest
   * sequence sent (forged, or following a forged claim) is answered with a heartbeat (a Goodbye once
   * closed) carrying the true highest, so receivers drop the claimed gap. Returns whether the NAK was
   * answered only in part (counted `naksThrottled`).
   */
  onNak(ranges: ReadonlyArray<SeqRange>, now: number, allowance?: { tokens: number }): boolean {
    const host = this.host
    host.stats.naksReceived++
    if (this.lingerUntil <= now) return false
    this.cacheExpire(now)
    const holdoff = host.config.retransmitHoldoffMs
    const highest = this.highestSeq
    // Everything below `oldest` has been evicted (in order).
    const oldest = this.cCount > 0 ? this.oldestSeq : highest + 1
    const mask = this.cData.length - 1
    let lostFirst = Number.POSITIVE_INFINITY
    let lostLast = 0
    let budget = this.maxNakSegments
    let throttled = false
    let ahead = false
    for (let r = 0; r < ranges.length; r++) {
      const first = ranges[r].first
      if (ranges[r].last > highest) ahead = true
      const last = Math.min(ranges[r].last, highest)
      if (first > last) continue
      if (first < oldest) {
        if (first < lostFirst) lostFirst = first
        const l = Math.min(last, oldest - 1)
        if (l > lostLast) lostLast = l
      }
      const from = Math.max(first, oldest)
      if (from > last || throttled) continue
      const to = Math.min(last, from + budget - 1)
      if (to < last) throttled = true
      budget -= to - from + 1
      for (let s = from; s <= to; s++) {
        const i = (this.cHead + (s - this.oldestSeq)) & mask
        if (now - this.cRetxAt[i] < holdoff) continue
        const datagram = this.cData[i]!
        if (allowance !== undefined) {
          if (allowance.tokens < datagram.length) {
            throttled = true
            break
          }
          allowance.tokens -= datagram.length
        }
        this.cRetxAt[i] = now
        host.stats.retransmissionsSent++
        host.emit(this.codec.retransmission(datagram), now)
      }
    }
    if (ahead && now - this.lastAheadAt >= Math.max(1, holdoff)) {
      this.lastAheadAt = now
      if (this.goodbyeSent) {
        const goodbye = this.codec.goodbye(highest)
        if (goodbye !== undefined) host.emit(goodbye, now)
      } else {
        const hb = this.codec.heartbeat(highest, this.oldestCached)
        host.emit(now < this.freshUntil ? this.codec.markFresh(hb) : hb, now)
      }
    }
    if (lostLast > 0) {
      // One range covers every evicted sequence asked for (all of it is gone, in order of age);
      // receivers intersect it with their own gaps. Repeats inside the holdoff are coalesced.
      if (lostFirst >= this.lastLostFirst && lostLast <= this.lastLostLast && now - this.lastLostAt < holdoff)
        return throttled
      this.lastLostFirst = lostFirst
      this.lastLostLast = lostLast
      this.lastLostAt = now
      // A dialect without Lost (pycast) says nothing: its receivers give up after their retries.
      const lost = this.codec.lost([{ first: lostFirst, last: lostLast }])
      if (lost === undefined) return throttled
      host.stats.lostPacketsSent++
      host.emit(lost, now)
    }
    return throttled
  }

  // ---------------------------------------------------------------------------------------------
  // Timers
  // ---------------------------------------------------------------------------------------------

  deadline(): number {
    let d = this.hbDue
    if (this.writer.isOpen) {
      const h = this.openedAt + this.host.config.holdbackDelayMs
      if (h < d) d = h
    }
    if (this.cCount > 0) {
      const e = this.cSentAt[this.cHead] + this.host.config.cacheMaxAgeMs
      if (e < d) d = e
    }
    if (this.lingerUntil < d) d = this.lingerUntil
    if (this.announceDue < d) d = this.announceDue
    return d
  }

  onTimer(now: number): void {
    const config = this.host.config
    if (this.writer.isOpen && now >= this.openedAt + config.holdbackDelayMs) this.flushOpen(now)
    this.cacheExpire(now)
    if (now >= this.announceDue) {
      this.announceDue = this.goodbyeSent ? Number.POSITIVE_INFINITY : now + this.codec.reannounceMs
      if (!this.goodbyeSent)
        for (const d of this.codec.announce(this.highestSeq, this.startedAt)) this.host.emit(d, now)
    }
    if (now >= this.hbDue) {
      if (this.goodbyeSent) {
        const goodbye = this.codec.goodbye(this.highestSeq)
        if (now < this.lingerUntil && goodbye !== undefined) this.host.emit(goodbye, now)
      } else {
        const hb = this.codec.heartbeat(this.highestSeq, this.oldestCached)
        this.host.emit(now < this.freshUntil ? this.codec.markFresh(hb) : hb, now)
      }
      this.hbInterval = Math.min(this.hbInterval * 2, config.heartbeatIntervalMs)
      this.hbDue = now + this.hbInterval
    }
  }

  /**
   * Flush, Goodbye once the queue has left, then linger answering NAKs (see the module comment).
   * `force` sends the queue at once, window or not (the connection is closing).
   */
  close(now: number, force = false): void {
    if (!this.closed) {
      this.flushOpen(now)
      this.closed = true
    }
    this.pump(now, force)
  }

  private sayGoodbye(now: number): void {
    this.goodbyeSent = true
    this.announceDue = Number.POSITIVE_INFINITY
    const goodbye = this.codec.goodbye(this.highestSeq)
    if (goodbye !== undefined) this.host.emit(goodbye, now)
    this.lingerUntil = now + closeGraceMs(this.host.config)
    this.hbInterval = this.hbInitial
    this.hbDue = now + this.hbInitial
  }

  /** The sockets are done with every datagram sent so far: evicted memory may be reused. */
  recycle(): void {
    this.codec.recycle?.()
  }

  /** Drops the cache (endpoint close / end of linger). */
  release(): void {
    this.cData = new Array(INITIAL_CACHE_SLOTS).fill(undefined)
    this.cSlab = new Array(INITIAL_CACHE_SLOTS).fill(undefined)
    this.cLen = new Int32Array(INITIAL_CACHE_SLOTS)
    this.cSentAt = new Float64Array(INITIAL_CACHE_SLOTS)
    this.cRetxAt = new Float64Array(INITIAL_CACHE_SLOTS)
    this.cCum = new Float64Array(INITIAL_CACHE_SLOTS)
    this.cHead = 0
    this.cCount = 0
    this.cachedBytes = 0
    this.queue = []
    this.queueSlabs = []
    this.queueHead = 0
    this.cursor = undefined
    this.oldestSeq = this.highestSeq + 1
  }
}
