/**
 * Delivery latency percentiles without keeping every sample: a log-scale histogram with 1 %
 * wide buckets (a percentile is reported as its bucket's upper bound, so within 1 %), plus the
 * exact minimum, maximum and mean.
 */

const GROWTH = 1.01
const LOG_GROWTH = Math.log(GROWTH)
/** Smallest latency told apart from zero, ms. */
const RESOLUTION_MS = 0.001

export interface LatencySummary {
  readonly samples: number
  readonly minMs: number
  readonly meanMs: number
  readonly p50Ms: number
  readonly p90Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly maxMs: number
}

export class LatencyHistogram {
  private readonly counts: Array<number> = []
  private n = 0
  private sum = 0
  private min = Number.POSITIVE_INFINITY
  private max = Number.NEGATIVE_INFINITY

  record(ms: number): void {
    this.n++
    this.sum += ms
    if (ms < this.min) this.min = ms
    if (ms > this.max) this.max = ms
    // Clock differences between processes can make a sample slightly negative: it counts as 0.
    const i = ms <= RESOLUTION_MS ? 0 : Math.ceil(Math.log(ms / RESOLUTION_MS) / LOG_GROWTH)
    this.counts[i] = (this.counts[i] ?? 0) + 1
  }

  merge(other: LatencyHistogram): void {
    other.counts.forEach((c, i) => {
      if (c) this.counts[i] = (this.counts[i] ?? 0) + c
    })
    this.n += other.n
    this.sum += other.sum
    this.min = Math.min(this.min, other.min)
    this.max = Math.max(this.max, other.max)
  }

  get count(): number {
    return this.n
  }

  percentile(p: number): number {
    if (this.n === 0) return 0
    const rank = Math.max(1, Math.ceil((p / 100) * this.n))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i] ?? 0
      if (seen >= rank) return Math.min(this.max, i === 0 ? RESOLUTION_MS : RESOLUTION_MS * GROWTH ** i)
    }
    return this.max
  }

  summary(): LatencySummary {
    const r = (x: number) => Math.round(x * 1000) / 1000
    return {
      samples: this.n,
      minMs: this.n ? r(this.min) : 0,
      meanMs: this.n ? r(this.sum / this.n) : 0,
      p50Ms: r(this.percentile(50)),
      p90Ms: r(this.percentile(90)),
      p99Ms: r(this.percentile(99)),
      p999Ms: r(this.percentile(99.9)),
      maxMs: this.n ? r(this.max) : 0
    }
  }
}
