/**
 * Connection counters (the engine's, the subscribers', the socket's) → Effect `Metric`s. They are
 * counted in plain numbers on the hot path; a connection fiber copies the deltas into metrics
 * about once a second (and at close), so any Effect metrics exporter sees them without a metric
 * update per message.
 */
import { readFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { METRIC_COUNTERS, type MetricSource, metricName } from "./counters.js"

export type { MetricSource } from "./counters.js"

/** `[field, metric name, description]` of every metric, derived from the counter definitions. */
export const metricDescriptions: ReadonlyArray<readonly [keyof MetricSource, string, string]> = METRIC_COUNTERS.map(
  ([field, description]) => [field, metricName(field), description] as const
)

export interface ConnectionMetrics {
  readonly update: (stats: MetricSource) => Effect.Effect<void>
}

/**
 * Tagged by connection and application: several Distributors in one process (a demo, a test) may
 * open the same group:port, and their counters must not add up.
 */
export const metricsFor = (connection: string, application: string): ConnectionMetrics => {
  const counters = metricDescriptions.map(
    ([field, name, description]) =>
      [
        field,
        Metric.counter(name, { description, incremental: true }).pipe(
          Metric.tagged("connection", connection),
          Metric.tagged("application", application)
        )
      ] as const
  )
  const last: Record<string, number> = {}
  return {
    update: (stats) =>
      Effect.forEach(
        counters,
        ([field, counter]) => {
          const value = stats[field]
          const previous = last[field]
          last[field] = value
          // The first update registers every counter, zeros included: exporters see them from the start.
          if (previous === undefined) return Metric.incrementBy(counter, Math.max(0, value))
          const delta = value - previous
          return delta > 0 ? Metric.incrementBy(counter, delta) : Effect.void
        },
        { discard: true }
      )
  }
}

/**
 * Host-wide UDP receive-buffer drops (`RcvbufErrors` in `/proc/net/snmp`, Linux only): what the
 * kernel dropped because a socket's receive buffer was full. Undefined where unreadable.
 */
export const readKernelRcvbufErrors = (): number | undefined => {
  try {
    const lines = readFileSync("/proc/net/snmp", "utf8")
      .split("\n")
      .filter((l) => l.startsWith("Udp:"))
    if (lines.length < 2) return undefined
    const header = lines[0].split(/\s+/)
    const values = lines[1].split(/\s+/)
    const index = header.indexOf("RcvbufErrors")
    return index < 0 ? undefined : Number(values[index])
  } catch {
    return undefined
  }
}
