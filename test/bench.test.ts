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
