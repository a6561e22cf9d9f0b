/**
 * Connection counters (the engine's, the subscribers', the socket's) → Effect `Metric`s. They are
 * counted in plain numbers on the hot path; a connection fiber copies the deltas into metrics
 * about once a second (and at close), so any Effect metrics exporter sees them without a metric
 * update per message.
 */
import { readFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type { EngineStats } from "./protocol/engine.js"

/** What is copied into metrics: the engine's counters and the shell's own (subscribers, socket). */
export interface MetricSource extends EngineStats {
  readonly subscriberOverflows: number
  readonly invalidTopicsDropped: number
  readonly engineFaults: number
  readonly queueDrops: number
  readonly sendErrors: number
}

const names: ReadonlyArray<readonly [keyof MetricSource, string, string]> = [
  ["datagramsOut", "distributor_datagrams_out_total", "Datagrams sent (incl. retransmissions and control)"],
  ["bytesOut", "distributor_bytes_out_total", "Bytes sent"],
  ["updatesOut", "distributor_updates_out_total", "Updates published"],
  ["datagramsIn", "distributor_datagrams_in_total", "Datagrams received"],
  ["bytesIn", "distributor_bytes_in_total", "Bytes received"],
  ["updatesIn", "distributor_updates_in_total", "Updates delivered from remote sessions"],
  ["decodeErrors", "distributor_decode_errors_total", "Datagrams dropped because they did not decode"],
  ["naksSent", "distributor_naks_sent_total", "NAK packets sent"],
  ["naksReceived", "distributor_naks_received_total", "NAK packets received for local sessions"],
  ["retransmissionsSent", "distributor_retransmissions_sent_total", "Segments retransmitted"],
  ["retransmissionsReceived", "distributor_retransmissions_received_total", "Retransmitted segments received"],
  ["lostPacketsSent", "distributor_lost_packets_sent_total", "'Lost' answers sent for evicted segments"],
  ["duplicates", "distributor_duplicates_total", "Duplicate segments dropped"],
  ["lossEvents", "distributor_loss_events_total", "Irrecoverable loss reports"],
  ["lostSegments", "distributor_lost_segments_total", "Segments reported irrecoverably lost"],
  ["outOfWindow", "distributor_out_of_window_total", "Segments beyond the reorder window (re-requested later)"],
  [
    "subscriberOverflows",
    "distributor_subscriber_overflows_total",
    "Subscriber buffer overflows (updates not delivered)"
  ],
  ["invalidTopicsDropped", "distributor_invalid_topics_dropped_total", "Received updates dropped for an invalid topic"],
  ["engineFaults", "distributor_engine_faults_total", "Protocol engine exceptions (caught and counted)"],
  ["queueDrops", "distributor_receive_queue_drops_total", "Datagrams dropped: the receive queue was full"],
  ["sendErrors", "distributor_send_errors_total", "Datagrams the socket failed to send"]
]

export const metricDescriptions = names

export interface ConnectionMetrics {
  readonly update: (stats: MetricSource) => Effect.Effect<void>
}

/**
 * Tagged by connection and application: several Distributors in one process (a demo, a test) may
 * open the same group:port, and their counters must not add up.
 */
export const metricsFor = (connection: string, application: string): ConnectionMetrics => {
  const counters = names.map(
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
