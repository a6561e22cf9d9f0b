/**
 * Topic matching throughput: `npx tsx bench/topic.bench.ts` (or `npm run bench:topic`).
 *
 * 10 000 subscriptions (~70 % exact topics, ~20 % with `*`, ~10 % ending in `...`) over a topic
 * space of market data, sensor and service topics (about 150 000 distinct topics). Scenarios:
 *
 * - hot: 1 000 distinct topics repeated, so `match` is served by the per-topic cache;
 * - hot-fresh: the same, but every topic is decoded from bytes first (as a receiver does), so the
 *   cache lookup hashes a new string each time; includes the decode;
 * - cold: 100 000 distinct topics cycled through a 4 096-entry cache, so every `match` walks the trie;
 * - single: `Topic.matches(pattern, topic)` on random pairs.
 *
 * Takes a few seconds. Prints a markdown table, then one JSON line per scenario.
 */
import * as Either from "effect/Either"
import * as Topic from "../src/Topic.js"

const PATTERNS = 10_000
const SCENARIO_MS = 800

// Deterministic PRNG (mulberry32) so every run measures the same workload.
let seed = 42
const random = (): number => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(random() * xs.length)]
const range = (prefix: string, n: number): Array<string> => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

const venues = ["XNYS", "XNAS", "XLON", "XPAR", "XETR", "XTKS", "XHKG", "XASX"]
const symbols = range("SYM", 2000)
const fields = ["bid", "ask", "last", "volume", "status"]
const sites = range("site", 20)
const buildings = range("b", 10)
const floors = range("f", 10)
const sensors = range("sensor", 30)
const services = range("svc", 50)
const instances = range("i", 20)
const kinds = ["start", "stop", "error", "warn", "info", "metric", "health", "deploy", "config", "audit"]

/** A random topic, as its levels. Roughly half market data, a third sensors, the rest services. */
const randomLevels = (): Array<string> => {
  const r = random()
  if (r < 0.5) return ["md", pick(venues), pick(symbols), pick(fields)]
  if (r < 0.85) return ["iot", pick(sites), pick(buildings), pick(floors), pick(sensors)]
  return ["svc", pick(services), pick(instances), pick(kinds)]
}
const join = (levels: ReadonlyArray<string>): string => "/" + levels.join("/")

const randomPattern = (): string => {
  const levels = randomLevels()
  const r = random()
  if (r < 0.7) return join(levels)
  if (r < 0.9) {
    // One wildcard level after the root (sometimes two), e.g. /md/*/SYM12/bid.
    const stars = random() < 0.8 ? 1 : 2
    for (let s = 0; s < stars; s++) levels[1 + Math.floor(random() * (levels.length - 1))] = "*"
    return join(levels)
  }
  // A prefix of 2..n-1 levels plus "...", e.g. /iot/site3/b4/....
  const keep = 2 + Math.floor(random() * (levels.length - 2))
  return join([...levels.slice(0, keep), "..."])
}

const patterns = Array.from({ length: PATTERNS }, randomPattern)
const distinctTopics = (n: number): Array<string> => {
  const set = new Set<string>()
  while (set.size < n) set.add(join(randomLevels()))
  return [...set]
}

const buildStart = performance.now()
const matcher = Topic.make<number>()
for (let i = 0; i < patterns.length; i++) matcher.add(Either.getOrThrow(Topic.parsePattern(patterns[i])), i)
const buildMs = performance.now() - buildStart

interface Result {
  readonly scenario: string
  readonly opsPerSec: number
  readonly avgMatches: number
  readonly note: string
}

/** Runs `op(i)` for about SCENARIO_MS after a short warm-up; returns ops/s and average result size. */
const measure = (op: (i: number) => number): { opsPerSec: number; avgMatches: number } => {
  const warmEnd = performance.now() + 150
  for (let i = 0; performance.now() < warmEnd; i += 1000) for (let j = 0; j < 1000; j++) op(i + j)
  let ops = 0
  let total = 0
  const start = performance.now()
  let now = start
  while (now - start < SCENARIO_MS) {
    for (let j = 0; j < 10_000; j++) total += op(ops + j)
    ops += 10_000
    now = performance.now()
  }
  return { opsPerSec: ops / ((now - start) / 1000), avgMatches: total / ops }
}

const results: Array<Result> = []

{
  const topics = distinctTopics(1000)
  const n = topics.length
  const r = measure((i) => matcher.match(topics[i % n]).length)
  results.push({ scenario: "topic-match-hot", ...r, note: "1 000 distinct topics, cache hits" })
}
{
  // Topics as a receiver sees them: UTF-8 bytes in a datagram, decoded to a new string per update.
  const topics = distinctTopics(1000)
  const n = topics.length
  const buf = Buffer.from(topics.join(""), "utf8")
  const offsets: Array<number> = [0]
  for (const t of topics) offsets.push(offsets[offsets.length - 1] + Buffer.byteLength(t))
  const r = measure((i) => {
    const k = i % n
    return matcher.match(buf.toString("utf8", offsets[k], offsets[k + 1])).length
  })
  results.push({ scenario: "topic-match-hot-fresh", ...r, note: "as hot, each topic decoded from bytes first" })
}
{
  const topics = distinctTopics(100_000)
  const n = topics.length
  const r = measure((i) => matcher.match(topics[i % n]).length)
  results.push({ scenario: "topic-match-cold", ...r, note: "100 000 distinct topics, every match misses" })
}
{
  const pairs = 1 << 16
  const ps = Array.from({ length: pairs }, () => pick(patterns))
  const ts = distinctTopics(pairs)
  // Make about a third of the pairs candidates that can match: a topic built from the pattern.
  for (let i = 0; i < pairs; i += 3) {
    ts[i] = ps[i]
      .split("/")
      .map((l) => (l === "*" ? "x" : l === "..." ? "x/y" : l))
      .join("/")
  }
  const mask = pairs - 1
  const r = measure((i) => (Topic.matches(ps[i & mask], ts[i & mask]) ? 1 : 0))
  results.push({ scenario: "topic-matches-single", ...r, note: "Topic.matches on random pattern/topic pairs" })
}

const fmt = (n: number): string => Math.round(n).toLocaleString("en-US")
console.log(
  `\nTopic matching — ${PATTERNS} patterns, matcher built in ${buildMs.toFixed(1)} ms, node ${process.version}\n`
)
console.log("| scenario | ops/s | avg result | workload |")
console.log("| --- | ---: | ---: | --- |")
for (const r of results) console.log(`| ${r.scenario} | ${fmt(r.opsPerSec)} | ${r.avgMatches.toFixed(2)} | ${r.note} |`)
console.log("")
for (const r of results) {
  console.log(JSON.stringify({ scenario: r.scenario, patterns: PATTERNS, matchesPerSec: Math.round(r.opsPerSec) }))
}
