/**
 * What a subscriber of the command-line tools checks: for each publisher (remote session), that
 * updates arrive in publishing order, with no gap and no duplicate, and with intact payloads; and
 * how long delivery took. Irrecoverable losses and overflows reported by the library are recorded
 * next to the gaps, so a gap can be told apart from a *silent* gap (a bug).
 *
 * Plain synchronous code called once per delivered chunk (no Effect per update).
 */
import type * as Connection from "../../Connection.js"
import type { GatewayLoss, IrrecoverableLoss, SubscriberOverflow } from "../../DistributorError.js"
import { LatencyHistogram } from "./latency.js"
import * as Payload from "./payload.js"

interface TopicTrack {
  /** Next expected `topicSeq`. */
  next: number
  received: number
  /** Ranges skipped so far and not filled by a late arrival, inclusive. */
  missing: Array<[number, number]>
  /** Total announced by the end marker. */
  total: number | undefined
}

export interface PublisherTrack {
  readonly sessionId: string
  readonly host: string
  readonly application: string
  readonly topics: Map<string, TopicTrack>
  lastSeq: number
  received: number
  duplicates: number
  outOfOrder: number
  /** Seen an end marker: everything this publisher sent before it has been delivered or reported lost. */
  ended: boolean
  /**
   * Whether this subscriber was there before the publisher's first update (every update from 1 on
   * is expected), or joined late (each topic's first update sets its baseline). Decided by the
   * first update that arrives.
   */
  fromStart: boolean | undefined
  /** Total published, from the end marker. */
  published: number | undefined
  lossReports: number
  lostSegments: number
}

export interface PublisherSummary {
  readonly sessionId: string
  readonly host: string
  readonly application: string
  readonly received: number
  /** From the publisher's end marker, when it was seen. */
  readonly published: number | null
  readonly missing: number
  readonly duplicates: number
  readonly outOfOrder: number
  readonly lossReports: number
  readonly lostSegments: number
  /** Missing updates of a publisher that never had a loss reported: updates that vanished silently. */
  readonly unreportedMissing: number
  readonly ended: boolean
  /** Subscribed after the publisher had started: updates before each topic's first arrival are not expected. */
  readonly joinedLate: boolean
  /** The missing updates (first 50 ranges): topic and `topicSeq` range, inclusive. */
  readonly gaps: ReadonlyArray<{ readonly topic: string; readonly first: number; readonly last: number }>
}

export interface LossSummary {
  readonly reason: string
  readonly sessionId: string
  readonly firstSeq: number
  readonly lastSeq: number
}

export interface GatewayLossSummary {
  readonly reason: string
  readonly firstSeq: number
  readonly lastSeq: number | null
}

export interface VerifierSummary {
  readonly received: number
  readonly bytes: number
  readonly missing: number
  readonly unreportedMissing: number
  readonly duplicates: number
  readonly outOfOrder: number
  readonly corrupt: number
  /** Updates that were not in the tools' payload format (other applications on the group). */
  readonly foreign: number
  readonly losses: ReadonlyArray<LossSummary>
  readonly overflows: number
  readonly overflowDropped: number
  /** Losses a gateway reported (`sub --gateway`): ranges of the client's own sequence numbers. */
  readonly gatewayLosses: ReadonlyArray<GatewayLossSummary>
  readonly publishers: ReadonlyArray<PublisherSummary>
  /** True when nothing went missing silently, nothing was duplicated, reordered or corrupted. */
  readonly ok: boolean
}

const countMissing = (t: TopicTrack): number => t.missing.reduce((n, [a, b]) => n + b - a + 1, 0)

export class Verifier {
  readonly publishers = new Map<string, PublisherTrack>()
  readonly latency = new LatencyHistogram()
  received = 0
  bytes = 0
  corrupt = 0
  foreign = 0
  overflows = 0
  overflowDropped = 0
  readonly losses: Array<IrrecoverableLoss> = []
  readonly gatewayLosses: Array<GatewayLoss> = []
  /**
   * When the subscription was registered (epoch ms, the payloads' clock). Publishers whose first
   * update was sent after it are expected in full. Default: before everything.
   */
  subscribedAt = Number.NEGATIVE_INFINITY
  /** Called with a publisher's session id the first time its end marker arrives. */
  onEnd: ((sessionId: string) => void) | undefined

  private track(sessionId: string, host: string, application: string): PublisherTrack {
    let p = this.publishers.get(sessionId)
    if (p === undefined) {
      p = {
        sessionId,
        host,
        application,
        topics: new Map(),
        lastSeq: 0,
        received: 0,
        duplicates: 0,
        outOfOrder: 0,
        ended: false,
        fromStart: undefined,
        published: undefined,
        lossReports: 0,
        lostSegments: 0
      }
      this.publishers.set(sessionId, p)
    }
    return p
  }

  /** One update, an irrecoverable loss or an overflow, as a subscription delivers them. */
  onItem(item: Connection.Update | Connection.LossNotice | GatewayLoss, now: number): void {
    if ("_tag" in item) {
      this.onNotice(item)
      return
    }
    const header = Payload.decode(item.payload)
    if (header === undefined) {
      this.foreign++
      return
    }
    if (header === "corrupt") {
      this.corrupt++
      return
    }
    const p = this.track(item.source.sessionIdHex, item.source.host, item.source.application)
    if (p.fromStart === undefined) p.fromStart = header.startedAt >= this.subscribedAt
    let t = p.topics.get(item.topic)
    if (t === undefined) {
      // Joined late: what this topic carried before its first arrival was never expected.
      const next = p.fromStart ? 1 : header.end ? header.topicSeq + 1 : header.topicSeq
      t = { next, received: 0, missing: [], total: undefined }
      p.topics.set(item.topic, t)
    }
    if (header.end) {
      t.total = header.topicSeq
      if (t.next <= header.topicSeq) {
        t.missing.push([t.next, header.topicSeq])
        t.next = header.topicSeq + 1
      }
      p.published = header.seq
      if (!p.ended) {
        p.ended = true
        this.onEnd?.(p.sessionId)
      }
      return
    }
    this.received++
    this.bytes += item.payload.length
    this.latency.record(now - header.sentAt)
    // Publishing order across topics: `seq` only grows.
    const late = header.seq < p.lastSeq
    if (header.seq > p.lastSeq) p.lastSeq = header.seq
    const s = header.topicSeq
    if (s === t.next) {
      t.next++
      if (late) p.outOfOrder++
    } else if (s > t.next) {
      t.missing.push([t.next, s - 1])
      t.next = s + 1
      if (late) p.outOfOrder++
    } else {
      // Earlier than expected: a late arrival filling a gap, or a duplicate.
      const i = t.missing.findIndex(([a, b]) => a <= s && s <= b)
      if (i < 0) {
        p.duplicates++
        this.received--
        this.bytes -= item.payload.length
        return
      }
      const [a, b] = t.missing[i]
      t.missing.splice(
        i,
        1,
        ...([] as Array<[number, number]>).concat(a < s ? [[a, s - 1]] : [], s < b ? [[s + 1, b]] : [])
      )
      p.outOfOrder++
    }
    t.received++
    p.received++
  }

  /** A loss notice of any kind, as a subscription delivers (`notify`) or fails with it. */
  onNotice(notice: Connection.LossNotice | GatewayLoss): void {
    if (notice._tag === "IrrecoverableLoss") this.onLoss(notice)
    else if (notice._tag === "SubscriberOverflow") this.onOverflow(notice)
    else this.gatewayLosses.push(notice)
  }

  onLoss(loss: IrrecoverableLoss): void {
    this.losses.push(loss)
    const p = this.track(loss.sessionId, loss.host, loss.application)
    p.lossReports++
    p.lostSegments += loss.lastSeq - loss.firstSeq + 1
  }

  onOverflow(overflow: SubscriberOverflow): void {
    this.overflows++
    this.overflowDropped += overflow.dropped
  }

  /**
   * Declares the updates the publisher with this session id is known to have published on each
   * topic (the demo knows them exactly), so a lost tail counts as missing even without an end marker.
   */
  expect(source: Connection.Source, totals: ReadonlyMap<string, number>, matches: (topic: string) => boolean): void {
    const p = this.track(source.sessionIdHex, source.host, source.application)
    for (const [topic, total] of totals) {
      if (!matches(topic)) continue
      let t = p.topics.get(topic)
      if (t === undefined) {
        t = { next: 1, received: 0, missing: [], total: undefined }
        p.topics.set(topic, t)
      }
      t.total = total
      if (t.next <= total) {
        t.missing.push([t.next, total])
        t.next = total + 1
      }
    }
  }

  summary(): VerifierSummary {
    const publishers = Array.from(this.publishers.values(), (p): PublisherSummary => {
      let missing = 0
      const gaps: Array<{ topic: string; first: number; last: number }> = []
      for (const [topic, t] of p.topics) {
        missing += countMissing(t)
        for (const [first, last] of t.missing) if (gaps.length < 50) gaps.push({ topic, first, last })
      }
      // Overflow drops are reported too (as SubscriberOverflow), not silent; so are a gateway's
      // losses, which name the client's sequence numbers, not the publisher's.
      const reported = p.lossReports > 0 || this.overflows > 0 || this.gatewayLosses.length > 0
      return {
        sessionId: p.sessionId,
        host: p.host,
        application: p.application,
        received: p.received,
        published: p.published ?? null,
        missing,
        duplicates: p.duplicates,
        outOfOrder: p.outOfOrder,
        lossReports: p.lossReports,
        lostSegments: p.lostSegments,
        unreportedMissing: reported ? 0 : missing,
        ended: p.ended,
        joinedLate: p.fromStart === false,
        gaps
      }
    })
    const sum = (f: (p: PublisherSummary) => number) => publishers.reduce((n, p) => n + f(p), 0)
    const unreportedMissing = sum((p) => p.unreportedMissing)
    const duplicates = sum((p) => p.duplicates)
    const outOfOrder = sum((p) => p.outOfOrder)
    return {
      received: this.received,
      bytes: this.bytes,
      missing: sum((p) => p.missing),
      unreportedMissing,
      duplicates,
      outOfOrder,
      corrupt: this.corrupt,
      foreign: this.foreign,
      losses: this.losses.map((l) => ({
        reason: l.reason,
        sessionId: l.sessionId,
        firstSeq: l.firstSeq,
        lastSeq: l.lastSeq
      })),
      overflows: this.overflows,
      overflowDropped: this.overflowDropped,
      gatewayLosses: this.gatewayLosses.map((l) => ({
        reason: l.reason,
        firstSeq: l.firstSeq,
        lastSeq: l.lastSeq ?? null
      })),
      publishers,
      ok: unreportedMissing === 0 && duplicates === 0 && outOfOrder === 0 && this.corrupt === 0
    }
  }
}
