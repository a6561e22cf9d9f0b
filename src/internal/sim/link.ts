/**
 * Fault model of one direction of one simulated link (from one node to one other node).
 *
 * Independent of any event loop: `LinkModel.fate(bytes, now)` only answers "when does each copy of
 * this datagram arrive, relative to now" — `[]` dropped, `[d]` delivered after `d` ms, `[d1, d2]`
 * duplicated. `SimNetwork` (network.ts) turns those delays into events on its virtual clock; an
 * in-memory Effect Transport can turn them into `Effect.sleep`s (real time or TestClock).
 *
 * Per datagram, in this order:
 *  1. classify it ("data" or "control", `LinkConfig.classify`, default `classifyDatagram`);
 *  2. if `burst` is set, step the Gilbert–Elliott channel: Good → Bad with probability `enter`,
 *     Bad → Good with probability `exit` (mean burst length 1/exit datagrams);
 *  3. drop if the `drop` predicate says so (counted as `droppedByPredicate`);
 *  4. drop with probability `lossInBurst` when the channel is Bad (`droppedByBurst`), otherwise with
 *     `controlLoss` (control packets, when set) or `loss` (`droppedByLoss`);
 *  5. delay = `delayMs` + uniform [0, `jitterMs`); with probability `reorder` add `reorderDelayMs`
 *     (so later datagrams overtake it; counted `reordered`). Note jitter alone also reorders
 *     datagrams sent closer together than `jitterMs`: keep `jitterMs: 0` for a FIFO link;
 *  6. with probability `duplicate` a second copy arrives at `delayMs` + its own jitter (`duplicated`).
 *
 * Every call draws the same number of random values (6) whatever the configuration and outcome, so
 * the loss pattern of a link depends only on the seed and the datagram count — turning on
 * duplication or a drop predicate does not shift which datagrams are lost.
 */
import { MAGIC, PacketKind } from "../protocol/packets.js"
import type { Prng } from "./prng.js"

export type DatagramClass = "data" | "control"

/** Gilbert–Elliott two-state burst loss. Probabilities are per datagram on this link. */
export interface BurstConfig {
  /** Good → Bad transition probability. */
  readonly enter: number
  /** Bad → Good transition probability (mean burst length = 1 / exit). */
  readonly exit: number
  /** Loss probability while Bad (applies to data and control alike). */
  readonly lossInBurst: number
}

/** What the drop predicate sees besides the bytes. Counters are per link and 1-based. */
export interface DropContext {
  readonly now: number
  readonly from: string
  readonly to: string
  readonly class: DatagramClass
  /** Kind byte (offset 3), or -1 when the datagram is too short / has a bad magic. */
  readonly packetKind: number
  /** Retransmission flag (bit 0 of byte 4) of a data packet. */
  readonly retransmission: boolean
  /** This is the `index`-th datagram offered to this link. */
  readonly index: number
  /** This is the `classIndex`-th datagram of its class offered to this link ("the 3rd data packet"). */
  readonly classIndex: number
}

export interface LinkConfig {
  /** Independent loss probability (data packets, and control packets when `controlLoss` is unset). */
  readonly loss: number
  /** Loss probability for control packets (NAK, heartbeat, lost, announce, goodbye); falls back to `loss`. */
  readonly controlLoss?: number | undefined
  readonly burst?: BurstConfig | undefined
  /** Probability that a datagram is delivered twice. */
  readonly duplicate: number
  /** Probability that a datagram gets `reorderDelayMs` extra delay. */
  readonly reorder: number
  readonly reorderDelayMs: number
  /** Fixed one-way delay. */
  readonly delayMs: number
  /** Uniform extra delay in [0, jitterMs). */
  readonly jitterMs: number
  /** Overrides the default data/control classification. */
  readonly classify?: ((bytes: Uint8Array) => DatagramClass) | undefined
  /** Targeted drops: return true to drop this datagram (before random loss). */
  readonly drop?: ((bytes: Uint8Array, ctx: DropContext) => boolean) | undefined
}

/** A perfect link with 1 ms delay. */
export const defaultLinkConfig: LinkConfig = {
  loss: 0,
  duplicate: 0,
  reorder: 0,
  reorderDelayMs: 10,
  delayMs: 1,
  jitterMs: 0
}

export interface ClassCounters {
  sent: number
  dropped: number
}

export interface LinkStats {
  /** Datagrams offered to the link (`fate` calls). */
  sent: number
  /** Copies that reached the receiver (maintained by the driver, e.g. SimNetwork, on arrival). */
  delivered: number
  /** Datagrams dropped by this link, all causes. */
  dropped: number
  droppedByLoss: number
  droppedByBurst: number
  droppedByPredicate: number
  duplicated: number
  reordered: number
  /** Good → Bad transitions of the burst channel. */
  burstsEntered: number
  data: ClassCounters
  control: ClassCounters
}

const makeStats = (): LinkStats => ({
  sent: 0,
  delivered: 0,
  dropped: 0,
  droppedByLoss: 0,
  droppedByBurst: 0,
  droppedByPredicate: 0,
  duplicated: 0,
  reordered: 0,
  burstsEntered: 0,
  data: { sent: 0, dropped: 0 },
  control: { sent: 0, dropped: 0 }
})

const MAGIC_HI = (MAGIC >>> 8) & 0xff
const MAGIC_LO = MAGIC & 0xff

/** Kind byte (offset 3) of a datagram with our magic, else -1. */
export const packetKindOf = (bytes: Uint8Array): number =>
  bytes.length >= 5 && bytes[0] === MAGIC_HI && bytes[1] === MAGIC_LO ? bytes[3] : -1

/** Default classification: a well-formed Data packet is "data", anything else (or garbage) "control". */
export const classifyDatagram = (bytes: Uint8Array): DatagramClass =>
  packetKindOf(bytes) === PacketKind.Data ? "data" : "control"

/** Retransmission flag of a Data packet (bit 0 of byte 4). */
export const isRetransmission = (bytes: Uint8Array): boolean =>
  packetKindOf(bytes) === PacketKind.Data && (bytes[4] & 0x01) !== 0

const checkProbability = (name: string, p: number | undefined) => {
  if (p !== undefined && !(p >= 0 && p <= 1)) throw new RangeError(`LinkConfig.${name} must be in [0, 1], got ${p}`)
}
const checkNonNegative = (name: string, v: number) => {
  if (!(v >= 0 && Number.isFinite(v))) throw new RangeError(`LinkConfig.${name} must be a finite number ≥ 0, got ${v}`)
}

/** Merges and validates; throws RangeError on out-of-range values. */
export const mergeLinkConfig = (base: LinkConfig, patch: Partial<LinkConfig> = {}): LinkConfig => {
  const c: LinkConfig = { ...base, ...patch }
  checkProbability("loss", c.loss)
  checkProbability("controlLoss", c.controlLoss)
  checkProbability("duplicate", c.duplicate)
  checkProbability("reorder", c.reorder)
  if (c.burst !== undefined) {
    checkProbability("burst.enter", c.burst.enter)
    checkProbability("burst.exit", c.burst.exit)
    checkProbability("burst.lossInBurst", c.burst.lossInBurst)
  }
  checkNonNegative("delayMs", c.delayMs)
  checkNonNegative("jitterMs", c.jitterMs)
  checkNonNegative("reorderDelayMs", c.reorderDelayMs)
  return c
}

const DROPPED: ReadonlyArray<number> = Object.freeze([])

export class LinkModel {
  private cfg: LinkConfig
  private bad = false
  private dataIndex = 0
  private controlIndex = 0
  readonly stats: LinkStats = makeStats()
  /** Class of the datagram passed to the latest `fate` call. */
  lastClass: DatagramClass = "data"

  /**
   * @param config full or partial config (merged over `defaultLinkConfig`)
   * @param prng this link's own stream (fork one per link so links are independent)
   * @param from / to names shown to the drop predicate
   */
  constructor(
    config: Partial<LinkConfig>,
    private readonly prng: Prng,
    readonly from = "",
    readonly to = ""
  ) {
    this.cfg = mergeLinkConfig(defaultLinkConfig, config)
  }

  get config(): LinkConfig {
    return this.cfg
  }

  /** Applies a partial change (`{ drop: undefined }` removes a predicate). Channel state and stats are kept. */
  configure(patch: Partial<LinkConfig>): void {
    this.cfg = mergeLinkConfig(this.cfg, patch)
    if (this.cfg.burst === undefined) this.bad = false
  }

  /** Whether the burst channel is currently in its Bad state. */
  get inBurst(): boolean {
    return this.bad
  }

  /** Delivery delays in ms for each copy of this datagram: [] dropped, [d] once, [d1, d2] duplicated. */
  fate(bytes: Uint8Array, now: number): ReadonlyArray<number> {
    const cfg = this.cfg
    const prng = this.prng
    // Fixed number of draws per datagram (see the module comment).
    const rBurst = prng.next()
    const rLoss = prng.next()
    const rJitter = prng.next()
    const rReorder = prng.next()
    const rDup = prng.next()
    const rDupJitter = prng.next()

    const cls = cfg.classify !== undefined ? cfg.classify(bytes) : classifyDatagram(bytes)
    this.lastClass = cls
    const counters = cls === "data" ? this.stats.data : this.stats.control
    const classIndex = cls === "data" ? ++this.dataIndex : ++this.controlIndex
    const stats = this.stats
    stats.sent++
    counters.sent++

    const burst = cfg.burst
    if (burst !== undefined) {
      if (this.bad) {
        if (rBurst < burst.exit) this.bad = false
      } else if (rBurst < burst.enter) {
        this.bad = true
        stats.burstsEntered++
      }
    }

    if (cfg.drop !== undefined) {
      const kind = packetKindOf(bytes)
      const ctx: DropContext = {
        now,
        from: this.from,
        to: this.to,
        class: cls,
        packetKind: kind,
        retransmission: kind === PacketKind.Data && (bytes[4] & 0x01) !== 0,
        index: stats.sent,
        classIndex
      }
      if (cfg.drop(bytes, ctx)) {
        stats.dropped++
        stats.droppedByPredicate++
        counters.dropped++
        return DROPPED
      }
    }

    if (this.bad && burst !== undefined) {
      if (rLoss < burst.lossInBurst) {
        stats.dropped++
        stats.droppedByBurst++
        counters.dropped++
        return DROPPED
      }
    } else {
      const p = cls === "control" && cfg.controlLoss !== undefined ? cfg.controlLoss : cfg.loss
      if (rLoss < p) {
        stats.dropped++
        stats.droppedByLoss++
        counters.dropped++
        return DROPPED
      }
    }

    let delay = cfg.delayMs + rJitter * cfg.jitterMs
    if (rReorder < cfg.reorder) {
      delay += cfg.reorderDelayMs
      stats.reordered++
    }
    if (rDup < cfg.duplicate) {
      stats.duplicated++
      return [delay, cfg.delayMs + rDupJitter * cfg.jitterMs]
    }
    return [delay]
  }
}
