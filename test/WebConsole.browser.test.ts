/**
 * The console page in a real browser: Debian's `chromium` driven by `playwright-core` (no browser
 * download). While two Distributors exchange traffic over a lossy simulated network, the page must
 * show the connection and the remote sender, its counters must grow, and the page must run
 * without script errors (its Content-Security-Policy admits only its own inline script). Leaves a
 * screenshot in `test-artifacts/console.png`.
 *
 * Skipped, with the reason printed, where `/usr/bin/chromium` is not installed
 * (`apt-get install -y chromium`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { chromium, type Page } from "playwright-core"
import * as Distributor from "../src/Distributor.js"
import * as Transport from "../src/Transport.js"

const CHROMIUM = "/usr/bin/chromium"
const available = existsSync(CHROMIUM)
if (!available) {
  console.warn(
    `[WebConsole.browser.test] skipped: ${CHROMIUM} not found (install it with: apt-get install -y chromium)`
  )
}

const group = { group: "239.255.30.1", port: 7201 }
const key = "239.255.30.1:7201"
const fast = { nakBackoffMs: 5, nakRetryIntervalMs: 20, heartbeatIntervalMs: 200, senderTimeoutMs: 5_000 }

const launch = Effect.acquireRelease(
  Effect.promise(async () => {
    const userDataDir = mkdtempSync(join(tmpdir(), "console-chromium-"))
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1360, height: 900 },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic"
      ]
    })
    return { context, userDataDir }
  }),
  ({ context, userDataDir }) =>
    Effect.promise(async () => {
      await context.close().catch(() => undefined)
      rmSync(userDataDir, { recursive: true, force: true })
    })
)

const counterIn = (page: Page, field: string): Promise<number> =>
  page
    .locator(`section.conn[data-conn="${key}"] [data-counter="${field}"]`)
    .getAttribute("data-value")
    .then((v) => Number(v))

describe.skipIf(!available)("WebConsole page in Chromium", () => {
  it.scopedLive(
    "shows the connection, the remote sender and growing counters",
    () =>
      Effect.gen(function* () {
        const a = yield* Distributor.make({ application: "pricer", host: "host-a", console: { port: 0 } })
        const b = yield* Distributor.make({ application: "risk-engine", host: "host-b", console: { enabled: false } })
        const ca = yield* a.connection({ ...group, ...fast })
        const cb = yield* b.connection({ ...group, ...fast })
        const pa = yield* ca.publisher
        const pb = yield* cb.publisher
        // Both sides subscribe (and drain) so the page has deliveries and subscriptions to show.
        yield* Effect.forkScoped(Stream.runDrain(ca.subscribe("/risk/...", { onLoss: "notify" })))
        yield* Effect.forkScoped(Stream.runDrain(cb.subscribe("/prices/...", { onLoss: "notify" })))
        // Steady traffic both ways, with a varying rate so the chart has a shape.
        let tick = 0
        const traffic = Effect.suspend(() => {
          tick++
          const burst = 4 + Math.round(3 * Math.sin(tick / 40))
          const prices = Array.from(
            { length: burst },
            (_, i) => [`/prices/eq/${(tick + i) % 9}`, `p-${tick}-${i}`] as const
          )
          return Effect.zipRight(
            pa.publishAll(prices),
            tick % 2 === 0 ? pb.publish(`/risk/limits/${tick % 3}`, `r-${tick}`) : Effect.void
          )
        }).pipe(Effect.zipRight(Effect.sleep("10 millis")), Effect.forever)
        yield* Effect.forkScoped(traffic)

        const { context } = yield* launch
        const page = context.pages()[0] ?? (yield* Effect.promise(() => context.newPage()))
        const problems: Array<string> = []
        page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`))
        page.on("console", (message) => {
          if (message.type() === "error") problems.push(`console: ${message.text()}`)
        })
        yield* Effect.promise(() => page.goto(a.consoleUrl ?? "", { waitUntil: "load" }))
        yield* Effect.promise(() =>
          page.locator(`section.conn[data-conn="${key}"]`).waitFor({ state: "visible", timeout: 10_000 })
        )
        yield* Effect.promise(() => page.locator("#status.live").waitFor({ timeout: 10_000 }))

        const before = yield* Effect.promise(() => counterIn(page, "updatesOut"))
        const beforeIn = yield* Effect.promise(() => counterIn(page, "updatesIn"))
        // Let a few samples accumulate for the chart while counters grow.
        yield* Effect.sleep("5 seconds")
        const after = yield* Effect.promise(() => counterIn(page, "updatesOut"))
        const afterIn = yield* Effect.promise(() => counterIn(page, "updatesIn"))
        expect(after).toBeGreaterThan(before)
        expect(afterIn).toBeGreaterThan(beforeIn)

        // The remote sender is listed with its identity and state.
        const row = page.locator(`section.conn[data-conn="${key}"] tr[data-session="${pb.source.sessionIdHex}"]`)
        const rowText = yield* Effect.promise(() => row.innerText())
        expect(rowText).toContain("host-b")
        expect(rowText).toContain("risk-engine")
        expect(rowText).toContain("active")
        // The rate charts have drawn lines.
        const lines = yield* Effect.promise(() => page.locator(`section.conn[data-conn="${key}"] svg polyline`).count())
        expect(lines).toBeGreaterThan(0)

        mkdirSync("test-artifacts", { recursive: true })
        yield* Effect.promise(() => page.screenshot({ path: "test-artifacts/console.png", fullPage: true }))
        expect(problems).toEqual([])
      }).pipe(Effect.provide(Transport.layerMemory({ seed: 5, link: { loss: 0.02 } }))),
    60_000
  )
})
