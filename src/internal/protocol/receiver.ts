/**
 * The receiving side of one remote session: synchronisation, gap detection, NAK scheduling with
 * suppression, the reorder buffer, reassembly of fragmented updates, and loss reporting.
 * Plain state machine driven by `Endpoint` (docs/PROTOCOL.md "Engine behaviour").
 *
 * State: `next` is the lowest sequence number not yet processed, `highest` the highest known to
 * exist (from data inside the window, heartbeats, announce, goodbye). Every sequence number in
 * `[next, highest]` is either held in the reorder buffer or inside exactly one gap; gaps are
 * ranges (never one entry per sequence number), so a hostile `highest` of 2^53 costs nothing.
 *
 * Window: only data with `seq < next + reorderBufferSegments` is buffered; anything further is
 * dropped and counted (`outOfWindow`) and never allocates — it is requested again once the window
 * has moved, if the sender (heartbeat, later data) confirms it exists. Only the part of a gap
 * inside the window is NAKed; the rest waits (no timer, no retry count) until the window reaches it.
 *
 * Processing is strictly in order: deliveries, and loss reports, are emitted as `next` passes
 * them. A lost range that cuts through a fragmented update takes the whole update with it: the
 * already received fragments before it, and the orphaned continuation fragments after it, are
 * reported lost too (same reason), so the invariant "every sequence number from the sync point to
 * `highest` is part of exactly one delivered update or of exactly one reported loss range" holds
 * and no update is ever delivered partly. Contiguous losses found in one processing step are
 * folded into one report; the accumulated report is emitted at the end of every input rather than
 * held until the update's end is seen, because a subscription fails on its first loss by default
 * and should learn of it at once.
 */
import type { Mutable } from "effect/Types"
import type { LossReason } from "../../DistributorError.js"
import { unzeroed } from "../slab.js"
import {
  type ConflictReason,
  closeGraceMs,
  type EngineConfig,
  type LossReport,
  quietMs,
  type ReceivedUpdate,
  type SessionEvent,
  type SessionInfo,
  sessionBufferBytes
} from "./engine.js"
import { type DataPacket, Fragment, retainPacket, type SeqRange } from "./packets.js"

/** How many reorder windows beyond the known highest a heartbeat or Goodbye may claim. */
const PLAUSIBLE_WINDOWS = 64

/** Raw datagrams remembered per session to notice a sequence number arriving with other bytes. */
const RECENT = 16
/** Reassembly starts with at most this much memory and doubles as fragments arrive. */
const ASM_INITIAL_BYTES = 1024 * 1024
const EMPTY = new Uint8Array(0)

/** What a receiver needs from its endpoint. */
export interface ReceiverHost {
  readonly config: EngineConfig
  readonly random: () => number
  sendNak(target: bigint, ranges: ReadonlyArray<SeqRange>, now: number): void
  deliver(update: ReceivedUpdate): void
  loss(report: LossReport): void
  event(event: SessionEvent): void
  /** A claim or packet of this session contradicts what was seen (counted, surfaced as an event). */
  conflict(session: RemoteSession, reason: ConflictReason, detail: string, now: number): void
  /** Reorder + reassembly bytes held by this session changed by `delta` (per-connection budget). */
  buffered(session: RemoteSession, delta: number): void
  /**
   * This session now remembers datagram `seq` (`bytes`) for the duplicate-content check; the host
   * bounds what all sessions remember together and calls `forget` for the oldest. With `copy`
   * (`bytes` goes back to the socket) the host copies it at the end of the receive batch, if the
   * session still remembers it then, and moves the record there with `rememberedCopy`.
   */
  remember(session: RemoteSession, seq: number, bytes: Uint8Array, copy: boolean): void
  readonly stats: {
    updatesIn: number
    duplicates: number
    lossEvents: number
    lostSegments: number
    retransmissionsReceived: number
    outOfWindow: number
    bufferOverruns: number
  }
}

interface Gap {
  first: number
  last: number
  /** Next NAK (or give-up) time; Infinity while beyond the window or once declared lost. */
  due: number
  /** NAKs sent (or heard from other receivers and counted as ours). */
  naks: number
  lastAttemptAt: number
  /** Declared lost, waiting for `next` to reach it. */
  lost: LossReason | undefined
}

const INITIAL_SLOTS = 64

export type RemoteState = "active" | "restarted" | "closed" | "gone"

export class RemoteSession {
  readonly info: SessionInfo
  /** Restart key: host, application, sender index. */
  readonly key: string
  state: RemoteState = "active"
  next = 1
  highest = 0
  lastHeardAt: number
  /**
   * Set by Goodbye (heard + `closeGraceMs`, as long as the sender lingers): when the gaps still
   * open are reported SenderGone and the session ends.
   */
  closeAt = Number.POSITIVE_INFINITY
  /** A Goodbye is being honoured, and the last sequence number it named. */
  goodbyeHeard = false
  goodbyeSeq = 0
  /** Highest sequence number received as data (claims by heartbeats and goodbyes excluded). */
  dataHighest = 0
  /**
   * A newer session with the same restart key appeared while this one was still live: it ends
   * ("restarted") once silent for `quietMs`, not at once (a forged new session cannot end it).
   */
  superseded = false
  /** The newer session with the same key while this one is superseded, and the reverse link. */
  successor: RemoteSession | undefined = undefined
  predecessor: RemoteSession | undefined = undefined
  /** Reorder buffer + partial update bytes held (budgeted per session and per connection). */
  bufferedBytes = 0
  /** Position in the endpoint's deadline heap bookkeeping: the earliest entry it has there. */
  heapAt = Number.POSITIVE_INFINITY
  /** Earliest time the next Conflict event may be emitted (rate limit; the counter counts all). */
  conflictEventAt = Number.NEGATIVE_INFINITY

  private readonly host: ReceiverHost
  private readonly window: number
  private readonly sessionBudget: number
  /** Before the first update start: orphan continuation fragments are skipped silently. */
  private preSync = true
  private slots: Array<DataPacket | undefined> = new Array(INITIAL_SLOTS).fill(undefined)
  /** Datagram length of each buffered slot (memory accounting). */
  private slotBytes: Array<number> = new Array(INITIAL_SLOTS).fill(0)
  /** The last RECENT datagrams accepted, by sequence number (duplicate content check). */
  private readonly recent: Array<Uint8Array | undefined> = new Array(RECENT).fill(undefined)
  /** Where in `recent[r]` datagram `recentSeq[r]` lies (the host's copy ring, or the datagram). */
  private readonly recentAt = new Int32Array(RECENT)
  private readonly recentLength = new Int32Array(RECENT)
  private readonly recentSeq: Array<number> = new Array(RECENT).fill(0)
  private mask = INITIAL_SLOTS - 1
  private gaps: Array<Gap> = []
  private nakDue = Number.POSITIVE_INFINITY
  /** Lowest sequence number of a gap part waiting for the window (Infinity when none). */
  private pendingFrom = Number.POSITIVE_INFINITY

  // --- reassembly (asmStart 0 = not assembling)
  private asmStart = 0
  private asmTopic = ""
  private asmTotal = 0
  private asmReceived = 0
  /** The update being reassembled: its fragments' chunks, copied in as they arrive. */
  private asmBuf: Uint8Array = EMPTY
  /** Bytes received of it (counted in `bufferedBytes`). */
  private asmHeld = 0
  /** Topic of the update whose segments the accumulated loss covers exactly, if known. */
  private skipTopic: string | undefined = undefined
  /** Reason carried over to orphaned continuation fragments after a loss. */
  private skipReason: LossReason | undefined = undefined

  // --- loss report being accumulated (folded while contiguous), pendFirst 0 = none
  private pendFirst = 0
  private pendLast = 0
  private pendReason: LossReason = "SenderGone"
  private pendTopic: string | undefined = undefined

  // --- per-session stats
  delivered = 0
  /** Data segments processed in order (continuity, see `proven`). */
  processedSegments = 0
  naksSent = 0
  retransmissionsReceived = 0
  lostSegments = 0
  duplicates = 0

  constructor(host: ReceiverHost, info: SessionInfo, now: number) {
    this.host = host
    this.info = info
    this.key = `${info.host}\u0000${info.application}\u0000${info.senderIndex}`
    this.window = Math.max(1, host.config.reorderBufferSegments)
    this.sessionBudget = sessionBufferBytes(host.config)
    this.lastHeardAt = now
  }

  /** Synchronise: the first sequence number to process is `seq` (nothing earlier is requested). */
  syncAt(seq: number): void {
    this.next = seq
    this.highest = seq - 1
    this.preSync = true
  }

  /** Confirmed: it delivered a complete update here. Losses of unconfirmed sessions fail no subscription. */
  get confirmed(): boolean {
    return this.delivered > 0
  }

  /**
   * Proven: confirmed and at least two data segments processed in sequence (continuity). Until then
   * the session is on probation: it counts against the unconfirmed quota and ends after `quietMs`
   * of silence, so a one-packet forgery holds its slot briefly.
   */
  get proven(): boolean {
    return this.delivered > 0 && this.processedSegments >= 2
  }

  /**
   * Last sequence number a claim (heartbeat, goodbye) may name: `PLAUSIBLE_WINDOWS` reorder windows
   * beyond what is known. A legitimate sender may be far ahead of a slow receiver (flow control
   * "none" or "max"), so this only catches the absurd (2^53); a claim inside it that the sender
   * never made is undone by the sender's answer to the NAK (a heartbeat with its true highest).
   */
  private get claimLimit(): number {
    return Math.max(this.highest, this.next - 1) + this.window * PLAUSIBLE_WINDOWS
  }

  private implausible(what: string, now: number): void {
    this.host.conflict(this, "ImplausibleClaim", what, now)
  }

  /** A contradiction of a Goodbye: the sender is still sending. The close is called off. */
  private cancelClose(detail: string, now: number): void {
    this.closeAt = Number.POSITIVE_INFINITY
    this.goodbyeHeard = false
    this.goodbyeSeq = 0
    this.host.conflict(this, "DataAfterGoodbye", detail, now)
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs
  // ---------------------------------------------------------------------------------------------

  /** Returns whether `bytes` (or the packet's views of it) is kept past this call. */
  onData(p: DataPacket, now: number, bytes?: Uint8Array): boolean {
    this.lastHeardAt = now
    if (p.retransmission) {
      this.retransmissionsReceived++
      this.host.stats.retransmissionsReceived++
    }
    const s = p.seq
    if (s < this.next && !p.retransmission && this.dataHighest === 0 && this.asmStart === 0) {
      // No data seen yet and live data below the sync point: the claim we synchronised on (a
      // heartbeat, or a forged one) was ahead of the sender. Synchronise on the data instead.
      this.resync(s)
    }
    const next = this.next
    if (s < next) {
      this.duplicate(s, bytes, now)
      return false
    }
    if (s - next >= this.window) {
      this.host.stats.outOfWindow++
      return false
    }
    if (this.goodbyeHeard && s > this.goodbyeSeq && !p.retransmission) {
      this.cancelClose(`data ${s} after a Goodbye at ${this.goodbyeSeq}`, now)
    }
    if (s <= this.highest) {
      // Not buffered yet and inside a gap: fill it. Otherwise it is a duplicate.
      if (this.slots[s & this.mask]?.seq === s || !this.removeFromGaps(s)) {
        this.duplicate(s, bytes, now)
        return false
      }
    } else {
      if (s > this.highest + 1) this.addGap(this.highest + 1, s - 1, now)
      this.highest = s
    }
    if (s > this.dataHighest) this.dataHighest = s
    // A packed segment's updates are views of `bytes` (kept by whoever receives them); of a
    // fragment nothing is kept (its chunk is copied into the update, the content record takes a
    // copy) unless it waits in the reorder buffer.
    let kept = p.body.fragment === Fragment.None
    if (bytes !== undefined) {
      const r = s & (RECENT - 1)
      this.recent[r] = bytes
      this.recentAt[r] = 0
      this.recentLength[r] = bytes.length
      this.recentSeq[r] = s
      this.host.remember(this, s, bytes, !kept)
    }
    if (s === next) {
      this.process(p)
      this.next = s + 1
      if (this.next <= this.highest || this.pendFirst !== 0) this.drain(now)
    } else {
      if (s - next > this.mask) this.growSlots(s - next + 1)
      const i = s & this.mask
      const size = bytes?.length ?? 0
      this.slots[i] = retainPacket(p)
      this.slotBytes[i] = size
      this.addBuffered(size)
      kept = true
    }
    if (this.bufferedBytes > this.sessionBudget) this.shed(this.sessionBudget, now)
    return kept
  }

  /** Drops datagram `seq` from the duplicate-content record, if it is still there (host's bound). */
  forget(seq: number): void {
    const r = seq & (RECENT - 1)
    if (this.recentSeq[r] === seq) this.recent[r] = undefined
  }

  /** Whether datagram `seq` is still in the duplicate-content record (not replaced or forgotten). */
  remembers(seq: number): boolean {
    const r = seq & (RECENT - 1)
    return this.recentSeq[r] === seq && this.recent[r] !== undefined
  }

  /** Datagram `seq` as remembered, before the host copied it: its own memory; undefined once forgotten. */
  uncopied(seq: number): Uint8Array | undefined {
    const r = seq & (RECENT - 1)
    return this.recentSeq[r] === seq ? this.recent[r] : undefined
  }

  /** The host copied datagram `seq` to `ring` at `at` (its memory goes back to the socket). */
  rememberedCopy(seq: number, ring: Uint8Array, at: number): void {
    const r = seq & (RECENT - 1)
    if (this.recentSeq[r] !== seq) return
    this.recent[r] = ring
    this.recentAt[r] = at
  }

  /** Bytes of the datagrams this session remembers for the duplicate-content check (tests). */
  get rememberedBytes(): number {
    let n = 0
    for (let r = 0; r < RECENT; r++) if (this.recent[r] !== undefined) n += this.recentLength[r]
    return n
  }

  private addBuffered(delta: number): void {
    if (delta === 0) return
    this.bufferedBytes += delta
    this.host.buffered(this, delta)
  }

  /**
   * Memory bound: while this session holds more than `target` bytes of reorder buffer and partial
   * update, its oldest pending data is given up (ReceiverOverrun): the first gap is declared lost,
   * which lets the buffered data behind it be processed, or else the partial update is dropped.
   */
  shed(target: number, now: number): void {
    let guard = 0
    while (this.bufferedBytes > target && guard++ < 1_000_000) {
      const g = this.gaps[0]
      if (g !== undefined && g.first === this.next && g.lost === undefined) {
        g.lost = "ReceiverOverrun"
        g.due = Number.POSITIVE_INFINITY
        this.host.stats.bufferOverruns++
        this.drain(now)
        continue
      }
      if (this.asmStart !== 0) {
        this.host.stats.bufferOverruns++
        this.addLoss(this.asmStart, this.next - 1, "ReceiverOverrun", this.asmTopic)
        this.skipTopic = this.asmTopic
        this.resetAssembly()
        this.skipReason = "ReceiverOverrun"
        this.flushLoss()
        continue
      }
      break
    }
  }

  /** Drops every gap (nothing was received yet) and synchronises at `seq`. */
  private resync(seq: number): void {
    this.gaps = []
    this.nakDue = Number.POSITIVE_INFINITY
    this.pendingFrom = Number.POSITIVE_INFINITY
    this.syncAt(seq)
  }

  /** Heartbeat (and Announce with `oldestCached` = -1: unknown). */
  onHeartbeat(highestSeq: number, oldestCached: number, now: number): void {
    if (highestSeq > this.claimLimit) {
      this.implausible(`highest ${highestSeq} beyond the window end ${this.claimLimit}`, now)
      return
    }
    this.lastHeardAt = now
    // A closing sender repeats its Goodbye, it does not heartbeat.
    if (this.goodbyeHeard && oldestCached >= 0) this.cancelClose(`heartbeat after a Goodbye at ${this.goodbyeSeq}`, now)
    if (highestSeq < this.highest) this.trimTo(highestSeq)
    else this.raiseHighest(highestSeq, now)
    if (oldestCached >= 0 && this.gaps.length > 0) {
      // oldestCached 0: the cache is empty, nothing up to highestSeq can be supplied. Only what data
      // has shown to exist is given up on this word; a claimed-only tail is NAKed and answered.
      const floor = Math.min(oldestCached === 0 ? highestSeq + 1 : oldestCached, this.dataHighest + 1)
      if (this.gaps[0].first < floor) {
        this.markLost(this.gaps[0].first, floor - 1, "NotInSenderCache")
        this.drain(now)
      }
    }
  }

  onLost(ranges: ReadonlyArray<SeqRange>, now: number): void {
    this.lastHeardAt = now
    if (this.gaps.length === 0) return
    for (let i = 0; i < ranges.length; i++) this.markLost(ranges[i].first, ranges[i].last, "NotInSenderCache")
    this.drain(now)
  }

  /**
   * Goodbye: the sender's last sequence number. Not below data already received, not beyond the
   * window (else implausible: ignored). Data beyond it or a heartbeat afterwards call the close off.
   */
  onGoodbye(highestSeq: number, now: number): void {
    if (highestSeq < this.dataHighest || highestSeq > this.claimLimit) {
      this.implausible(
        `Goodbye at ${highestSeq}, data seen up to ${this.dataHighest}, window end ${this.claimLimit}`,
        now
      )
      return
    }
    this.lastHeardAt = now
    if (highestSeq < this.highest) this.trimTo(highestSeq)
    else this.raiseHighest(highestSeq, now)
    this.goodbyeHeard = true
    this.goodbyeSeq = highestSeq
    if (this.closeAt === Number.POSITIVE_INFINITY) this.closeAt = now + closeGraceMs(this.host.config)
  }

  /**
   * The sender says its highest is `h`, below what claims made us expect: gap parts above both `h`
   * and the data received were never seen to exist, so they are dropped (re-opened by the next
   * claim if real). This is how a forged far-ahead claim is undone by the sender's own word.
   */
  private trimTo(h: number): void {
    const top = Math.max(h, this.dataHighest, this.next - 1)
    if (top >= this.highest) return
    const gaps = this.gaps
    while (gaps.length > 0 && gaps[gaps.length - 1].first > top) gaps.pop()
    if (gaps.length > 0 && gaps[gaps.length - 1].last > top) gaps[gaps.length - 1].last = top
    this.highest = top
    if (this.pendingFrom > top) this.pendingFrom = Number.POSITIVE_INFINITY
    this.recomputeNakDue()
  }

  /**
   * Another receiver's NAK for this session: our NAK for the covered ranges is suppressed (treated
   * as sent). It counts as an attempt at most once per half retry interval, so a chorus of NAKs
   * from many receivers does not exhaust our retries early.
   */
  onHeardNak(ranges: ReadonlyArray<SeqRange>, now: number): void {
    if (this.gaps.length === 0) return
    const half = this.host.config.nakRetryIntervalMs / 2
    const retry = this.retryInterval()
    // Heard NAKs suppress ours for the first half of the retry budget only, and never postpone a
    // give-up: a forger repeating NAKs can delay a repair, not pin the gap (and the buffer) forever.
    const suppressUpTo = Math.ceil(this.host.config.nakMaxRetries / 2)
    for (let r = 0; r < ranges.length; r++) {
      const first = Math.max(ranges[r].first, this.next)
      const last = ranges[r].last
      if (first > last) continue
      let i = this.isolate(first, last)
      const gaps = this.gaps
      for (; i < gaps.length && gaps[i].first <= last; i++) {
        const g = gaps[i]
        if (g.lost !== undefined || g.due === Number.POSITIVE_INFINITY || g.naks >= suppressUpTo) continue
        if (g.naks === 0 || now - g.lastAttemptAt >= half) {
          g.naks++
          g.lastAttemptAt = now
        }
        g.due = g.lastAttemptAt + retry
      }
    }
    this.recomputeNakDue()
  }

  // ---------------------------------------------------------------------------------------------
  // Timers
  // ---------------------------------------------------------------------------------------------

  deadline(): number {
    let d = this.lastHeardAt + this.silenceLimit()
    if (this.nakDue < d) d = this.nakDue
    if (this.closeAt < d) d = this.closeAt
    return d
  }

  /**
   * How long this session may stay silent: `senderTimeoutMs`, or `quietMs` while it is superseded
   * by a newer session with its key, or unconfirmed (a one-packet forgery frees its slot soon).
   */
  private silenceLimit(): number {
    const config = this.host.config
    return this.superseded || !this.proven ? quietMs(config) : config.senderTimeoutMs
  }

  /** Returns the terminal state reached, or undefined while still running. */
  onTimer(now: number): "gone" | "closed" | "restarted" | undefined {
    if (now >= this.lastHeardAt + this.silenceLimit()) {
      const state = this.superseded ? "restarted" : "gone"
      this.terminate(now)
      this.state = state
      return state
    }
    if (this.nakDue <= now) this.runNaks(now)
    if (now >= this.closeAt) {
      this.terminate(now)
      this.state = "closed"
      return "closed"
    }
    return undefined
  }

  /** A closing session whose every gap is resolved can end now. */
  get closingDone(): boolean {
    return this.closeAt !== Number.POSITIVE_INFINITY && this.next > this.highest
  }

  private retryInterval(): number {
    return Math.max(1, this.host.config.nakRetryIntervalMs)
  }

  /**
   * A NAK timer fired. Gaps due now are NAKed (or given up after `nakMaxRetries` retries); other
   * gaps whose NAK would be due within the next `nakBackoffMs` ride along in the same packet, so
   * one receiver sends one NAK for a burst of losses instead of one per gap. After a Goodbye an
   * exhausted gap waits for `closeAt` and is reported SenderGone with the rest: the sender left.
   */
  private runNaks(now: number): void {
    const config = this.host.config
    const retry = this.retryInterval()
    const maxRetries = config.nakMaxRetries
    const soon = now + config.nakBackoffMs
    const ranges: Array<SeqRange> = []
    let anyLost = false
    const gaps = this.gaps
    for (let i = 0; i < gaps.length; i++) {
      const g = gaps[i]
      if (g.lost !== undefined || g.due > soon) continue
      if (g.naks > maxRetries) {
        if (g.due > now) continue
        if (this.closeAt !== Number.POSITIVE_INFINITY) {
          g.due = this.closeAt
          continue
        }
        g.lost = "RetriesExhausted"
        g.due = Number.POSITIVE_INFINITY
        anyLost = true
        continue
      }
      const prev = ranges.length > 0 ? ranges[ranges.length - 1] : undefined
      if (prev !== undefined && prev.last + 1 === g.first)
        ranges[ranges.length - 1] = { first: prev.first, last: g.last }
      else ranges.push({ first: g.first, last: g.last })
      g.naks++
      g.lastAttemptAt = now
      g.due = now + retry
    }
    if (ranges.length > 0) {
      this.naksSent++
      this.host.sendNak(this.info.sessionId, ranges, now)
    }
    if (anyLost) this.drain(now)
    else this.recomputeNakDue()
  }

  /**
   * The session ends (gone, closed, replaced by a restart): every open gap is lost (SenderGone),
   * what is buffered is delivered in order, a partial update is reported.
   */
  terminate(now: number): void {
    for (let i = 0; i < this.gaps.length; i++) {
      const g = this.gaps[i]
      if (g.lost === undefined) g.lost = "SenderGone"
      g.due = Number.POSITIVE_INFINITY
    }
    this.drain(now)
    if (this.asmStart !== 0) {
      this.addLoss(this.asmStart, this.next - 1, "SenderGone", this.asmTopic)
      this.resetAssembly()
    }
    this.flushLoss()
    this.slots = []
    this.slotBytes = []
    this.recent.fill(undefined)
    this.addBuffered(-this.bufferedBytes)
    this.gaps = []
    this.nakDue = Number.POSITIVE_INFINITY
    this.closeAt = Number.POSITIVE_INFINITY
  }

  // ---------------------------------------------------------------------------------------------
  // In-order processing
  // ---------------------------------------------------------------------------------------------

  /**
   * A duplicate. When its bytes are still remembered and differ from the first copy's, two
   * senders use this session id and sequence number: without a key we cannot tell which is real
   * (the first one was delivered), but it is counted and surfaced.
   */
  private duplicate(s: number, bytes: Uint8Array | undefined, now: number): void {
    this.duplicates++
    this.host.stats.duplicates++
    if (bytes === undefined) return
    const r = s & (RECENT - 1)
    const seen = this.recent[r]
    if (
      seen === undefined ||
      this.recentSeq[r] !== s ||
      sameFrom(seen, this.recentAt[r], this.recentLength[r], bytes, 5)
    )
      return
    this.host.conflict(this, "ContentMismatch", `sequence ${s} arrived again with different bytes`, now)
  }

  /** Processes everything processable from `next` on, then emits the accumulated loss. */
  private drain(now: number): void {
    const slots = this.slots
    for (;;) {
      const n = this.next
      if (n > this.highest) break
      const i = n & this.mask
      const p = slots[i]
      if (p !== undefined && p.seq === n) {
        slots[i] = undefined
        const size = this.slotBytes[i]
        if (size > 0) {
          this.slotBytes[i] = 0
          this.addBuffered(-size)
        }
        this.process(p)
        this.next = n + 1
        continue
      }
      const g = this.gaps[0]
      if (g === undefined || g.first !== n || g.lost === undefined) break
      this.gaps.shift()
      let first = g.first
      if (this.asmStart !== 0) {
        // The update being reassembled cannot complete: its received fragments go with the loss.
        first = this.asmStart
        this.resetAssembly()
      }
      this.preSync = false
      this.skipReason = g.lost
      this.skipTopic = undefined
      this.addLoss(first, g.last, g.lost)
      this.next = g.last + 1
    }
    this.flushLoss()
    if (this.pendingFrom <= this.next + this.window - 1) this.activateWindow(now)
    this.recomputeNakDue()
  }

  private process(p: DataPacket): void {
    this.processedSegments++
    const body = p.body
    const seq = p.seq
    const host = this.host
    switch (body.fragment) {
      case Fragment.None: {
        if (this.asmStart !== 0) {
          this.addLoss(this.asmStart, seq - 1, "ReassemblyFailed", this.asmTopic)
          this.resetAssembly()
        }
        this.preSync = false
        this.skipReason = undefined
        this.skipTopic = undefined
        if (this.pendFirst !== 0) this.flushLoss()
        const updates = body.updates
        const source = this.info
        for (let k = 0; k < updates.length; k++) {
          // The decoders built each update in the delivered shape (packets.ts `decodedUpdate`).
          const u = updates[k] as Mutable<ReceivedUpdate>
          u.source = source
          u.sequence = seq
          host.deliver(u)
        }
        this.delivered += updates.length
        host.stats.updatesIn += updates.length
        return
      }
      case Fragment.First: {
        if (this.asmStart !== 0) {
          this.addLoss(this.asmStart, seq - 1, "ReassemblyFailed", this.asmTopic)
          this.resetAssembly()
        }
        this.preSync = false
        this.skipReason = undefined
        this.skipTopic = undefined
        if (body.totalLength > host.config.maxUpdateSize) {
          this.addLoss(seq, seq, "ReassemblyFailed", body.topic)
          this.skipReason = "ReassemblyFailed"
          this.skipTopic = body.topic
          return
        }
        this.asmStart = seq
        this.asmTopic = body.topic
        this.asmTotal = body.totalLength
        this.asmReceived = body.chunk.length
        // Grown as fragments arrive: a First fragment's claim alone does not allocate 64 MiB. Not
        // zeroed: it is delivered only once every byte was written, and dropped otherwise.
        this.asmBuf = unzeroed(Math.min(body.totalLength, ASM_INITIAL_BYTES))
        this.asmBuf.set(body.chunk)
        this.asmHeld = body.chunk.length
        this.addBuffered(body.chunk.length)
        return
      }
      default: {
        if (this.asmStart === 0) {
          // A continuation without its First: before the sync point it is skipped silently,
          // otherwise it belongs to an update already reported lost.
          if (this.preSync) return
          this.addLoss(seq, seq, this.skipReason ?? "ReassemblyFailed", this.skipTopic)
          return
        }
        const at = this.asmReceived
        this.asmReceived += body.chunk.length
        if (this.asmReceived > this.asmTotal) {
          this.addLoss(this.asmStart, seq, "ReassemblyFailed", this.asmTopic)
          this.skipTopic = this.asmTopic
          this.resetAssembly()
          this.skipReason = "ReassemblyFailed"
          return
        }
        if (this.asmReceived > this.asmBuf.length) {
          const grown = unzeroed(Math.min(this.asmTotal, Math.max(this.asmReceived, 2 * this.asmBuf.length)))
          grown.set(this.asmBuf.subarray(0, at))
          this.asmBuf = grown
        }
        this.asmBuf.set(body.chunk, at)
        this.asmHeld += body.chunk.length
        this.addBuffered(body.chunk.length)
        if (body.fragment === Fragment.Middle) return
        if (this.asmReceived !== this.asmTotal) {
          this.addLoss(this.asmStart, seq, "ReassemblyFailed", this.asmTopic)
          this.resetAssembly()
          return
        }
        // Filled to its last byte (the buffer never grows past the update's length).
        const payload = this.asmBuf
        const topic = this.asmTopic
        this.resetAssembly()
        if (this.pendFirst !== 0) this.flushLoss()
        host.deliver({ topic, payload, source: this.info, sequence: seq })
        this.delivered++
        host.stats.updatesIn++
      }
    }
  }

  private resetAssembly(): void {
    if (this.asmHeld > 0) {
      this.addBuffered(-this.asmHeld)
      this.asmHeld = 0
    }
    this.asmStart = 0
    this.asmTopic = ""
    this.asmTotal = 0
    this.asmReceived = 0
    this.asmBuf = EMPTY
  }

  /** Accumulates a loss range; contiguous ranges fold into one report (the first one's reason). */
  private addLoss(first: number, last: number, reason: LossReason, topic?: string): void {
    if (this.pendFirst !== 0 && this.pendLast + 1 === first) {
      this.pendLast = last
      if (this.pendTopic !== topic) this.pendTopic = undefined
      return
    }
    this.flushLoss()
    this.pendFirst = first
    this.pendLast = last
    this.pendReason = reason
    this.pendTopic = topic
  }

  private flushLoss(): void {
    if (this.pendFirst === 0) return
    const first = this.pendFirst
    const last = this.pendLast
    this.pendFirst = 0
    const count = last - first + 1
    this.lostSegments += count
    const stats = this.host.stats
    stats.lossEvents++
    stats.lostSegments += count
    const topic = this.pendTopic
    this.host.loss(
      topic === undefined
        ? { source: this.info, firstSeq: first, lastSeq: last, reason: this.pendReason, confirmed: this.confirmed }
        : {
            source: this.info,
            firstSeq: first,
            lastSeq: last,
            reason: this.pendReason,
            confirmed: this.confirmed,
            topic
          }
    )
  }

  // ---------------------------------------------------------------------------------------------
  // Gaps
  // ---------------------------------------------------------------------------------------------

  private raiseHighest(h: number, now: number): void {
    if (h <= this.highest) return
    this.addGap(this.highest + 1, h, now)
    this.highest = h
  }

  /** Appends a gap beyond every existing one; the part inside the window gets a random back-off. */
  private addGap(first: number, last: number, now: number): void {
    const wEnd = this.next + this.window - 1
    if (first <= wEnd) {
      const l = Math.min(last, wEnd)
      const due = now + this.host.random() * this.host.config.nakBackoffMs
      this.gaps.push({ first, last: l, due, naks: 0, lastAttemptAt: Number.NEGATIVE_INFINITY, lost: undefined })
      if (due < this.nakDue) this.nakDue = due
      first = l + 1
    }
    if (first <= last) {
      this.gaps.push({
        first,
        last,
        due: Number.POSITIVE_INFINITY,
        naks: 0,
        lastAttemptAt: Number.NEGATIVE_INFINITY,
        lost: undefined
      })
      if (first < this.pendingFrom) this.pendingFrom = first
    }
  }

  /** Gap parts the window has reached start their back-off. */
  private activateWindow(now: number): void {
    const wEnd = this.next + this.window - 1
    const gaps = this.gaps
    let pendingFrom = Number.POSITIVE_INFINITY
    for (let i = 0; i < gaps.length; i++) {
      const g = gaps[i]
      if (g.lost !== undefined || g.due !== Number.POSITIVE_INFINITY) continue
      if (g.first > wEnd) {
        if (g.first < pendingFrom) pendingFrom = g.first
        continue
      }
      if (g.last > wEnd) {
        gaps.splice(i + 1, 0, { ...g, first: wEnd + 1 })
        g.last = wEnd
      }
      g.due = now + this.host.random() * this.host.config.nakBackoffMs
    }
    this.pendingFrom = pendingFrom
  }

  /** Removes `s` from the gap holding it; false when no gap holds it. */
  private removeFromGaps(s: number): boolean {
    const gaps = this.gaps
    const i = this.findGap(s)
    if (i < 0) return false
    const g = gaps[i]
    if (g.first === s && g.last === s) gaps.splice(i, 1)
    else if (g.first === s) g.first = s + 1
    else if (g.last === s) g.last = s - 1
    else {
      gaps.splice(i + 1, 0, { ...g, first: s + 1 })
      g.last = s - 1
    }
    return true
  }

  /** Index of the gap containing `s`, or -1. */
  private findGap(s: number): number {
    const gaps = this.gaps
    let lo = 0
    let hi = gaps.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const g = gaps[mid]
      if (g.last < s) lo = mid + 1
      else if (g.first > s) hi = mid - 1
      else return mid
    }
    return -1
  }

  /**
   * Splits gaps so that none straddles `first` or `last` (boundaries at first and last + 1);
   * returns the index of the first gap at or after `first`.
   */
  private isolate(first: number, last: number): number {
    const gaps = this.gaps
    let lo = 0
    let hi = gaps.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (gaps[mid].last < first) lo = mid + 1
      else hi = mid
    }
    const start = lo
    if (start < gaps.length && gaps[start].first < first) {
      const g = gaps[start]
      gaps.splice(start + 1, 0, { ...g, first })
      g.last = first - 1
      lo = start + 1
    }
    let i = lo
    while (i < gaps.length && gaps[i].last <= last) i++
    if (i < gaps.length && gaps[i].first <= last) {
      const g = gaps[i]
      gaps.splice(i + 1, 0, { ...g, first: last + 1 })
      g.last = last
    }
    return lo
  }

  /** Declares the missing sequence numbers within [first, last] lost (first reason wins). */
  private markLost(first: number, last: number, reason: LossReason): void {
    if (first < this.next) first = this.next
    if (last > this.highest) last = this.highest
    if (first > last || this.gaps.length === 0) return
    const gaps = this.gaps
    for (let i = this.isolate(first, last); i < gaps.length && gaps[i].first <= last; i++) {
      const g = gaps[i]
      if (g.lost === undefined) {
        g.lost = reason
        g.due = Number.POSITIVE_INFINITY
      }
    }
  }

  private recomputeNakDue(): void {
    let d = Number.POSITIVE_INFINITY
    const gaps = this.gaps
    for (let i = 0; i < gaps.length; i++) if (gaps[i].due < d) d = gaps[i].due
    this.nakDue = d
  }

  private growSlots(span: number): void {
    let size = this.slots.length
    while (size < span) size *= 2
    const slots: Array<DataPacket | undefined> = new Array(size).fill(undefined)
    const bytes: Array<number> = new Array(size).fill(0)
    const mask = size - 1
    for (let i = 0; i < this.slots.length; i++) {
      const p = this.slots[i]
      if (p === undefined) continue
      slots[p.seq & mask] = p
      bytes[p.seq & mask] = this.slotBytes[i]
    }
    this.slots = slots
    this.slotBytes = bytes
    this.mask = mask
  }

  /** Segments held in the reorder buffer (tests assert the bound). */
  get buffered(): number {
    let n = 0
    for (const p of this.slots) if (p !== undefined) n++
    return n
  }

  /** Bytes of the partly reassembled update (tests assert the bound). */
  get assemblyBytes(): number {
    return this.asmReceived
  }

  get slotCapacity(): number {
    return this.slots.length
  }

  get gapCount(): number {
    return this.gaps.length
  }
}

/** Whether `b` equals the `length` bytes of `a` at `at`, from byte `offset` on. */
const sameFrom = (a: Uint8Array, at: number, length: number, b: Uint8Array, offset: number): boolean => {
  if (length !== b.length) return false
  for (let i = offset; i < length; i++) if (a[at + i] !== b[i]) return false
  return true
}
