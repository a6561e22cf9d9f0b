/**
 * Rate history of the web console: one counter snapshot per connection per sample (about once a
 * second), turned into per-second rates kept in a bounded ring buffer. Plain TypeScript, driven
 * by the console's sampler fiber with explicit timestamps, so it is testable without a clock.
 */
import type { ConnectionStats } from "../../Connection.js"
import { type RateField, type RateSample, type Rates, rateFields } from "./schema.js"

/** Samples kept per connection: 5 minutes at one a second. */
export const HISTORY_CAPACITY = 300

const zeroRates = (): Rates => ({
  datagramsIn: 0,
  datagramsOut: 0,
  bytesIn: 0,
  bytesOut: 0,
  updatesIn: 0,
  updatesOut: 0,
  naksSent: 0,
  naksReceived: 0,
  retransmissionsSent: 0,
  retransmissionsReceived: 0
})

/** Two decimals are plenty for a rate and keep the JSON small. */
const round = (x: number): number => Math.round(x * 100) / 100

/** Fixed-capacity ring of samples, oldest first when read. */
class Ring<A> {
  private readonly items: Array<A> = []
  private start = 0
  constructor(readonly capacity: number) {}
  push(item: A): void {
    if (this.items.length < this.capacity) this.items.push(item)
    else {
      this.items[this.start] = item
      this.start = (this.start + 1) % this.capacity
    }
  }
  get size(): number {
    return this.items.length
  }
  /** The newest `n` items (all by default), oldest first. */
  last(n: number = this.items.length): Array<A> {
    const size = this.items.length
    const count = Math.max(0, Math.min(n, size))
    const out = new Array<A>(count)
    for (let i = 0; i < count; i++) out[i] = this.items[(this.start + size - count + i) % size]
    return out
  }
}

interface Series {
  /** Identifies one opening of a connection: a reopened `group:port` starts a new series. */
  readonly openedAt: number
  lastAt: number
  last: Record<RateField, number>
  current: Rates
  peak: Rates
  readonly samples: Ring<RateSample>
}

export interface RateView {
  readonly current: Rates
  readonly peak: Rates
  readonly history: ReadonlyArray<RateSample>
}

const counterValues = (stats: ConnectionStats): Record<RateField, number> => {
  const out = {} as Record<RateField, number>
  for (const field of rateFields) out[field] = stats[field]
  return out
}

export class RateHistory {
  private readonly series = new Map<string, Series>()

  constructor(readonly capacity: number = HISTORY_CAPACITY) {}

  /**
   * Record one snapshot of every open connection taken at `at` (epoch ms). Connections absent
   * from `connections` are forgotten.
   */
  record(connections: ReadonlyArray<ConnectionStats>, at: number): void {
    const seen = new Set<string>()
    for (const stats of connections) {
      seen.add(stats.connection)
      const values = counterValues(stats)
      const existing = this.series.get(stats.connection)
      if (existing === undefined || existing.openedAt !== stats.openedAt) {
        // The first snapshot is a baseline: no rate can be computed from it yet.
        this.series.set(stats.connection, {
          openedAt: stats.openedAt,
          lastAt: at,
          last: values,
          current: zeroRates(),
          peak: zeroRates(),
          samples: new Ring(this.capacity)
        })
        continue
      }
      const dt = (at - existing.lastAt) / 1000
      if (dt <= 0) continue
      const rates: Record<RateField, number> = zeroRates()
      for (const field of rateFields) {
        const delta = values[field] - existing.last[field]
        rates[field] = delta > 0 ? round(delta / dt) : 0
      }
      const peak: Record<RateField, number> = { ...existing.peak }
      for (const field of rateFields) if (rates[field] > peak[field]) peak[field] = rates[field]
      existing.lastAt = at
      existing.last = values
      existing.current = rates
      existing.peak = peak
      existing.samples.push({ at, rates })
    }
    for (const key of Array.from(this.series.keys())) if (!seen.has(key)) this.series.delete(key)
  }

  /** Rates of one connection; `historyLimit` caps the number of samples returned (newest kept). */
  view(connection: string, historyLimit: number = this.capacity): RateView {
    const s = this.series.get(connection)
    if (s === undefined) return { current: zeroRates(), peak: zeroRates(), history: [] }
    return { current: s.current, peak: s.peak, history: s.samples.last(historyLimit) }
  }
}
