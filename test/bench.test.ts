/**
 * The benchmark suite's quick run against effect-distributor and raw dgram (no peers): it runs to
 * the end and writes its four output files, which parse. The numbers are not checked (timing
 * claims belong to the suite's own report, not to a test).
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type CaseResult, medianOfRounds } from "../bench/report.js"

const run = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", ...args], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => {
      stdout += String(d)
    })
    child.stderr.on("data", (d) => {
      stderr += String(d)
    })
    child.on("exit", (code) => resolve({ code, stdout, stderr }))
  })

/** Well-formed enough for a browser: one root <svg>, every tag closed in order. */
const checkSvg = (text: string) => {
  expect(text.trimStart().startsWith("<svg")).toBe(true)
  const stack: Array<string> = []
  for (const m of text.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m
    if (selfClosing) continue
    if (closing) expect(stack.pop()).toBe(name)
    else stack.push(name)
  }
  expect(stack).toEqual([])
  expect(text).toMatch(/<rect [^>]*fill="#/)
}

describe("benchmark suite", () => {
  it.live(
    "--quick --only ours,dgram writes results.md, results.json and two SVG charts",
    () =>
      Effect.promise(async () => {
        const dir = mkdtempSync(join(tmpdir(), "effect-distributor-bench-"))
        try {
          // Ports 7650–7672 (the full suite uses 7600–7622).
          const r = await run(["--quick", "--only", "ours,dgram", "--out", dir, "--port-base", "7650"])
          expect(r.stderr).not.toMatch(/failed:/)
          expect(r.code).toBe(0)

          const results = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"))
          expect(results.quick).toBe(true)
          expect(results.systems).toEqual(["ours", "dgram"])
          expect(typeof results.machine.cpu).toBe("string")
          expect(results.machine.cores).toBeGreaterThan(0)
          expect(results.machine.node).toBe(process.version)
          const scenarios = new Set(results.cases.map((c: { scenario: string }) => c.scenario))
          expect([...scenarios].sort()).toEqual(["fanout", "latency", "recovery", "throughput"])
          for (const c of results.cases) {
            expect(c.ok, `${c.scenario} ${c.system}: ${c.error}`).toBe(true)
            expect(c.sent).toBeGreaterThan(0)
            // Fan-out CPU leaves out the warm-up's updates (sent and delivered all the same).
            const warmup = c.scenario === "fanout" ? (c.rate * c.warmupMs) / 1000 : 0
            if (c.scenario === "fanout") expect(warmup).toBeGreaterThan(0)
            expect(c.publisher.measuredUpdates).toBe(c.sent - warmup)
            expect(c.publisher.cpuUsPerUpdate).toBeCloseTo(c.publisher.cpuUs / c.publisher.measuredUpdates, 6)
          }

          const md = readFileSync(join(dir, "results.md"), "utf8")
          for (const heading of ["## Throughput", "## One-way latency", "## Recovery", "## Fan-out", "## Targets"]) {
            expect(md).toContain(heading)
          }
          expect(md).toContain("| effect-distributor |")
          expect(md).toContain("| raw node:dgram multicast |")
          // The table printed at the end is the one written.
          expect(r.stdout).toContain(md.split("\n")[0])

          checkSvg(readFileSync(join(dir, "throughput.svg"), "utf8"))
          checkSvg(readFileSync(join(dir, "latency.svg"), "utf8"))
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      }),
    240_000
  )
})

describe("throughput rounds", () => {
  const tp = (system: string, size: number, round: number, rate: number | undefined, extra: Partial<CaseResult> = {}) =>
    ({
      scenario: "throughput",
      system,
      subscribers: 2,
      size,
      rate: 0,
      sendLoss: 0,
      ok: rate !== undefined,
      round,
      ratePerSubscriber: rate,
      deliveredPct: 100,
      perSubscriber: [{ lossNotices: 0 }, { lossNotices: 0 }],
      ...extra
    }) as unknown as CaseResult

  it("reports the median round per system and size, and what every round delivered", () => {
    const latency = { scenario: "latency", system: "ours", subscribers: 2, size: 64, rate: 1000, sendLoss: 0, ok: true }
    const cases = [
      tp("ours", 64, 0, 300),
      tp("ours", 1024, 0, 10, { deliveredPct: 99.5, perSubscriber: [{ lossNotices: 2 }, { lossNotices: 1 }] }),
      tp("nats", 64, 0, 50),
      tp("ours", 64, 1, 100),
      tp("ours", 1024, 1, 30),
      tp("nats", 64, 1, undefined, { error: "timeout" }),
      tp("ours", 64, 2, 200),
      tp("ours", 1024, 2, 20),
      tp("nats", 64, 2, 70),
      latency as unknown as CaseResult
    ]
    const merged = medianOfRounds(cases)
    expect(merged.map((c) => `${c.scenario} ${c.system} ${c.size}`)).toEqual([
      "throughput ours 64",
      "throughput ours 1024",
      "throughput nats 64",
      "latency ours 64"
    ])
    const [o64, o1k, nats] = merged
    expect(o64.ratePerSubscriber).toBe(200)
    expect(o64.round).toBe(2)
    expect(o64.allRounds).toEqual({ rates: [300, 100, 200], deliveredPct: 100, lossNotices: 0, failed: 0 })
    // The worst round's delivery and every round's notices, whichever round is the median.
    expect(o1k.ratePerSubscriber).toBe(20)
    expect(o1k.allRounds).toEqual({ rates: [10, 30, 20], deliveredPct: 99.5, lossNotices: 3, failed: 0 })
    // Two measured rounds: the lower middle; the failed one is counted.
    expect(nats.ratePerSubscriber).toBe(50)
    expect(nats.allRounds).toEqual({ rates: [50, null, 70], deliveredPct: 100, lossNotices: 0, failed: 1 })
    expect(merged[3]).toBe(latency)
  })

  it("takes the median round of a latency case by its p50", () => {
    const lat = (round: number, p50: number) =>
      ({
        scenario: "latency",
        system: "ours",
        subscribers: 2,
        size: 64,
        rate: 1000,
        sendLoss: 0,
        ok: true,
        round,
        ratePerSubscriber: 1000,
        deliveredPct: 100,
        perSubscriber: [],
        latencyUs: { count: 10, p50, p99: p50 * 10, p999: p50 * 20, max: p50 * 30 }
      }) as unknown as CaseResult
    const [merged] = medianOfRounds([lat(0, 300), lat(1, 120), lat(2, 200)])
    expect(merged.latencyUs).toEqual({ count: 10, p50: 200, p99: 2000, p999: 4000, max: 6000 })
    expect((merged.allRounds as { p50s: Array<number> }).p50s).toEqual([300, 120, 200])
  })

  it("takes the median round of a fan-out case by its publisher CPU, per number of subscribers", () => {
    const fan = (subscribers: number, round: number, cpu: number | undefined) =>
      ({
        scenario: "fanout",
        system: "ours",
        subscribers,
        size: 64,
        rate: 20_000,
        sendLoss: 0,
        ok: cpu !== undefined,
        round,
        minRatePerSubscriber: 20_000,
        deliveredPct: 100,
        perSubscriber: [],
        publisher: cpu === undefined ? undefined : { cpuUsPerUpdate: cpu, round }
      }) as unknown as CaseResult
    const merged = medianOfRounds([
      fan(1, 0, 4.1),
      fan(8, 0, 6.0),
      fan(1, 1, 3.5),
      fan(8, 1, undefined),
      fan(1, 2, 3.9),
      fan(8, 2, 5.0)
    ])
    expect(merged.map((c) => c.subscribers)).toEqual([1, 8])
    const [one, eight] = merged
    expect(one.publisher?.cpuUsPerUpdate).toBe(3.9)
    expect(one.round).toBe(2)
    expect((one.allRounds as { cpus: Array<number | null> }).cpus).toEqual([4.1, 3.5, 3.9])
    // A failed round does not count: of the two measured, the lower.
    expect(eight.publisher?.cpuUsPerUpdate).toBe(5.0)
    expect((eight.allRounds as { cpus: Array<number | null>; failed: number }).cpus).toEqual([6.0, null, 5.0])
    expect((eight.allRounds as { failed: number }).failed).toBe(1)
  })
})
