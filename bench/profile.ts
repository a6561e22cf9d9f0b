/**
 * CPU time per datagram and per update, publisher and subscriber, effect-distributor against raw
 * `node:dgram`, A/B across source trees in one run (see "Profiles" in bench/README.md).
 *
 *   npx tsx bench/profile.ts [--tree label=DIR]... [--sizes 64,1024] [--reps 3] [--duration 3000]
 *                            [--systems ours,dgram] [--subs 1] [--batch 100] [--prof DIR] [--gc] [--port 7680]
 *   npx tsx bench/profile.ts --top FILE.cpuprofile [--n 15]
 *
 * Each `--tree` is a checkout of this repository (default: this one, labelled "this"); its
 * bench/worker.ts is bundled with esbuild and run as 1 publisher + `--subs` subscriber processes on
 * 239.255.68.x / 127.0.0.1, the publisher sending bursts of `--batch` (100) as fast as it can
 * (`bench/run.ts` sends 64 KiB updates in bursts of one). The cases of all
 * trees are interleaved (A B A B …), so they share the machine state. CPU is `process.cpuUsage`
 * (user + system) of each process over the load, which a busy shared machine disturbs far less
 * than wall-clock rates. `--prof DIR` adds `--cpu-prof` to every worker; `--gc` adds
 * `--trace-gc-nvp` and reports, per update, the bytes each process allocated and promoted (survived
 * two young-generation collections) and its time in young-generation pauses; `--top` prints the
 * functions with the most self time of one profile. Environment: `BENCH_NODE_FLAGS` adds node flags
 * to every worker (`TAG` in them becomes the worker's tag, e.g. `--heap-prof-name=TAG.heapprofile`);
 * `BENCH_TRACE=1` prints each publisher's result (system CPU, GSO sends) to stderr.
 */
import { spawn } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import * as os from "node:os"
import { dirname, join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const argv = process.argv.slice(2)
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : dflt
}
/** Updates per burst. */
const burstSize = Number(opt("batch", "100"))
const opts = (name: string) => argv.flatMap((a, i) => (a === `--${name}` ? [argv[i + 1]] : []))

// ---- --top: self time of a .cpuprofile --------------------------------------------------------

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

const top = (file: string, n: number) => {
  const p = JSON.parse(readFileSync(file, "utf8")) as {
    nodes: Array<ProfileNode>
    samples: Array<number>
    timeDeltas: Array<number>
  }
  const byId = new Map(p.nodes.map((x) => [x.id, x]))
  const self = new Map<string, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i])!
    const dt = p.timeDeltas[i] ?? 0
    const f = node.callFrame
    if (f.functionName === "(idle)") continue
    const file = f.url.split("/").pop() ?? ""
    const key = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`
    self.set(key, (self.get(key) ?? 0) + dt)
    total += dt
  }
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, n)
  console.log(`${file}: ${(total / 1000).toFixed(0)} ms busy`)
  for (const [k, us] of rows) console.log(`${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`)
}

// ---- workers ----------------------------------------------------------------------------------

/** What `--trace-gc-nvp` reported for one process: bytes allocated / promoted, scavenge pauses. */
interface GcTotals {
  allocated: number
  promoted: number
  scavengeMs: number
}

interface Worker {
  readonly gc: GcTotals
  readonly next: (timeoutMs: number) => Promise<any>
  readonly send: (line: string) => void
  readonly done: Promise<void>
  readonly pid: number
}

const nvp = (line: string, key: string): number => {
  const m = new RegExp(`\\b${key}=([0-9.]+)`).exec(line)
  return m ? Number(m[1]) : 0
}

const startWorker = (
  entry: string,
  cwd: string,
  args: object,
  profDir: string | undefined,
  traceGc: boolean,
  tag: string
): Worker => {
  const prof = profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${tag}.cpuprofile`] : []
  if (traceGc) prof.push("--trace-gc-nvp")
  if (process.env.BENCH_NODE_FLAGS) prof.push(...process.env.BENCH_NODE_FLAGS.replaceAll("TAG", tag).split(" "))
  const gc: GcTotals = { allocated: 0, promoted: 0, scavengeMs: 0 }
  // cwd is the tree: the bundled worker finds that tree's native addons there (addon.ts).
  const child = spawn(process.execPath, [...prof, entry, JSON.stringify(args)], {
    stdio: ["pipe", "pipe", "inherit"],
    cwd
  })
  const queued: Array<any> = []
  const waiting: Array<(v: any) => void> = []
  createInterface({ input: child.stdout! }).on("line", (l) => {
    if (!l.startsWith("{")) {
      // --trace-gc-nvp: one line per collection; `allocated` is what was allocated since the last.
      if (l.includes(" gc=")) {
        gc.allocated += nvp(l, "allocated")
        gc.promoted += nvp(l, "promoted")
        if (l.includes(" gc=s ")) gc.scavengeMs += nvp(l, "pause")
        else if (process.env.BENCH_TRACE) process.stderr.write(`${tag}: ${l.slice(0, 160)}\n`)
      } else if (process.env.BENCH_TRACE) process.stderr.write(`${tag}: ${l}\n`)
      return
    }
    const v = JSON.parse(l)
    const w = waiting.shift()
    if (w) w(v)
    else queued.push(v)
  })
  const done = new Promise<void>((res) => child.on("exit", () => res()))
  const next = (timeoutMs: number) =>
    new Promise<any>((res, rej) => {
      if (queued.length > 0) return res(queued.shift())
      const timer = setTimeout(() => rej(new Error(`${tag}: no answer in ${timeoutMs} ms`)), timeoutMs)
      waiting.push((v) => {
        clearTimeout(timer)
        res(v)
      })
    })
  return { gc, next, send: (line) => child.stdin!.write(line + "\n"), done, pid: child.pid! }
}

const bundle = async (tree: string, label: string): Promise<string> => {
  const esbuild = await import("esbuild")
  const outfile = join(os.tmpdir(), `effect-distributor-profile-${label}-${process.pid}.mjs`)
  await esbuild.build({
    entryPoints: [join(tree, "bench", "worker.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile,
    logLevel: "silent",
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  })
  process.on("exit", () => rmSync(outfile, { force: true }))
  return outfile
}

interface Row {
  tree: string
  system: string
  size: number
  pubCpuUs: number
  sent: number
  datagramsOut: number
  subCpuUs: number
  received: number
  datagramsIn: number
  pubGc: GcTotals
  subGc: GcTotals
}

const runCase = async (
  entry: string,
  cwd: string,
  label: string,
  system: string,
  size: number,
  port: number,
  durationMs: number,
  profDir: string | undefined,
  traceGc: boolean,
  rep: number,
  subCount: number
): Promise<Row> => {
  const common = {
    system,
    size,
    group: `239.255.68.${port % 200}`,
    port,
    mode: "burst",
    rate: 0,
    durationMs,
    batch: burstSize,
    latency: false,
    idleMs: system === "dgram" ? 300 : 1200,
    sendLoss: 0
  }
  const tag = `${label}-${system}-${size}-${rep}`
  const subs = Array.from({ length: subCount }, (_, i) =>
    startWorker(entry, cwd, { ...common, role: "sub" }, profDir, traceGc, `${tag}-sub${i === 0 ? "" : i}`)
  )
  await Promise.all(subs.map((sub) => sub.next(20_000)))
  const pub = startWorker(entry, cwd, { ...common, role: "pub" }, profDir, traceGc, `${tag}-pub`)
  await pub.next(20_000)
  await new Promise((r) => setTimeout(r, 300))
  pub.send("go")
  const p = (await pub.next(durationMs + 30_000)).result
  if (process.env.BENCH_TRACE) process.stderr.write(`pub result: ${JSON.stringify(p)}\n`)
  for (const sub of subs) sub.send(`stop ${p.sent}`)
  const results = await Promise.all(subs.map(async (sub) => (await sub.next(60_000)).result))
  if (process.env.BENCH_TRACE) {
    process.stderr.write(`subs µs/update: ${results.map((r) => (r.cpuUs / r.distinct).toFixed(1)).join(" ")}\n`)
  }
  // With several subscribers: the mean CPU, the fewest delivered.
  const s = {
    cpuUs: results.reduce((a, r) => a + r.cpuUs, 0) / subCount,
    distinct: Math.min(...results.map((r) => r.distinct)),
    datagramsIn: Math.min(...results.map((r) => r.datagramsIn ?? r.received))
  }
  const sub = subs[0]
  pub.send("exit")
  await pub.next(10_000).catch(() => undefined)
  await Promise.all([pub.done, ...subs.map((x) => x.done)])
  return {
    tree: label,
    system,
    size,
    pubCpuUs: p.cpuUs,
    sent: p.sent,
    datagramsOut: p.datagramsOut ?? p.sent,
    subCpuUs: s.cpuUs,
    received: s.distinct,
    datagramsIn: s.datagramsIn,
    pubGc: pub.gc,
    subGc: sub.gc
  }
}

/** Medians over the rounds: B allocated / promoted per update sent (pub) or received (sub), pauses. */
const gcCells = (rs: Array<Row>): string => {
  const per = (f: (r: Row) => number) => median(rs.map(f)).toFixed(0)
  return ` ${per((r) => r.pubGc.allocated / r.sent)} / ${per((r) => r.pubGc.promoted / r.sent)} | ${per((r) => r.subGc.allocated / r.received)} / ${per((r) => r.subGc.promoted / r.received)} | ${per((r) => r.pubGc.scavengeMs)} / ${per((r) => r.subGc.scavengeMs)} |`
}

const median = (xs: Array<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]
}

const main = async () => {
  const topFile = opt("top", "")
  if (topFile) return top(topFile, Number(opt("n", "15")))
  const trees = (opts("tree").length > 0 ? opts("tree") : [`this=${resolve(here, "..")}`]).map((t) => {
    const [label, dir] = t.split("=")
    return { label, dir: resolve(dir) }
  })
  const sizes = opt("sizes", "64,1024").split(",").map(Number)
  const systems = opt("systems", "ours,dgram").split(",")
  const reps = Number(opt("reps", "3"))
  const durationMs = Number(opt("duration", "3000"))
  const profDir = argv.includes("--prof") ? resolve(opt("prof", "profiles")) : undefined
  const traceGc = argv.includes("--gc")
  const subCount = Number(opt("subs", "1"))
  let port = Number(opt("port", "7680"))
  const entries = new Map<string, string>()
  for (const t of trees) entries.set(t.label, await bundle(t.dir, t.label))
  const rows: Array<Row> = []
  for (let rep = 0; rep < reps; rep++) {
    for (const size of sizes) {
      for (const system of systems) {
        // raw dgram does not depend on the tree: once per round
        for (const t of system === "dgram" ? trees.slice(0, 1) : trees) {
          const label = system === "dgram" ? "-" : t.label
          const row = await runCase(
            entries.get(t.label)!,
            t.dir,
            label,
            system,
            size,
            port++,
            durationMs,
            profDir,
            traceGc,
            rep,
            subCount
          )
          rows.push(row)
          process.stderr.write(
            `${rep} ${label} ${system} ${size} B: pub ${(row.pubCpuUs / row.sent).toFixed(2)} µs/update, sub ${(row.subCpuUs / row.received).toFixed(2)} µs/update, ${row.received}/${row.sent} (${((row.received * 1000) / durationMs).toFixed(0)}/s)\n`
          )
        }
      }
    }
  }
  console.log(
    `\n${os.cpus().length} cores, load ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(" ")}, node ${process.version}`
  )
  console.log(`medians of ${reps} runs of ${durationMs} ms, bursts of ${burstSize} as fast as the publisher can\n`)
  const gcHeader = traceGc
    ? " pub B allocated / promoted per update | sub B allocated / promoted per update | pub / sub scavenge ms |"
    : ""
  console.log(
    `| tree | system | size | pub µs/update | pub µs/datagram | updates/datagram | sub µs/update | sub µs/datagram | delivered |${gcHeader}`
  )
  console.log(`| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${traceGc ? " ---: | ---: | ---: |" : ""}`)
  const keys = [...new Set(rows.map((r) => `${r.tree}|${r.system}|${r.size}`))]
  for (const k of keys) {
    const rs = rows.filter((r) => `${r.tree}|${r.system}|${r.size}` === k)
    const [tree, system, size] = k.split("|")
    const f = (x: number) => x.toFixed(2)
    console.log(
      `| ${tree} | ${system} | ${size} | ${f(median(rs.map((r) => r.pubCpuUs / r.sent)))} | ${f(median(rs.map((r) => r.pubCpuUs / r.datagramsOut)))} | ${f(median(rs.map((r) => r.sent / r.datagramsOut)))} | ${f(median(rs.map((r) => r.subCpuUs / r.received)))} | ${f(median(rs.map((r) => r.subCpuUs / r.datagramsIn)))} | ${(100 * median(rs.map((r) => r.received / r.sent))).toFixed(0)} % |${traceGc ? gcCells(rs) : ""}`
    )
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err)
    process.exit(1)
  }
)
