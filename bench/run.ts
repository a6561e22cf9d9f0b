/**
 * The benchmark suite: this library next to raw `node:dgram` multicast and next to the peers a Node
 * user would pick instead (ZeroMQ PUB/SUB over TCP, NATS, Redis pub/sub), in one run on this
 * machine, loopback only, 1 publisher and N subscriber processes.
 *
 *   npm run bench                        full suite (~30 min on a 2-core guest)
 *   npm run bench -- --quick             smoke run (≤ 2 min)
 *   npm run bench -- --only ours,dgram   a subset of systems (ours, dgram, zeromq, nats, redis)
 *   npm run bench -- --scenario throughput,latency   a subset of scenarios (throughput, large, latency, recovery, fanout, gateway)
 *   npm run bench -- --out DIR           where to write results (default bench/results)
 *   npm run bench -- --rounds N          throughput, latency and fan-out rounds (default 3, --quick 1): each
 *                                        round measures every system once, the median round is reported
 *   npm run bench -- --latency-rounds N  rounds of the latency scenario at 1 000/s (default max(7, --rounds))
 *   npm run bench -- --rates 1000        the latency scenario's rates (default 1000,10000)
 *
 * Peers are installed by `npm run bench:setup`; a missing peer is skipped with a note. Writes
 * results.md, results.json, throughput.svg and latency.svg; see bench/README.md.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { connect } from "node:net"
import * as os from "node:os"
import { dirname, join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { gcmBackends } from "../src/internal/security/gcm.js"
import {
  type CaseResult,
  medianOfRounds,
  type Results,
  renderLatencySvg,
  renderMarkdown,
  renderThroughputSvg
} from "./report.js"
import type { System, WorkerArgs } from "./worker.js"

const here = dirname(fileURLToPath(import.meta.url))
const ALL: ReadonlyArray<System> = [
  "ours",
  "ours0",
  "ours65k",
  "oursSec",
  "oursAuth",
  "oursNode",
  "dgram",
  "zeromq",
  "nats",
  "redis"
]
/** effect-distributor with another configuration (bench/worker.ts), run next to the default one. */
const isOurs = (s: System) => s.startsWith("ours")

/** Every worker and server started by this run: killed by pid if the run ends early. */
const live = new Set<ChildProcess>()
process.on("exit", () => {
  for (const child of live) if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL")
})
process.on("SIGINT", () => process.exit(130))
process.on("SIGTERM", () => process.exit(143))

// ---- options ------------------------------------------------------------------------------

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(name)
const option = (name: string) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const quick = flag("--quick")
const only = (option("--only") ?? "ours,dgram,zeromq,nats,redis").split(",").map((s) => s.trim()) as Array<System>
// Variants of ours run when named (oursSec, oursAuth: security on) or with `ours` where a scenario adds them.
for (const s of only) if (!ALL.includes(s)) throw new Error(`--only: unknown system ${s} (one of ${ALL.join(", ")})`)
// The large update runs in the quick run only when asked for (and smaller there).
// The gateway fan-out (100 WebSocket clients) runs in the full suite only: too slow for --quick.
const scenarios = (
  option("--scenario") ?? `throughput,${quick ? "" : "large,"}latency,recovery,fanout${quick ? "" : ",gateway"}`
).split(",")
/** Every scenario, in the order a round runs those it has. */
const SCENARIOS = ["throughput", "large", "latency", "recovery", "fanout", "gateway"] as const
for (const s of scenarios)
  if (!(SCENARIOS as ReadonlyArray<string>).includes(s)) throw new Error(`--scenario: unknown ${s}`)
const LARGE = quick ? 4 * 2 ** 20 : 64 * 2 ** 20
/**
 * Rounds of the throughput, latency and fan-out scenarios. On a shared machine the speed drifts by tens of
 * percent within minutes. Each round measures every system once, the systems of one case back to
 * back; per case the round with the median rate (throughput), p50 (latency) or publisher CPU per
 * update (fan-out) is the one reported (every round's figures stay in results.json and in a table).
 */
const rounds = Number(option("--rounds") ?? (quick ? "1" : "3"))
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 9)) throw new Error("--rounds must be 1..9")
/**
 * Rounds of the latency scenario at 1 000/s (default 7, at least `--rounds`; `--quick`: as
 * `--rounds`). A round's p50 there is mostly how soon three processes on two vCPUs are woken, and
 * moves up to 2× from round to round for every system (issue 10: 1.07× to 1.55× against raw dgram
 * in runs of 3 rounds on one day); the extra rounds cost ~1 min each and follow the others.
 */
const latencyRounds = Number(option("--latency-rounds") ?? (quick ? String(rounds) : String(Math.max(rounds, 7))))
if (!(Number.isInteger(latencyRounds) && latencyRounds >= rounds && latencyRounds <= 15))
  throw new Error("--latency-rounds must be --rounds..15")
/** How many rounds a case of `scenario` at `rate` runs (when it runs in rounds at all). */
const roundsOf = (scenario: string, rate: number) => (scenario === "latency" && rate === 1000 ? latencyRounds : rounds)
const outDir = resolve(option("--out") ?? join(here, "results"))
/** Ports: `base` .. `base + 19` for multicast (rotating per case), `base + 20..22` for the servers. */
const base = Number(option("--port-base") ?? "7600")
if (!(base >= 7600 && base <= 7699 - 22)) throw new Error("--port-base must keep ports within 7600–7699")
const groupOf = (i: number) => `239.255.60.${1 + ((base - 7600 + i) % 100)}`

// ---- peers --------------------------------------------------------------------------------

const peersRequire = createRequire(join(here, "peers", "package.json"))
const hasModule = (name: string) => {
  try {
    peersRequire.resolve(name)
    return true
  } catch {
    return false
  }
}
const which = (bin: string) => {
  const r = spawnSync("sh", ["-c", `command -v ${bin} || ls /usr/sbin/${bin} /usr/bin/${bin} 2>/dev/null`], {
    encoding: "utf8"
  })
  return r.stdout.trim().split("\n")[0] || undefined
}

const notes: Array<string> = []
const available = new Map<System, true>()
const servers: Partial<Record<System, string>> = {}
for (const s of only) {
  if (isOurs(s) || s === "dgram") available.set(s, true)
  if (s === "zeromq") {
    if (hasModule("zeromq")) available.set(s, true)
    else notes.push("ZeroMQ skipped: npm `zeromq` not installed in bench/peers (run `npm run bench:setup`).")
  }
  if (s === "nats") {
    const bin = which("nats-server")
    if (!hasModule("nats")) notes.push("NATS skipped: npm `nats` not installed in bench/peers (`npm run bench:setup`).")
    else if (!bin) notes.push("NATS skipped: `nats-server` not found (`npm run bench:setup` installs Debian's).")
    else {
      available.set(s, true)
      servers.nats = bin
    }
  }
  if (s === "redis") {
    const bin = which("redis-server")
    if (!hasModule("ioredis"))
      notes.push("Redis skipped: npm `ioredis` not installed in bench/peers (`npm run bench:setup`).")
    else if (!bin) notes.push("Redis skipped: `redis-server` not found (`npm run bench:setup` installs Debian's).")
    else {
      available.set(s, true)
      servers.redis = bin
    }
  }
}
const systems = ALL.filter((s) => available.has(s))

const serverPort: Partial<Record<System, number>> = { nats: base + 20, redis: base + 21, zeromq: base + 22 }

const waitForPort = async (port: number, ms: number) => {
  const end = Date.now() + ms
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const c = connect({ host: "127.0.0.1", port }, () => {
        c.end()
        res(true)
      })
      c.on("error", () => res(false))
    })
    if (ok) return
    if (Date.now() > end) throw new Error(`nothing listening on 127.0.0.1:${port} after ${ms} ms`)
    await sleep(100)
  }
}

/** Starts a server on loopback; it is stopped by its process id. */
const startServer = async (system: System): Promise<ChildProcess | undefined> => {
  const port = serverPort[system]!
  let child: ChildProcess
  if (system === "nats") {
    child = spawn(servers.nats!, ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" })
  } else if (system === "redis") {
    const args = ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"]
    // No disconnect of a subscriber that falls behind during a burst: we measure, not police.
    args.push("--client-output-buffer-limit", "pubsub 0 0 0", "--daemonize", "no", "--logfile", "")
    child = spawn(servers.redis!, args, { stdio: "ignore" })
  } else return undefined
  live.add(child)
  child.on("exit", () => live.delete(child))
  await waitForPort(port, 10_000)
  return child
}

const stopServer = async (child: ChildProcess | undefined) => {
  if (child?.pid === undefined || child.exitCode !== null) return
  const exited = new Promise<void>((res) => child.once("exit", () => res()))
  process.kill(child.pid, "SIGTERM")
  await Promise.race([exited, sleep(5000)])
  if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, "SIGKILL")
}

/** utime + stime of a process in µs (Linux), for the servers' CPU per update. */
const procCpuUs = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  const r = spawnSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8" })
  if (r.status !== 0) return undefined
  const fields = r.stdout.slice(r.stdout.lastIndexOf(")") + 2).split(" ")
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks / 100) * 1e6
}

// ---- workers ------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms))

interface Worker {
  readonly child: ChildProcess
  readonly next: (timeoutMs: number) => Promise<any>
  readonly send: (line: string) => void
  readonly exit: Promise<void>
}

/**
 * The worker, bundled once per run with esbuild (which tsx brings along): a bundle starts in a
 * fraction of the time `--import tsx` takes, and a run spawns hundreds of workers. Falls back to tsx.
 */
let workerEntry: Array<string> = ["--import", "tsx", join(here, "worker.ts")]
const bundleWorker = async () => {
  try {
    const esbuild = await import("esbuild")
    const outfile = join(os.tmpdir(), `effect-distributor-bench-worker-${process.pid}.mjs`)
    await esbuild.build({
      entryPoints: [join(here, "worker.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile,
      logLevel: "silent",
      // CommonJS dependencies bundled into ESM need a `require`.
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
    })
    process.on("exit", () => rmSync(outfile, { force: true }))
    workerEntry = [outfile]
  } catch (err) {
    notes.push(`workers run through tsx (bundling failed: ${err instanceof Error ? err.message : String(err)})`)
  }
}

// The bundled workers run in this checkout (cwd), where they find its native addons (addon.ts).
if (systems.some((s) => s === "oursSec" || s === "oursAuth")) {
  const { native, reason } = gcmBackends()
  notes.push(
    `security rows: AES-GCM by ${native === undefined ? `node:crypto (${reason})` : `the native addon (${reason})`}`
  )
}

const startWorker = (args: WorkerArgs): Worker => {
  // --expose-gc: a warm-up ends with a full collection (worker.ts `publish`).
  const flags = ["--expose-gc"]
  if (process.env.BENCH_CPU_PROF) flags.push("--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`)
  if (process.env.BENCH_NODE_FLAGS) flags.push(...process.env.BENCH_NODE_FLAGS.split(" "))
  const child = spawn(process.execPath, [...flags, ...workerEntry, JSON.stringify(args)], {
    stdio: ["pipe", "pipe", "pipe"],
    cwd: resolve(here, ".."),
    env: { ...process.env, BENCH_PEERS_DIR: join(here, "peers") }
  })
  const queued: Array<any> = []
  const waiting: Array<(v: any) => void> = []
  let stderr = ""
  child.stderr!.on("data", (d) => {
    stderr += String(d)
    if (process.env.BENCH_TRACE) process.stderr.write(String(d))
  })
  createInterface({ input: child.stdout! }).on("line", (l) => {
    if (!l.startsWith("{")) return
    const v = JSON.parse(l)
    const w = waiting.shift()
    if (w) w(v)
    else queued.push(v)
  })
  live.add(child)
  const exit = new Promise<void>((res) =>
    child.on("exit", () => {
      live.delete(child)
      res()
    })
  )
  const next = (timeoutMs: number) =>
    new Promise<any>((res, rej) => {
      if (queued.length > 0) return res(queued.shift())
      const timer = setTimeout(
        () => rej(new Error(`${args.role}/${args.system}: no answer in ${timeoutMs} ms`)),
        timeoutMs
      )
      waiting.push((v) => {
        clearTimeout(timer)
        res(v)
      })
      void exit.then(() => {
        clearTimeout(timer)
        rej(new Error(`${args.role}/${args.system} exited: ${stderr.trim().split("\n").slice(-3).join(" | ")}`))
      })
    })
  return { child, next, send: (line) => child.stdin!.write(line + "\n"), exit }
}

const kill = async (w: Worker) => {
  const running = () => w.child.exitCode === null && w.child.signalCode === null && w.child.pid !== undefined
  if (!running()) return
  // Its figures are in: no need to wait for a publisher's linger (ours answers late NAKs ~1 s).
  w.child.stdin!.end()
  await Promise.race([w.exit, sleep(process.env.BENCH_CPU_PROF ? 3000 : 200)])
  if (running()) process.kill(w.child.pid!, "SIGTERM")
  await Promise.race([w.exit, sleep(2000)])
  if (running()) process.kill(w.child.pid!, "SIGKILL")
}

interface Case {
  readonly scenario: CaseResult["scenario"]
  /** Subscribers per worker process (the gateway scenario: 100 clients in a few processes). */
  readonly clientsPerWorker?: number
  readonly system: System
  readonly subscribers: number
  readonly size: number
  readonly mode: WorkerArgs["mode"]
  readonly rate: number
  readonly batch: number
  readonly durationMs: number
  readonly latency: boolean
  readonly sendLoss: number
  /** Longest a subscriber waits for the tail once the publisher is done. */
  readonly waitMs: number
  /** Throughput, latency or fan-out round (0-based); every other case runs once, after the rounds. */
  readonly round?: number
  /** Fan-out, throughput and latency: the same load first, for this long, outside the measurement (WorkerArgs.warmupMs). */
  readonly warmupMs?: number
}

let caseIndex = 0
let serverPid: number | undefined

const percentile = (sorted: ArrayLike<number>, p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]

/** The figures of a case from its publisher's and subscribers' reports. */
const caseResult = (
  c: Case,
  pubResult: any,
  final: any,
  subResults: ReadonlyArray<any>,
  serverCpuUsPerUpdate: number | undefined
): CaseResult => {
  const latencies = Float64Array.from(subResults.flatMap((r) => r.latencyUs as Array<number>)).sort()
  const perSub = subResults.map((r) => ({
    received: r.received,
    distinct: r.distinct,
    duplicates: r.duplicates,
    rate: r.distinct > 1 ? ((r.distinct - 1) / (r.lastUs - r.firstUs)) * 1e6 : 0,
    cpuUs: r.cpuUs,
    cpuUsPerUpdate: r.distinct > 0 ? r.cpuUs / r.distinct : Number.NaN,
    naksSent: r.naksSent,
    retransmissionsReceived: r.retransmissionsReceived,
    lossNotices: r.lossNotices,
    lostSegments: r.lostSegments,
    queueDrops: r.queueDrops,
    datagramsIn: r.datagramsIn,
    ...(c.mode === "once" ? { intact: r.intact, transferUs: r.latencyUs[0] } : {}),
    ...(r.updatesIn !== undefined ? { updatesIn: r.updatesIn, remoteSessions: r.remoteSessions } : {})
  }))
  return {
    ...c,
    ok: true,
    sent: pubResult.sent,
    publisher: {
      elapsedUs: pubResult.elapsedUs,
      cpuUs: pubResult.cpuUs,
      // CPU and rate are over the measured updates: those after the warm-up, when the case has one.
      measuredUpdates: pubResult.measured ?? pubResult.sent,
      warmupUpdates: pubResult.warmupUpdates ?? 0,
      cpuUsPerUpdate: pubResult.cpuUs / (pubResult.measured ?? pubResult.sent),
      offeredRate: ((pubResult.measured ?? pubResult.sent) / pubResult.elapsedUs) * 1e6,
      serverCpuUsPerUpdate,
      ...final
    },
    perSubscriber: perSub,
    ratePerSubscriber: perSub.reduce((a, s) => a + s.rate, 0) / perSub.length,
    minRatePerSubscriber: Math.min(...perSub.map((s) => s.rate)),
    deliveredPct: (100 * perSub.reduce((a, s) => a + s.distinct, 0)) / (perSub.length * pubResult.sent),
    latencyUs: c.latency
      ? {
          count: latencies.length,
          p50: percentile(latencies, 0.5),
          p99: percentile(latencies, 0.99),
          p999: percentile(latencies, 0.999),
          max: latencies.length > 0 ? latencies[latencies.length - 1] : Number.NaN
        }
      : undefined
  }
}

/**
 * The gateway fan-out: one multicast publisher → one gateway worker → `c.subscribers` WebSocket
 * clients in `c.subscribers / clientsPerWorker` processes; for NATS the same numbers of
 * subscriptions on its server. The gateway's (or server's) CPU per update is the fan-out's cost.
 */
const runGatewayCase = async (c: Case, common: Omit<WorkerArgs, "role">): Promise<CaseResult> => {
  const perWorker = c.clientsPerWorker ?? 1
  const workers: Array<Worker> = []
  try {
    const gw = isOurs(c.system) ? startWorker({ ...common, role: "gateway", subscribers: 1 }) : undefined
    if (gw) workers.push(gw)
    const url = gw ? String((await gw.next(60_000)).url) : undefined
    // The gateway is the publisher's only multicast receiver.
    const pub = startWorker({ ...common, role: "pub", subscribers: 1 })
    const subs = Array.from({ length: Math.ceil(c.subscribers / perWorker) }, () =>
      startWorker({ ...common, role: "sub", clients: perWorker, ...(url === undefined ? {} : { gateway: url }) })
    )
    workers.push(pub, ...subs)
    await Promise.all([pub, ...subs].map((w) => w.next(120_000)))
    await sleep(500)
    const serverCpu0 = procCpuUs(serverPid)
    gw?.send("go")
    pub.send("go")
    const { result: pubResult } = await pub.next(c.durationMs + 60_000)
    for (const s of subs) s.send(`stop ${pubResult.sent}`)
    const subResults = (
      await Promise.all(
        subs.map(async (s) => {
          const results: Array<any> = []
          for (let k = 0; k < perWorker; k++) results.push((await s.next(c.waitMs + 40_000)).result)
          return results
        })
      )
    ).flat()
    // The server's or gateway's CPU until every client had its tail.
    const serverCpu1 = procCpuUs(serverPid)
    gw?.send("exit")
    const gateway = gw ? (await gw.next(10_000)).final : undefined
    pub.send("exit")
    const { final } = await pub.next(10_000)
    const serverCpuUs =
      gateway !== undefined
        ? gateway.cpuUs
        : serverCpu0 !== undefined && serverCpu1 !== undefined
          ? serverCpu1 - serverCpu0
          : undefined
    const result = caseResult(
      c,
      pubResult,
      final,
      subResults,
      serverCpuUs === undefined ? undefined : serverCpuUs / pubResult.sent
    )
    return gateway === undefined ? result : { ...result, gateway }
  } catch (err) {
    return { ...c, ok: false, error: err instanceof Error ? err.message : String(err) }
  } finally {
    await Promise.all(workers.map(kill))
  }
}

const runCase = async (c: Case): Promise<CaseResult> => {
  const i = caseIndex++
  const multicast = isOurs(c.system) || c.system === "dgram"
  const common = {
    system: c.system,
    size: c.size,
    group: groupOf(i % 20),
    port: multicast ? base + (i % 20) : serverPort[c.system]!,
    mode: c.mode,
    rate: c.rate,
    durationMs: c.durationMs,
    warmupMs: c.warmupMs ?? 0,
    batch: c.batch,
    latency: c.latency,
    // ours: a lost tail is only noticed at the next heartbeat (1 s)
    idleMs: isOurs(c.system) ? 1500 : 500,
    waitMs: c.waitMs,
    sendLoss: c.sendLoss,
    subscribers: c.subscribers
  }
  if (c.scenario === "gateway") return runGatewayCase(c, common)
  const workers: Array<Worker> = []
  try {
    // Started together (a ZeroMQ subscriber reconnects until the publisher has bound).
    const pub = startWorker({ ...common, role: "pub" })
    const subs = Array.from({ length: c.subscribers }, () => startWorker({ ...common, role: "sub" }))
    workers.push(pub, ...subs)
    const [ready] = await Promise.all([pub, ...subs].map((w) => w.next(60_000)))
    // A message bigger than the system can carry as configured: said so, not measured.
    if (ready.unsupported) return { ...c, ok: false, na: ready.unsupported }
    // Subscriptions propagate (ZeroMQ, brokers) and the machine settles after the spawns.
    await sleep(c.system === "zeromq" ? 500 : 300)
    const serverCpu0 = procCpuUs(serverPid)
    pub.send("go")
    const { result: pubResult } = await pub.next(c.durationMs + 60_000)
    const serverCpu1 = procCpuUs(serverPid)
    for (const s of subs) s.send(`stop ${pubResult.sent}`)
    const subResults = (await Promise.all(subs.map((s) => s.next(c.waitMs + 40_000)))).map((r) => r.result)
    pub.send("exit")
    const { final } = await pub.next(10_000)
    return caseResult(
      c,
      pubResult,
      final,
      subResults,
      serverCpu0 !== undefined && serverCpu1 !== undefined ? (serverCpu1 - serverCpu0) / pubResult.sent : undefined
    )
  } catch (err) {
    return { ...c, ok: false, error: err instanceof Error ? err.message : String(err) }
  } finally {
    // Workers exit by themselves once done; stragglers are killed by pid.
    await Promise.all(workers.map(kill))
  }
}

// ---- the plan -----------------------------------------------------------------------------

const plan: Array<Case> = []
const add = (c: Omit<Case, "latency" | "sendLoss" | "waitMs"> & Partial<Case>) => {
  if (scenarios.includes(c.scenario)) plan.push({ latency: false, sendLoss: 0, waitMs: 20_000, ...c })
}
/** The systems, with effect-distributor also in the given variants. */
const withVariants = (...variants: Array<System>) => [
  ...new Set(systems.flatMap((s): Array<System> => (s === "ours" ? ["ours", ...variants] : [s])))
]

const tDur = quick ? 800 : 4000
// The throughput scenario also runs effect-distributor with 65 000-byte segments (loopback, jumbo frames).
for (const system of withVariants("ours65k")) {
  for (const size of (option("--sizes") ?? "64,1024,65536").split(",").map(Number)) {
    // Bursts of about 16 KiB (ours: publishAll, natural batching); the raw dgram baseline still
    // sends one datagram per message.
    const batch = size <= 64 ? 256 : size <= 1024 ? 16 : 1
    // The quick run keeps the variant's 1 KiB case only (the one the targets use).
    if (quick && system === "ours65k" && size !== 1024) continue
    for (let round = 0; round < rounds; round++) {
      add({
        scenario: "throughput",
        system,
        subscribers: 2,
        size,
        mode: "burst",
        rate: 0,
        batch,
        durationMs: tDur,
        warmupMs: quick ? 300 : 2000,
        round
      })
    }
  }
}
// One large update at default settings; a subscriber reports once it has it, once it went quiet
// after a loss notice or its last datagram, or after 60 s.
for (const system of systems) {
  add({
    scenario: "large",
    system,
    subscribers: 2,
    size: LARGE,
    mode: "once",
    rate: 0,
    batch: 1,
    durationMs: 0,
    latency: true,
    waitMs: 60_000
  })
}
// The latency scenario also runs effect-distributor with holdback off, to show what it costs.
const latencyRates = (option("--rates") ?? "1000,10000").split(",").map(Number)
if (!latencyRates.every((r) => Number.isInteger(r) && r >= 1 && r <= 1_000_000))
  throw new Error("--rates: updates/s, integers 1..1000000, comma-separated")
for (const system of withVariants("ours0")) {
  for (const rate of latencyRates) {
    const latencyCase = {
      scenario: "latency" as const,
      system,
      subscribers: 2,
      size: 64,
      mode: "paced" as const,
      rate,
      batch: 1,
      durationMs: quick ? 800 : 6000,
      latency: true,
      // The same load first, left out of the samples: a path called 1 000 times a second is still
      // interpreted or baseline code for seconds, and a subscriber of ours spent ~60 µs of CPU per
      // update at 1 000/s over the first 6 s (TurboFan compiling on its helper threads all along).
      warmupMs: quick ? 300 : 3000
    }
    for (let round = 0; round < roundsOf("latency", rate); round++) add({ ...latencyCase, round })
  }
}
if (systems.includes("ours")) {
  for (const subscribers of quick ? [2] : [2, 8]) {
    for (const loss of quick ? [0.2] : [0.01, 0.05, 0.2]) {
      add({
        scenario: "recovery",
        system: "ours",
        subscribers,
        size: 64,
        mode: "paced",
        rate: 1000,
        batch: 1,
        durationMs: quick ? 1000 : 5000,
        latency: true,
        sendLoss: loss
      })
    }
  }
}
// In rounds too: publisher CPU per update at 200 bursts/s moves by ±15 % from run to run.
for (const system of systems) {
  for (const subscribers of quick ? [1, 2] : [1, 2, 4, 8]) {
    for (let round = 0; round < rounds; round++) {
      add({
        scenario: "fanout",
        system,
        subscribers,
        size: 64,
        mode: "paced",
        rate: 20_000,
        batch: 100,
        durationMs: quick ? 800 : 4000,
        warmupMs: quick ? 500 : 3000,
        round
      })
    }
  }
}

// One multicast publisher → one gateway → 100 WebSocket clients (4 processes of 25), next to NATS
// with 100 subscriptions (the same 4 processes of 25 connections).
for (const system of systems.filter((s) => s === "ours" || s === "nats")) {
  add({
    scenario: "gateway",
    system,
    subscribers: 100,
    clientsPerWorker: 25,
    size: 64,
    mode: "paced",
    rate: 1000,
    batch: 10,
    durationMs: quick ? 1500 : 4000,
    latency: true
  })
}

// ---- run ----------------------------------------------------------------------------------

const machine = () => ({
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  platform: `${os.type()} ${os.release()} ${os.arch()}`,
  loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100)
})

const progress = (text: string) => {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`)
  else process.stderr.write(`${text}\n`)
}

const main = async () => {
  const startedAt = new Date()
  const before = machine()
  await bundleWorker()
  progress(`bench: ${plan.length} cases, systems: ${systems.join(", ")}${quick ? " (quick)" : ""}`)
  for (const n of notes) process.stderr.write(`${process.stderr.isTTY ? "\n" : ""}note: ${n}\n`)
  const results: Array<CaseResult> = []
  // The rounds (throughput, latency, fan-out) come first, one after the other. Within a round the
  // systems of one case (scenario and size, rate or N) run back to back, so that the figures a ratio
  // compares are measured seconds apart rather than minutes (a server is started for each case it is
  // in). The cases outside the rounds follow, grouped by system so that each server starts once.
  const order = [...plan].sort(
    (a, b) =>
      (a.round ?? rounds) - (b.round ?? rounds) ||
      (a.round === undefined
        ? 0
        : SCENARIOS.indexOf(a.scenario) - SCENARIOS.indexOf(b.scenario) ||
          a.size - b.size ||
          a.rate - b.rate ||
          a.subscribers - b.subscribers) ||
      ALL.indexOf(a.system) - ALL.indexOf(b.system)
  )
  let server: ChildProcess | undefined
  let serverFor: System | undefined
  const t0 = Date.now()
  try {
    for (let k = 0; k < order.length; k++) {
      const c = order[k]
      if (serverFor !== c.system) {
        await stopServer(server)
        serverPid = undefined
        server = undefined
        serverFor = c.system
        try {
          server = await startServer(c.system)
          serverPid = server?.pid
        } catch (err) {
          notes.push(`${c.system}: server did not start (${err instanceof Error ? err.message : String(err)})`)
        }
      }
      const label =
        c.scenario === "throughput" || c.scenario === "large"
          ? `${c.size} B`
          : c.scenario === "latency"
            ? `${c.rate}/s`
            : c.scenario === "recovery"
              ? `${c.sendLoss * 100}% loss N=${c.subscribers}`
              : c.scenario === "gateway"
                ? `${c.subscribers} clients`
                : `N=${c.subscribers}`
      const elapsed = Math.round((Date.now() - t0) / 1000)
      const of = roundsOf(c.scenario, c.rate)
      const round = c.round !== undefined && of > 1 ? ` (round ${c.round + 1}/${of})` : ""
      progress(`bench [${k + 1}/${order.length}] ${elapsed}s  ${c.scenario}${round} ${label}  ${c.system}`)
      const r = await runCase(c)
      if (!r.ok && !r.na) process.stderr.write(`${process.stderr.isTTY ? "\n" : ""}  failed: ${r.error}\n`)
      results.push(r)
    }
  } finally {
    await stopServer(server)
  }
  progress(`bench: done in ${Math.round((Date.now() - t0) / 1000)} s\n`)
  const out: Results = {
    startedAt: startedAt.toISOString(),
    durationS: Math.round((Date.now() - t0) / 1000),
    command: `npm run bench --${argv.length > 0 ? ` ${argv.join(" ")}` : ""}`,
    quick,
    machine: { ...before, loadAverageAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    systems,
    notes,
    cases: medianOfRounds(results)
  }
  if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true })
  const md = renderMarkdown(out)
  writeFileSync(join(outDir, "results.json"), JSON.stringify(out, null, 2) + "\n")
  writeFileSync(join(outDir, "results.md"), md)
  writeFileSync(join(outDir, "throughput.svg"), renderThroughputSvg(out))
  writeFileSync(join(outDir, "latency.svg"), renderLatencySvg(out))
  process.stdout.write(md)
  process.stdout.write(`\nwritten to ${outDir}: results.md, results.json, throughput.svg, latency.svg\n`)
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exit(1)
  }
)
