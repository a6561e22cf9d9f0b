/**
 * Rendering of the benchmark suite's results: the markdown tables (with ratios to raw dgram and
 * to the best peer measured in the same run), the issue's targets, and two hand-written SVG charts.
 */
import type { System } from "./worker.js"

export interface CaseResult {
  readonly scenario: "throughput" | "large" | "latency" | "recovery" | "fanout" | "gateway"
  readonly system: System
  readonly subscribers: number
  readonly size: number
  readonly rate: number
  readonly sendLoss: number
  readonly ok: boolean
  readonly error?: string
  /** Not measured: the system cannot carry this case as configured, and why. */
  readonly na?: string
  readonly sent?: number
  readonly publisher?: Record<string, number | undefined>
  readonly ratePerSubscriber?: number
  readonly minRatePerSubscriber?: number
  readonly deliveredPct?: number
  readonly perSubscriber?: ReadonlyArray<Record<string, number>>
  readonly latencyUs?: { count: number; p50: number; p99: number; p999: number; max: number } | undefined
  readonly [key: string]: unknown
}

/** Cases measured in several rounds (the case itself is the median round's). */
export interface AllRounds {
  readonly rates: ReadonlyArray<number | null>
  /** Latency cases: each round's p50, µs. */
  readonly p50s?: ReadonlyArray<number | null>
  /** Fan-out cases: each round's publisher CPU per update, µs. */
  readonly cpus?: ReadonlyArray<number | null>
  readonly deliveredPct: number
  readonly lossNotices: number
  readonly failed: number
}
const allRoundsOf = (c: CaseResult | undefined): AllRounds | undefined => c?.allRounds as AllRounds | undefined

/**
 * One case per system and size (throughput), per system and rate (latency) or per system and
 * number of subscribers (fan-out) of the rounds: the round with the median figure — rate per
 * subscriber, p50 latency, or publisher CPU per update — (the lower middle of an even count),
 * carrying every round's figures, worst delivery and loss notices as `allRounds`. Rounds that
 * failed or measured nothing do not count; with none left the first round stays.
 */
export const medianOfRounds = (cases: ReadonlyArray<CaseResult>): Array<CaseResult> => {
  const keyOf = (c: CaseResult) =>
    c.round === undefined || (c.scenario !== "throughput" && c.scenario !== "latency" && c.scenario !== "fanout")
      ? undefined
      : `${c.scenario}|${c.system}|${c.size}|${c.rate}|${c.subscribers}`
  const figure = (c: CaseResult): number | undefined =>
    c.scenario === "latency"
      ? c.latencyUs?.p50
      : c.scenario === "fanout"
        ? c.publisher?.cpuUsPerUpdate
        : c.ratePerSubscriber
  const out: Array<CaseResult> = []
  const groups = new Map<string, Array<CaseResult>>()
  for (const c of cases) {
    const key = keyOf(c)
    if (key === undefined) {
      out.push(c)
      continue
    }
    const g = groups.get(key)
    if (g === undefined) {
      groups.set(key, [c])
      out.push(c) // placeholder, replaced below (keeps the original order)
    } else g.push(c)
  }
  return out.map((c) => {
    const key = keyOf(c)
    const g = key === undefined ? undefined : groups.get(key)
    if (g === undefined) return c
    const measured = g.filter((x) => x.ok && figure(x) !== undefined && !Number.isNaN(figure(x)))
    // What every round delivered (the targets are judged on the worst round, not the median).
    const allRounds: AllRounds = {
      rates: g.map((x) => x.ratePerSubscriber ?? null),
      ...(c.scenario === "latency" ? { p50s: g.map((x) => x.latencyUs?.p50 ?? null) } : {}),
      ...(c.scenario === "fanout" ? { cpus: g.map((x) => (x.ok ? (x.publisher?.cpuUsPerUpdate ?? null) : null)) } : {}),
      deliveredPct: Math.min(...measured.map((x) => x.deliveredPct ?? 0)),
      lossNotices: g.reduce((n, x) => n + (x.perSubscriber ?? []).reduce((a, y) => a + (y.lossNotices ?? 0), 0), 0),
      failed: g.length - measured.length
    }
    if (measured.length === 0) return { ...g[0], allRounds }
    const sorted = [...measured].sort((a, b) => figure(a)! - figure(b)!)
    return { ...sorted[Math.floor((sorted.length - 1) / 2)], allRounds }
  })
}

export interface Results {
  readonly startedAt: string
  readonly durationS: number
  readonly command: string
  readonly quick: boolean
  readonly machine: Record<string, unknown>
  readonly systems: ReadonlyArray<System>
  readonly notes: ReadonlyArray<string>
  readonly cases: ReadonlyArray<CaseResult>
}

export const NAMES: Record<System, string> = {
  ours: "effect-distributor",
  ours0: "effect-distributor, holdbackDelayMs 0",
  ours65k: "effect-distributor, segmentSize 65000",
  oursSec: "effect-distributor, security encrypt (AES-256-GCM)",
  oursAuth: "effect-distributor, security authenticate (GMAC)",
  oursNode: "effect-distributor on node:dgram (native UDP off)",
  dgram: "raw node:dgram multicast",
  zeromq: "ZeroMQ PUB/SUB (tcp)",
  nats: "NATS",
  redis: "Redis pub/sub"
}
const PEERS: ReadonlyArray<System> = ["zeromq", "nats", "redis"]
const COLORS: Record<System, string> = {
  ours: "#2b6cb0",
  ours0: "#90cdf4",
  ours65k: "#553c9a",
  oursSec: "#2c7a7b",
  oursAuth: "#81e6d9",
  oursNode: "#a3bffa",
  dgram: "#718096",
  zeromq: "#dd6b20",
  nats: "#38a169",
  redis: "#c53030"
}

const find = (r: Results, scenario: CaseResult["scenario"], system: System, f: (c: CaseResult) => boolean) =>
  r.cases.find((c) => c.scenario === scenario && c.system === system && c.ok && f(c))

const fmtRate = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x)
    ? "—"
    : x >= 1e6
      ? `${(x / 1e6).toFixed(2)} M`
      : x >= 1e3
        ? `${(x / 1e3).toFixed(1)} k`
        : x.toFixed(0)
const fmtUs = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x)
    ? "—"
    : x >= 1e6
      ? `${(x / 1e6).toFixed(2)} s`
      : x >= 10_000
        ? `${(x / 1000).toFixed(1)} ms`
        : `${x.toFixed(0)} µs`
/** CPU per update. */
const fmtCpu = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "—" : `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)} µs`
const fmtRatio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? "—"
    : `${(a / b).toFixed(2)}×`
const sizeLabel = (n: number) => (n >= 2 ** 20 ? `${n / 2 ** 20} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`)

const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, x) => a + x, 0) / xs.length
const lossNotices = (c: CaseResult | undefined) =>
  (c?.perSubscriber ?? []).reduce((a, x) => a + (x.lossNotices ?? 0), 0)
/** Subscriber CPU per update delivered, mean of the subscribers. */
const subscriberCpu = (c: CaseResult | undefined) =>
  c?.perSubscriber ? mean(c.perSubscriber.map((x) => x.cpuUsPerUpdate)) : undefined

/** The best peer for a metric: highest (throughput) or lowest (latency) among the peers measured. */
const bestPeer = (
  _r: Results,
  value: (s: System) => number | undefined,
  higherIsBetter: boolean
): { system: System; value: number } | undefined => {
  let best: { system: System; value: number } | undefined
  for (const s of PEERS) {
    const v = value(s)
    if (v === undefined || !Number.isFinite(v)) continue
    if (!best || (higherIsBetter ? v > best.value : v < best.value)) best = { system: s, value: v }
  }
  return best
}

/** The systems of a scenario: effect-distributor also in the variants measured in it. */
const systemsOf = (r: Results, scenario: CaseResult["scenario"]): ReadonlyArray<System> => [
  // A Set: a variant also named in `--only` would otherwise get two rows.
  ...new Set(
    r.systems.flatMap(
      (s): Array<System> =>
        s === "ours"
          ? [
              "ours",
              ...(["ours0", "ours65k"] as const).filter((v) =>
                r.cases.some((c) => c.scenario === scenario && c.system === v)
              )
            ]
          : [s]
    )
  )
]

const throughputOf = (r: Results, s: System, size: number) =>
  find(r, "throughput", s, (c) => c.size === size)?.ratePerSubscriber
/** Raw dgram's datagrams/s per subscriber in the throughput scenario (a 64 KiB message is 48 of them). */
const datagramRateOf = (r: Results, size: number) => {
  const d = find(r, "throughput", "dgram", (c) => c.size === size)
  return d ? (mean(d.perSubscriber!.map((x) => x.datagramsIn)) / (d.publisher!.elapsedUs ?? 1)) * 1e6 : undefined
}
const latencyOf = (r: Results, s: System, rate: number) => find(r, "latency", s, (c) => c.rate === rate)?.latencyUs

export const renderMarkdown = (r: Results): string => {
  const L: Array<string> = []
  const m = r.machine as Record<string, any>
  L.push(`# Benchmark results${r.quick ? " (quick run: short, noisy — smoke test only)" : ""}`)
  L.push("")
  L.push(`Run ${r.startedAt}, ${r.durationS} s, \`${r.command}\`.`)
  L.push(
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}; ` +
      `load average at start ${m.loadAverage?.join(" / ")}, at end ${m.loadAverageAtEnd?.join(" / ")} (1/5/15 min).`
  )
  L.push("")
  L.push(
    "Loopback only: multicast on 127.0.0.1 (TTL 1, loopback on, 4 MiB socket buffers), servers on 127.0.0.1. " +
      "1 publisher process, N subscriber processes. Ratios compare figures measured in this same run; " +
      "absolute numbers on a shared machine move from run to run."
  )
  for (const n of r.notes) L.push(`\n> ${n}`)
  const failed = r.cases.filter((c) => !c.ok && !c.na)
  if (failed.length > 0) {
    L.push("")
    L.push("Cases that failed (no figure reported):")
    for (const c of failed) L.push(`- ${c.scenario} ${c.system} ${sizeLabel(c.size)} N=${c.subscribers}: ${c.error}`)
  }

  // Throughput
  const sizes = [64, 1024, 65536].filter((size) => r.cases.some((c) => c.scenario === "throughput" && c.size === size))
  if (sizes.length > 0) {
    L.push("")
    L.push("## Throughput: updates/s delivered per subscriber (N = 2, publisher sending as fast as it can)")
    L.push("")
    L.push(`| system | ${sizes.map((s) => `${sizeLabel(s)} | ×dgram | ×best peer`).join(" | ")} |`)
    L.push(`| --- | ${sizes.map(() => "---: | ---: | ---:").join(" | ")} |`)
    for (const s of systemsOf(r, "throughput")) {
      const cells = sizes.map((size) => {
        const v = throughputOf(r, s, size)
        const peer = bestPeer(r, (p) => throughputOf(r, p, size), true)
        const d = find(r, "throughput", s, (c) => c.size === size)
        const notices = lossNotices(d)
        const delivered =
          d?.deliveredPct !== undefined && d.deliveredPct < 99.95
            ? ` (${d.deliveredPct.toFixed(1)} %${notices > 0 ? `, ${notices} loss notices` : ""})`
            : ""
        return `${fmtRate(v)}${delivered} | ${fmtRatio(v, throughputOf(r, "dgram", size))} | ${fmtRatio(v, peer?.value)}`
      })
      L.push(`| ${NAMES[s]} | ${cells.join(" | ")} |`)
    }
    L.push("")
    L.push(
      "A percentage is the share of published messages a subscriber got when it is below 100 % (raw dgram and " +
        "ZeroMQ drop when a receiver falls behind; effect-distributor recovers by NAK and reports what it " +
        "cannot recover to subscribers as loss notices). effect-distributor publishes with `publishAll` bursts " +
        "(natural batching), at its default 1 400-byte segments and, in the `segmentSize 65000` row, in " +
        "datagrams of up to 65 000 bytes (loopback, jumbo frames); raw dgram sends one message per datagram; a " +
        "64 KiB raw dgram message is cut by hand into 1 400-byte datagrams and counts only when all of them " +
        "arrived (no recovery). Raw dgram datagrams/s: " +
        sizes.map((size) => `${sizeLabel(size)} ${fmtRate(datagramRateOf(r, size))}`).join(", ") +
        "."
    )
    L.push("")
    L.push("CPU per update, same cases: publisher per update sent, subscriber per update delivered (mean of the two).")
    L.push("")
    L.push(`| system | ${sizes.map((s) => `${sizeLabel(s)} publisher | subscriber`).join(" | ")} |`)
    L.push(`| --- | ${sizes.map(() => "---: | ---:").join(" | ")} |`)
    for (const s of systemsOf(r, "throughput")) {
      const cells = sizes.map((size) => {
        const c = find(r, "throughput", s, (x) => x.size === size)
        return `${fmtCpu(c?.publisher?.cpuUsPerUpdate)} | ${fmtCpu(subscriberCpu(c))}`
      })
      L.push(`| ${NAMES[s]} | ${cells.join(" | ")} |`)
    }
    L.push("")
    const warm = r.cases.find((c) => c.scenario === "throughput" && c.ok)?.warmupMs
    const tWarm = typeof warm === "number" ? warm : 0
    L.push(
      (tWarm > 0
        ? `Each case first runs the same load for ${tWarm / 1000} s, numbered apart and left out of every figure (the JIT's tiering of the path takes seconds), then a full collection. `
        : "") +
        "CPU is `process.cpuUsage()` (user + system) of each process: the publisher's over its sending phase, a " +
        `subscriber's from ${tWarm > 0 ? "its first message after the warm-up" : "its subscription being ready"} to its report (the tail included). The brokers' own ` +
        "CPU (a third process) is not in these figures; see the fan-out table."
    )
    const rounded = systemsOf(r, "throughput").filter((sys) =>
      sizes.some((size) => (allRoundsOf(find(r, "throughput", sys, (c) => c.size === size))?.rates.length ?? 1) > 1)
    )
    if (rounded.length > 0) {
      const n = Math.max(
        ...r.cases.filter((c) => c.scenario === "throughput").map((c) => allRoundsOf(c)?.rates.length ?? 1)
      )
      L.push("")
      L.push(
        `Each throughput figure above is the median of ${n} rounds; every round measured every system once, one ` +
          "round after the other, the systems of each case back to back, so that a drift of the machine's speed hits " +
          "all systems alike. Every round's rate per subscriber:"
      )
      L.push("")
      L.push(`| system | ${sizes.map((size) => `${sizeLabel(size)}, each round`).join(" | ")} |`)
      L.push(`| --- | ${sizes.map(() => "---:").join(" | ")} |`)
      for (const sys of rounded) {
        const cells = sizes.map((size) => {
          const rates = allRoundsOf(find(r, "throughput", sys, (c) => c.size === size))?.rates ?? []
          return rates.map((v) => (v === null ? "failed" : fmtRate(v))).join(" / ")
        })
        L.push(`| ${NAMES[sys]} | ${cells.join(" | ")} |`)
      }
    }
  }

  // Large update
  const large = r.cases.filter((c) => c.scenario === "large")
  if (large.length > 0) {
    L.push("")
    L.push(`## Large update: one ${sizeLabel(large[0].size)} update, N = 2, default settings (60 s to arrive, at most)`)
    L.push("")
    L.push(
      "| system | delivered intact | publish → receipt (MB/s), each subscriber | loss notices | datagrams in (each subscriber) / out | publisher CPU | subscriber CPU (each) |"
    )
    L.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (const s of r.systems) {
      const c = large.find((x) => x.system === s)
      if (!c) continue
      if (!c.ok) {
        L.push(`| ${NAMES[s]} | ${c.na ? `n/a (${c.na})` : `failed: ${c.error}`} | | | | | |`)
        continue
      }
      const subs = c.perSubscriber!
      const p = c.publisher!
      const good = subs.filter((x) => x.intact === 1).length
      const corrupt = subs.filter((x) => x.distinct > 0 && x.intact !== 1).length
      const times = subs.map((x) =>
        x.intact === 1
          ? `${fmtUs(x.transferUs)} (${(c.size / x.transferUs).toFixed(c.size / x.transferUs >= 100 ? 0 : 1)})`
          : "—"
      )
      const datagrams =
        p.datagramsOut !== undefined ? `${subs.map((x) => x.datagramsIn).join(" / ")} / ${p.datagramsOut}` : "—"
      L.push(
        `| ${NAMES[s]} | ${good}/${subs.length}${corrupt > 0 ? ` (${corrupt} corrupt)` : ""} | ${times.join(" / ")} | ` +
          `${lossNotices(c)} | ${datagrams} | ${fmtUs(p.cpuUsToExit)} | ${subs.map((x) => fmtUs(x.cpuUs)).join(" / ")} |`
      )
    }
    L.push("")
    L.push(
      "One update, its bytes a pattern each subscriber checks (length and every 32-bit word) before it counts as " +
        "intact. The time runs from just before the publish call to the subscriber's callback (`process.hrtime`); " +
        "MB/s is 10⁶ bytes/s. Publisher CPU is from the start to the end of the case (answering NAKs included); " +
        "subscriber CPU leaves out the check. effect-distributor sends it with one `publish` at default " +
        "connection settings (the 4 MiB socket buffers of every case); raw dgram cuts it into 1 400-byte " +
        "datagrams (no recovery, so one lost datagram loses the update); the peers carry it if their default " +
        "configuration lets them."
    )
  }

  // Latency
  const rates = [1000, 10_000].filter((rate) => r.cases.some((c) => c.scenario === "latency" && c.rate === rate))
  if (rates.length > 0) {
    L.push("")
    L.push("## One-way latency, 64 B updates at a fixed rate (N = 2, both subscribers' samples)")
    L.push("")
    L.push("| system | rate | p50 | p99 | p99.9 | max | p50 ×dgram | p99 ×dgram | p50 ×best peer | p99 ×best peer |")
    L.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (const rate of rates) {
      const dg = latencyOf(r, "dgram", rate)
      const b50 = bestPeer(r, (p) => latencyOf(r, p, rate)?.p50, false)
      const b99 = bestPeer(r, (p) => latencyOf(r, p, rate)?.p99, false)
      for (const s of systemsOf(r, "latency")) {
        const l = latencyOf(r, s, rate)
        L.push(
          `| ${NAMES[s]} | ${rate}/s | ${fmtUs(l?.p50)} | ${fmtUs(l?.p99)} | ${fmtUs(l?.p999)} | ${fmtUs(l?.max)} | ` +
            `${fmtRatio(l?.p50, dg?.p50)} | ${fmtRatio(l?.p99, dg?.p99)} | ${fmtRatio(l?.p50, b50?.value)} | ` +
            `${fmtRatio(l?.p99, b99?.value)} |`
        )
      }
    }
    L.push("")
    L.push(
      "Send and receive times come from `process.hrtime` (CLOCK_MONOTONIC, shared by every process on the " +
        "machine). Each case first runs the same load for 3 s, numbered apart and left out of every " +
        "figure (the JIT's tiering of the path takes seconds at these rates). effect-distributor " +
        "publishes each update with `unsafePublish` (what `publish` does, without a fiber per call: " +
        "the harness is not an Effect program). From `holdbackThreshold` " +
        "(default 2 000 updates/s) up it packs updates for up to `holdbackDelayMs` (default 2 ms), by " +
        "design, so its latency at 10 000/s includes that holdback. The `holdbackDelayMs 0` row is the " +
        "same library with holdback off. " +
        "Lower ratios are better."
    )
    const roundsAt = rates.map((rate) =>
      Math.max(
        ...r.cases
          .filter((c) => c.scenario === "latency" && c.rate === rate)
          .map((c) => allRoundsOf(c)?.rates.length ?? 1)
      )
    )
    if (Math.max(...roundsAt) > 1) {
      const counts = rates.map((rate, i) => `${roundsAt[i]} at ${rate}/s`).join(", ")
      L.push("")
      L.push(
        `Each row is the median (by p50) of its rounds (${counts}), measured like the throughput rounds; every round's p50:`
      )
      L.push("")
      L.push(`| system | ${rates.map((rate) => `${rate}/s p50, each round`).join(" | ")} |`)
      L.push(`| --- | ${rates.map(() => "---:").join(" | ")} |`)
      for (const sys of systemsOf(r, "latency")) {
        const cells = rates.map((rate) =>
          (allRoundsOf(find(r, "latency", sys, (c) => c.rate === rate))?.p50s ?? [])
            .map((v) => (v === null ? "failed" : fmtUs(v)))
            .join(" / ")
        )
        L.push(`| ${NAMES[sys]} | ${cells.join(" | ")} |`)
      }
    }
  }

  // Recovery
  const rec = r.cases.filter((c) => c.scenario === "recovery")
  if (rec.length > 0) {
    L.push("")
    L.push("## Recovery: effect-distributor with loss injected on the publisher's sends (64 B, 1 000 updates/s)")
    L.push("")
    L.push(
      "| loss | N | delivered | latency p50 | p99 | p99.9 | datagrams dropped | retransmissions / dropped | NAKs / dropped | irrecoverable |"
    )
    L.push("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (const c of rec) {
      if (!c.ok) {
        L.push(`| ${c.sendLoss * 100} % | ${c.subscribers} | failed: ${c.error} | | | | | | | |`)
        continue
      }
      const p = c.publisher!
      const subs = c.perSubscriber!
      const dropped = p.simulatedSendDrops ?? 0
      const naks = subs.reduce((a, s) => a + (s.naksSent ?? 0), 0)
      const lost = subs.reduce((a, s) => a + (s.lossNotices ?? 0), 0)
      L.push(
        `| ${c.sendLoss * 100} % | ${c.subscribers} | ${c.deliveredPct!.toFixed(3)} % | ${fmtUs(c.latencyUs?.p50)} | ` +
          `${fmtUs(c.latencyUs?.p99)} | ${fmtUs(c.latencyUs?.p999)} | ${dropped} | ` +
          `${fmtRatio(p.retransmissionsSent, dropped)} | ${fmtRatio(naks, dropped)} | ${lost} |`
      )
    }
    L.push("")
    L.push(
      "`Transport.layerLossy({ sendLoss })` drops that fraction of every datagram the publisher sends " +
        "(retransmissions included, so each dropped datagram ideally costs one retransmission); subscribers' NAKs " +
        "are not dropped. Latency is over every update, so at ≥ 1 % loss the p99 is the recovery latency " +
        "(gap noticed → NAK after 0–10 ms back-off → retransmission; updates behind a gap wait for it, " +
        "in order). `irrecoverable` counts loss notices delivered to subscribers. NAKs / dropped is summed " +
        "over all subscribers: ~1 means NAK suppression works, ~N means every subscriber NAKed."
    )
  }

  // Fan-out
  const fan = r.cases.filter((c) => c.scenario === "fanout")
  if (fan.length > 0) {
    const ns = [...new Set(fan.map((c) => c.subscribers))].sort((a, b) => a - b)
    L.push("")
    L.push("## Fan-out: 64 B updates offered at 20 000/s in bursts of 100, N subscribers")
    L.push("")
    L.push(
      `| system | ${ns.map((n) => `N=${n} pub CPU/update | sub CPU/update | delivered/s (min sub)`).join(" | ")} | pub CPU N=${ns[ns.length - 1]} / N=${ns[0]} | server CPU/update |`
    )
    L.push(`| --- | ${ns.map(() => "---: | ---: | ---:").join(" | ")} | ---: | ---: |`)
    for (const s of r.systems) {
      const row = ns.map((n) => find(r, "fanout", s, (c) => c.subscribers === n))
      const cpu = row.map((c) => c?.publisher?.cpuUsPerUpdate)
      const server = row
        .map((c) => c?.publisher?.serverCpuUsPerUpdate)
        .filter((x): x is number => x !== undefined)
        .map((x) => `${x.toFixed(1)}`)
        .join(" / ")
      L.push(
        `| ${NAMES[s]} | ${row.map((c, i) => `${fmtCpu(cpu[i])} | ${fmtCpu(subscriberCpu(c))} | ${fmtRate(c?.minRatePerSubscriber)}`).join(" | ")} | ` +
          `${fmtRatio(cpu[cpu.length - 1], cpu[0])} | ${server === "" ? "—" : `${server} µs`} |`
      )
    }
    L.push("")
    const warmupMs = typeof fan[0]?.warmupMs === "number" ? fan[0].warmupMs : 0
    L.push(
      "Publisher CPU is `process.cpuUsage()` (user + system) of the publisher process over the sending phase, per " +
        `update sent${warmupMs > 0 ? `, after a ${warmupMs / 1000} s warm-up of the same load and a full collection, uncounted (the JIT still compiles a path called 200 times/s for seconds, and the first full collection after start-up came at random)` : ""}; subscriber CPU is each subscriber's over its run, per update delivered (mean). The brokers do the fan-out in the server process; its CPU per update (from /proc) is listed ` +
        "for N = " +
        ns.join(" / ") +
        "."
    )
    const n = Math.max(...fan.map((c) => allRoundsOf(c)?.cpus?.length ?? 1))
    if (n > 1) {
      L.push("")
      L.push(
        `Each publisher CPU figure is the median of ${n} rounds, measured like the throughput rounds (the row shows ` +
          "that round's other figures); every round's publisher CPU per update:"
      )
      L.push("")
      L.push(`| system | ${ns.map((k) => `N=${k}, each round`).join(" | ")} |`)
      L.push(`| --- | ${ns.map(() => "---:").join(" | ")} |`)
      for (const s of r.systems) {
        const cells = ns.map((k) =>
          (allRoundsOf(find(r, "fanout", s, (c) => c.subscribers === k))?.cpus ?? [])
            .map((x) => (x === null ? "failed" : fmtCpu(x)))
            .join(" / ")
        )
        if (cells.some((x) => x !== "")) L.push(`| ${NAMES[s]} | ${cells.map((x) => x || "—").join(" | ")} |`)
      }
    }
  }

  // Gateway fan-out
  const gw = r.cases.filter((c) => c.scenario === "gateway")
  if (gw.length > 0) {
    const c0 = gw[0]
    L.push("")
    L.push(
      `## Gateway fan-out: ${c0.size} B updates at ${c0.rate}/s, 1 multicast publisher → 1 gateway → ${c0.subscribers} WebSocket clients`
    )
    L.push("")
    L.push(
      "| system | delivered % | delivered/s per client (mean / min) | p50 / p99 latency | gateway or server CPU/update | client CPU/update | publisher CPU/update |"
    )
    L.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (const c of gw) {
      if (!c.ok) {
        L.push(`| ${NAMES[c.system]} | ${c.na ?? `failed: ${c.error ?? "?"}`} | | | | | |`)
        continue
      }
      const server = c.publisher?.serverCpuUsPerUpdate
      L.push(
        `| ${c.system === "ours" ? "effect-distributor + Gateway" : NAMES[c.system]} | ${c.deliveredPct?.toFixed(2)} % | ` +
          `${fmtRate(c.ratePerSubscriber)} / ${fmtRate(c.minRatePerSubscriber)} | ` +
          `${fmtUs(c.latencyUs?.p50)} / ${fmtUs(c.latencyUs?.p99)} | ${server === undefined ? "—" : `${server.toFixed(1)} µs`} | ` +
          `${fmtCpu(subscriberCpu(c))} | ${fmtCpu(c.publisher?.cpuUsPerUpdate)} |`
      )
    }
    L.push("")
    L.push(
      "Clients run 25 to a process (GatewayClient over WebSocket; NATS: 25 connections). The gateway's CPU is its " +
        "process's `process.cpuUsage()` from the start of publishing until every client had the tail, per update " +
        "published (one update in, one WebSocket frame out per client); NATS's is its server's, from /proc. " +
        "Client CPU is each process's, shared evenly by its clients, per update delivered."
    )
  }

  // Targets
  const has = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x)
  const table = (title: string) => {
    L.push("")
    L.push(`### ${title}`)
    L.push("")
    L.push("| target | measured | met |")
    L.push("| --- | --- | :---: |")
  }
  const t = (name: string, measured: string, ok: boolean | undefined) =>
    L.push(`| ${name} | ${measured} | ${ok === undefined ? "n/a" : ok ? "yes" : "no"} |`)
  /** `a / b ≥ min` (or `≤ max`), with the figures it comes from. */
  const ratio = (name: string, a: number | undefined, b: number | undefined, bound: number, atMost = false) =>
    t(
      name,
      `${fmtRate(a)} / ${fmtRate(b)} = ${fmtRatio(a, b)}`,
      has(a) && has(b) ? (atMost ? a / b <= bound : a / b >= bound) : undefined
    )
  L.push("")
  L.push("## Targets")
  L.push("")
  L.push("Every ratio is computed from figures of this run. n/a: a figure it needs was not measured.")

  table("Issue 10: receiver-paced publishing")
  for (const s of ["ours", "ours65k"] as const) {
    for (const c of r.cases.filter((x) => x.scenario === "throughput" && x.system === s && x.ok)) {
      const all = allRoundsOf(c)
      const n = all?.rates.length ?? 1
      const delivered = all?.deliveredPct ?? c.deliveredPct!
      const notices = all?.lossNotices ?? lossNotices(c)
      const failed = all?.failed ?? 0
      t(
        `${NAMES[s]}, throughput ${sizeLabel(c.size)}: 100 % delivered, 0 loss notices`,
        `${delivered.toFixed(2)} %, ${notices} loss notices${n > 1 ? ` (every one of ${n} rounds${failed > 0 ? `, ${failed} failed` : ""})` : ""}`,
        delivered >= 100 && notices === 0 && failed === 0
      )
    }
  }
  const big = find(r, "large", "ours", () => true)
  t(
    `${NAMES.ours}, one ${big ? sizeLabel(big.size) : "large"} update: delivered intact to every subscriber, 0 loss notices`,
    big
      ? `${big.perSubscriber!.filter((x) => x.intact === 1).length}/${big.subscribers} intact, ${lossNotices(big)} loss notices`
      : "—",
    big ? big.perSubscriber!.every((x) => x.intact === 1) && lossNotices(big) === 0 : undefined
  )
  const o64 = throughputOf(r, "ours", 64)
  t("64 B ≥ 1 000 000 updates/s per subscriber", fmtRate(o64), has(o64) ? o64 >= 1e6 : undefined)
  ratio("64 B ≥ 4× NATS", o64, throughputOf(r, "nats", 64), 4)
  ratio(
    "1 KiB ≥ 0.8× raw dgram's datagram rate (default segment size)",
    throughputOf(r, "ours", 1024),
    datagramRateOf(r, 1024),
    0.8
  )
  ratio(
    "1 KiB with segmentSize 65000 ≥ 1.5× NATS",
    throughputOf(r, "ours65k", 1024),
    throughputOf(r, "nats", 1024),
    1.5
  )
  ratio("64 KiB ≥ 1.0× ZeroMQ", throughputOf(r, "ours", 65536), throughputOf(r, "zeromq", 65536), 1)
  const ol = latencyOf(r, "ours", 1000)
  const dl = latencyOf(r, "dgram", 1000)
  t(
    "latency at 1 000/s: p50 ≤ 1.2× raw dgram",
    `${fmtUs(ol?.p50)} / ${fmtUs(dl?.p50)} = ${fmtRatio(ol?.p50, dl?.p50)}`,
    ol && dl ? ol.p50 / dl.p50 <= 1.2 : undefined
  )
  const fanN = [...new Set(fan.map((c) => c.subscribers))].sort((a, b) => a - b)
  const fanCpu = fanN.map((n) => {
    const cpuOf = (s: System) => find(r, "fanout", s, (c) => c.subscribers === n)?.publisher?.cpuUsPerUpdate
    return { n, ours: cpuOf("ours"), dgram: cpuOf("dgram") }
  })
  t(
    `fan-out: publisher CPU per update ≤ raw dgram's at N = ${fanN.join(", ") || "1..8"}`,
    fanCpu.map((x) => `N=${x.n} ${fmtCpu(x.ours)} / ${fmtCpu(x.dgram)} = ${fmtRatio(x.ours, x.dgram)}`).join("; ") ||
      "—",
    fanCpu.length > 0 && fanCpu.every((x) => has(x.ours) && has(x.dgram))
      ? fanCpu.every((x) => x.ours! <= x.dgram!)
      : undefined
  )

  table("Issues 4 and 6 (the ones issue 10 does not restate)")
  ratio("1 KiB ≥ 1.0× NATS (default segment size)", throughputOf(r, "ours", 1024), throughputOf(r, "nats", 1024), 1)
  t(
    "latency at 1 000/s: p99 ≤ 1.5× raw dgram",
    `${fmtUs(ol?.p99)} / ${fmtUs(dl?.p99)} = ${fmtRatio(ol?.p99, dl?.p99)}`,
    ol && dl ? ol.p99 / dl.p99 <= 1.5 : undefined
  )
  const r20 = rec.find((c) => c.ok && c.sendLoss === 0.2 && c.subscribers === 8)
  const r20p = r20?.publisher
  t(
    "20 % loss, N = 8: 100 % delivered",
    r20 ? `${r20.deliveredPct!.toFixed(3)} %` : "—",
    r20 ? r20.deliveredPct! >= 100 : undefined
  )
  t(
    "20 % loss, N = 8: ≤ 1.2 retransmissions per lost datagram",
    r20p ? fmtRatio(r20p.retransmissionsSent, r20p.simulatedSendDrops) : "—",
    r20p ? (r20p.retransmissionsSent ?? 0) / (r20p.simulatedSendDrops ?? 1) <= 1.2 : undefined
  )
  const cpus = fanCpu.map((x) => x.ours).filter(has)
  const spread = cpus.length > 1 ? Math.max(...cpus) / Math.min(...cpus) : undefined
  t(
    "publisher CPU per update flat (±20 %) from N = 1 to N = 8",
    cpus.length > 1 ? `${cpus.map((x) => x.toFixed(2)).join(" / ")} µs (max/min ${spread!.toFixed(2)}×)` : "—",
    spread !== undefined ? cpus.every((x) => Math.abs(x / cpus[0] - 1) <= 0.2) : undefined
  )
  table("Issue 11: security")
  for (const s of ["oursSec", "oursAuth"] as const) {
    for (const size of [64, 1024]) {
      ratio(
        `${NAMES[s]}, ${sizeLabel(size)} ≥ 0.7× plaintext`,
        throughputOf(r, s, size),
        throughputOf(r, "ours", size),
        0.7
      )
    }
  }
  L.push("")
  L.push("Charts: [throughput](throughput.svg), [latency](latency.svg). Raw figures: [results.json](results.json).")
  L.push("")
  return L.join("\n")
}

// ---- SVG ----------------------------------------------------------------------------------

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

interface Group {
  readonly label: string
  readonly bars: ReadonlyArray<{ readonly system: System; readonly value: number | undefined; readonly text: string }>
}

/** A grouped bar chart on a log scale (the systems differ by orders of magnitude). */
const barChart = (
  title: string,
  unit: string,
  groups: ReadonlyArray<Group>,
  systems: ReadonlyArray<System>,
  tick: (v: number) => string
) => {
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v): v is number => v !== undefined && v > 0)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values, 1e9)))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 1)))
  const W = 940
  const H = 420
  const left = 70
  const right = 270
  const top = 40
  const bottom = 50
  const plotW = W - left - right
  const plotH = H - top - bottom
  const y = (v: number) => top + plotH - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH
  const s: Array<string> = []
  s.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`
  )
  s.push(`<rect width="${W}" height="${H}" fill="white"/>`)
  s.push(
    `<text x="${W / 2 - right / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`
  )
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    s.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#e2e8f0"/>`)
    s.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${esc(tick(v))}</text>`)
  }
  s.push(
    `<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">${esc(unit)} (log scale)</text>`
  )
  const gw = plotW / Math.max(groups.length, 1)
  groups.forEach((g, gi) => {
    const bw = (gw * 0.8) / Math.max(g.bars.length, 1)
    g.bars.forEach((b, bi) => {
      const x = left + gi * gw + gw * 0.1 + bi * bw
      if (b.value === undefined || !(b.value > 0)) {
        s.push(`<text x="${x + bw / 2}" y="${top + plotH - 4}" text-anchor="middle" font-size="10">n/a</text>`)
        return
      }
      s.push(
        `<rect x="${x.toFixed(1)}" y="${y(b.value).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(top + plotH - y(b.value)).toFixed(1)}" fill="${COLORS[b.system]}"><title>${esc(`${NAMES[b.system]}: ${b.text}`)}</title></rect>`
      )
      if (bw >= 26)
        s.push(
          `<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${(y(b.value) - 3).toFixed(1)}" text-anchor="middle" font-size="9">${esc(b.text)}</text>`
        )
    })
    s.push(`<text x="${left + gi * gw + gw / 2}" y="${top + plotH + 18}" text-anchor="middle">${esc(g.label)}</text>`)
  })
  s.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="black"/>`)
  systems.forEach((sys, i) => {
    s.push(`<rect x="${W - right + 15}" y="${top + i * 20}" width="12" height="12" fill="${COLORS[sys]}"/>`)
    s.push(`<text x="${W - right + 32}" y="${top + i * 20 + 10}">${esc(NAMES[sys])}</text>`)
  })
  s.push("</svg>")
  return s.join("\n") + "\n"
}

export const renderThroughputSvg = (r: Results): string =>
  barChart(
    "Throughput by message size (N = 2)",
    "updates/s per subscriber",
    [64, 1024, 65536].map((size) => ({
      label: sizeLabel(size),
      bars: systemsOf(r, "throughput").map((s) => {
        const v = throughputOf(r, s, size)
        return { system: s, value: v, text: fmtRate(v).replace(" ", "") }
      })
    })),
    systemsOf(r, "throughput"),
    (v) => fmtRate(v).replace(" ", "")
  )

export const renderLatencySvg = (r: Results): string =>
  barChart(
    "One-way latency, 64 B (N = 2): p50 / p99 / p99.9",
    "one-way latency",
    [1000, 10_000].flatMap((rate) =>
      (["p50", "p99", "p999"] as const).map((p) => ({
        label: `${rate / 1000}k/s ${p === "p999" ? "p99.9" : p}`,
        bars: systemsOf(r, "latency").map((s) => {
          const v = latencyOf(r, s, rate)?.[p]
          return { system: s, value: v, text: fmtUs(v).replace(" ", "") }
        })
      }))
    ),
    systemsOf(r, "latency"),
    (v) => (v >= 1e6 ? `${v / 1e6} s` : v >= 1000 ? `${v / 1000} ms` : `${v} µs`)
  )
