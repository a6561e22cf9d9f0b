/**
 * Prometheus text exposition format, version 0.0.4, of Effect's global metric registry
 * (`Metric.snapshot`): the connection counters of `internal/stats.ts` and any other Effect metric
 * the application defines. One `# HELP` / `# TYPE` block per metric name; label values escaped.
 */

import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/** Metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes `_`. */
export const sanitizeName = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[a-zA-Z_:]/.test(s) ? s : `_${s}`
}

/** Label names: `[a-zA-Z_][a-zA-Z0-9_]*`. */
const sanitizeLabel = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[a-zA-Z_]/.test(s) ? s : `_${s}`
}

/** Label values escape backslash, double quote and line feed. */
export const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

/** HELP text escapes backslash and line feed. */
const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

export const formatValue = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Number.POSITIVE_INFINITY) return "+Inf"
  if (value === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(value)
}

type Labels = ReadonlyArray<readonly [string, string]>

const formatLabels = (labels: Labels): string =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${sanitizeLabel(k)}="${escapeLabelValue(v)}"`).join(",")}}`

interface Family {
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  help: string | undefined
  readonly lines: Array<string>
}

export const render = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  const family = (name: string, type: Family["type"], description: Option.Option<string>): Family | undefined => {
    let f = families.get(name)
    if (f === undefined) {
      f = { type, help: Option.getOrUndefined(description), lines: [] }
      families.set(name, f)
    } else if (f.type !== type) {
      // The same name registered with another metric type: exposition would be invalid.
      return undefined
    }
    if (f.help === undefined) f.help = Option.getOrUndefined(description)
    return f
  }
  const sample = (f: Family, name: string, labels: Labels, value: number | bigint) =>
    f.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`)

  for (const { metricKey, metricState } of pairs) {
    const name = sanitizeName(metricKey.name)
    const labels: Labels = metricKey.tags.map((t) => [t.key, t.value] as const)
    const description = metricKey.description
    if (MetricState.isCounterState(metricState)) {
      const f = family(name, "counter", description)
      if (f) sample(f, name, labels, metricState.count)
    } else if (MetricState.isGaugeState(metricState)) {
      const f = family(name, "gauge", description)
      if (f) sample(f, name, labels, metricState.value)
    } else if (MetricState.isFrequencyState(metricState)) {
      // One counter per observed value, the value as a `key` label.
      const f = family(name, "counter", description)
      if (f) for (const [key, count] of metricState.occurrences) sample(f, name, [...labels, ["key", key]], count)
    } else if (MetricState.isHistogramState(metricState)) {
      const f = family(name, "histogram", description)
      if (f) {
        let sawInf = false
        for (const [boundary, cumulative] of metricState.buckets) {
          if (boundary === Number.POSITIVE_INFINITY) sawInf = true
          sample(f, `${name}_bucket`, [...labels, ["le", formatValue(boundary)]], cumulative)
        }
        if (!sawInf) sample(f, `${name}_bucket`, [...labels, ["le", "+Inf"]], metricState.count)
        sample(f, `${name}_sum`, labels, metricState.sum)
        sample(f, `${name}_count`, labels, metricState.count)
      }
    } else if (MetricState.isSummaryState(metricState)) {
      const f = family(name, "summary", description)
      if (f) {
        for (const [quantile, value] of metricState.quantiles) {
          if (Option.isSome(value)) sample(f, name, [...labels, ["quantile", formatValue(quantile)]], value.value)
        }
        sample(f, `${name}_sum`, labels, metricState.sum)
        sample(f, `${name}_count`, labels, metricState.count)
      }
    }
  }

  const out: Array<string> = []
  const sorted = Array.from(families).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  for (const [name, f] of sorted) {
    if (f.help !== undefined) out.push(`# HELP ${name} ${escapeHelp(f.help)}`)
    out.push(`# TYPE ${name} ${f.type}`)
    for (const line of f.lines) out.push(line)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
}
