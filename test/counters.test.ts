/**
 * The counters are defined once (src/internal/counters.ts); everything that lists them must list
 * all of them.
 */
import { describe, expect, it } from "@effect/vitest"
import { PAGE_HTML } from "../src/internal/console/page.js"
import { Counters } from "../src/internal/console/schema.js"
import { CONNECTION_COUNTERS, METRIC_COUNTERS, metricName } from "../src/internal/counters.js"
import { zeroEngineStats } from "../src/internal/protocol/counters.js"
import { metricDescriptions } from "../src/internal/stats.js"

describe("connection counters", () => {
  const names = CONNECTION_COUNTERS.map(([name]) => name)

  it("the console's Counters schema has exactly the connection counters", () => {
    expect(Object.keys(Counters.fields).sort()).toEqual([...names].sort())
  })

  it("the console page shows every connection counter", () => {
    for (const name of names) expect(PAGE_HTML).toContain(`"${name}"`)
  })

  it("every counter is a metric with a distinct name", () => {
    expect(metricDescriptions.map(([field]) => field)).toEqual(METRIC_COUNTERS.map(([name]) => name))
    const metricNames = metricDescriptions.map(([, name]) => name)
    expect(new Set(metricNames).size).toBe(metricNames.length)
    expect(metricName("outOfWindow")).toBe("distributor_out_of_window_total")
    expect(metricName("queueDrops")).toBe("distributor_receive_queue_drops_total")
  })

  it("the engine's zero value has every engine counter at 0", () => {
    const zero = zeroEngineStats()
    expect(Object.values(zero).every((v) => v === 0)).toBe(true)
    expect(names).toEqual(expect.arrayContaining(Object.keys(zero)))
    expect(zero.outOfWindow).toBe(0)
  })
})
