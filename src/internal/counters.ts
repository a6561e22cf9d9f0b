/**
 * Every counter of a connection, defined once. The engine's come from
 * `protocol/counters.ts`; the connection shell and the socket add theirs here. Derived from this
 * list: `Connection.ConnectionStats` (the type), the Effect metrics (`stats.ts`), the console's
 * `Counters` schema and JSON (`console/schema.ts`, `console/server.ts`), and so Prometheus.
 * The console page checks its rows against `CONNECTION_COUNTERS` in a test.
 */
import { ENGINE_COUNTERS } from "./protocol/counters.js"

/** Counted by the connection shell (fan-out and receive path). */
export const SHELL_COUNTERS = [
  ["subscriberOverflows", "Subscriber buffer overflows (updates not delivered)"],
  ["subscriberDrops", "Updates not delivered because a subscriber's buffer was full"],
  ["invalidTopicsDropped", "Received updates dropped for an invalid topic"],
  ["engineFaults", "Protocol engine exceptions (caught and counted)"]
] as const

/** Counted by the socket (they live in `SocketStats`, and in the metrics). */
export const SOCKET_COUNTERS = [
  ["queueDrops", "Datagrams dropped: a queue between socket and connection was full"],
  ["sendErrors", "Datagrams the socket failed to send"]
] as const

/** The counters of `ConnectionStats` and of the console's `counters` object, in display order. */
export const CONNECTION_COUNTERS = [...ENGINE_COUNTERS, ...SHELL_COUNTERS] as const

/** What becomes an Effect metric: the connection's counters and the socket's. */
export const METRIC_COUNTERS = [...CONNECTION_COUNTERS, ...SOCKET_COUNTERS] as const

export type ShellCounter = (typeof SHELL_COUNTERS)[number][0]
export type ConnectionCounter = (typeof CONNECTION_COUNTERS)[number][0]
export type MetricCounter = (typeof METRIC_COUNTERS)[number][0]

export type ShellStats = { [K in ShellCounter]: number }
export type ConnectionCounters = { readonly [K in ConnectionCounter]: number }
export type MetricSource = { readonly [K in MetricCounter]: number }

export const zeroShellStats = (): ShellStats =>
  Object.fromEntries(SHELL_COUNTERS.map(([name]) => [name, 0])) as ShellStats

/** Metric names kept from before the single definition (dashboards may use them). */
const METRIC_NAME_OVERRIDES: Partial<Record<MetricCounter, string>> = {
  queueDrops: "distributor_receive_queue_drops_total"
}

/** `datagramsOut` → `distributor_datagrams_out_total`. */
export const metricName = (counter: MetricCounter): string =>
  METRIC_NAME_OVERRIDES[counter] ?? `distributor_${counter.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`

/** Pick the connection counters out of a stats object (drops every other field). */
export const pickConnectionCounters = (stats: ConnectionCounters): ConnectionCounters => {
  const out = {} as { [K in ConnectionCounter]: number }
  for (const [name] of CONNECTION_COUNTERS) out[name] = stats[name]
  return out
}
