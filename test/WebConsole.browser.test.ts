/**
 * The console page in a real browser: Debian's `chromium` driven by `playwright-core` (no browser
 * download). While three Distributors exchange traffic over a lossy simulated network (one of them
 * with a sender cache too small to answer NAKs, so its losses are irrecoverable), the page must
 * show the connection and the remote senders, its counters must grow, the loss must be listed with
 * its range and reason, and the page must run without script errors (its Content-Security-Policy
 * admits only its own inline script). Leaves a screenshot in `test-artifacts/console.png`.
 *
 * Where `/usr/bin/chromium` is not installed (`apt-get install -y chromium`) the test is skipped
 * with a note, except in CI (`CI=true`, `.ci/run` installs chromium): there it fails, so that a
 * broken install is noticed.
 */
import { mkdirSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Page } from "playwright-core"
import * as Distributor from "../src/Distributor.js"
import * as Transport from "../src/Transport.js"
import { available, CHROMIUM, inCI, launch } from "./fixtures/chromium.js"

if (!available && !inCI) {
  console.warn(
    `[WebConsole.browser.test] skipped: ${CHROMIUM} not found (install it with: apt-get install -y chromium)`
  )
}

const group = { group: "239.255.70.2", port: 7702 }
const key = "239.255.70.2:7702"
const fast = { nakBackoffMs: 5, nakRetryIntervalMs: 20, heartbeatIntervalMs: 200, senderTimeoutMs: 5_000 }

const counterIn = (page: Page, field: string): Promise<number> =>
  page
    .locator(`section.conn[data-conn="${key}"] [data-counter="${field}"]`)
    .getAttribute("data-value")
    .then((v) => Number(v))

/** Polls the page's counter until it is positive or `timeoutMs` passes; returns the last value. */
const counterBecomesPositive = async (page: Page, field: string, timeoutMs: number): Promise<number> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await counterIn(page, field)
    if (value > 0 || Date.now() >= deadline) return value
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

describe.skipIf(!available && !inCI)("WebConsole page in Chromium", () => {
  it.scopedLive(
    "shows the connection, the remote senders, growing counters and an irrecoverable loss",
    () =>
      Effect.gen(function* () {
        expect(available, `CI=true but ${CHROMIUM} is missing: .ci/run must install Debian's chromium`).toBe(true)
        const a = yield* Distributor.make({ application: "pricer", host: "host-a", console: { port: 0 } })
        const b = yield* Distributor.make({ application: "risk-engine", host: "host-b", console: { enabled: false } })
        const c = yield* Distributor.make({ application: "audit-feed", host: "host-c", console: { enabled: false } })
        const ca = yield* a.connection({ ...group, ...fast })
        const cb = yield* b.connection({ ...group, ...fast })
        // A sender cache of one byte keeps nothing: what a loses of c's data is lost for good.
        const cc = yield* c.connection({ ...group, ...fast, cacheMaxBytes: 1 })
        const pa = yield* ca.publisher
        const pb = yield* cb.publisher
        const pc = yield* cc.publisher
        // Both sides subscribe (and drain) so the page has deliveries and subscriptions to show;
        // subscribed first, so that a receives (joins the data channel) before b's first session.
        for (const [conn, pattern] of [
          [ca, "/risk/..."],
          [ca, "/audit/..."],
          [cb, "/prices/..."]
        ] as const) {
          yield* Effect.forkScoped(Stream.runDrain(yield* conn.subscribeScoped(pattern, { onLoss: "notify" })))
        }
        // A session of b that has already ended: listed as closed.
        yield* Effect.scoped(Effect.flatMap(cb.publisher, (p) => p.publish("/risk/startup", "ready")))
        // Steady traffic both ways, with a varying rate so the chart has a shape.
        let tick = 0
        const traffic = Effect.suspend(() => {
          tick++
          const burst = 4 + Math.round(3 * Math.sin(tick / 40))
          const prices = Array.from(
            { length: burst },
            (_, i) => [`/prices/eq/${(tick + i) % 9}`, `p-${tick}-${i}`] as const
          )
          return Effect.all([
            pa.publishAll(prices),
            tick % 2 === 0 ? pb.publish(`/risk/limits/${tick % 3}`, `r-${tick}`) : Effect.void,
            tick % 5 === 0 ? pc.publish(`/audit/trades/${tick}`, `a-${tick}`) : Effect.void
          ])
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
        const text = (selector: string) =>
          Effect.promise(() =>
            page
              .locator(selector)
              .first()
              .textContent()
              .then((t) => t ?? "")
          )
        const overview = yield* text("#overview")
        expect(overview).toContain("pricer")
        expect(overview).toContain("host-a")
        expect(yield* text('[data-testid="connection-count"] .value')).toBe("1")

        const before = yield* Effect.promise(() => counterIn(page, "updatesOut"))
        const beforeIn = yield* Effect.promise(() => counterIn(page, "updatesIn"))
        // Let a few samples accumulate for the chart while counters grow.
        yield* Effect.sleep("5 seconds")
        const after = yield* Effect.promise(() => counterIn(page, "updatesOut"))
        const afterIn = yield* Effect.promise(() => counterIn(page, "updatesIn"))
        expect(after).toBeGreaterThan(before)
        expect(afterIn).toBeGreaterThan(beforeIn)

        // The remote senders are listed with their identity and state.
        const rowText = (sessionIdHex: string) =>
          text(`section.conn[data-conn="${key}"] tr[data-session="${sessionIdHex}"]`)
        const rowB = yield* rowText(pb.source.sessionIdHex)
        expect(rowB).toContain("host-b")
        expect(rowB).toContain("risk-engine")
        expect(rowB).toContain("active")
        expect(yield* rowText(pc.source.sessionIdHex)).toContain("audit-feed")
        const closedRows = yield* Effect.promise(() =>
          page.locator(`section.conn[data-conn="${key}"] tr[data-session] .badge.closed`).count()
        )
        expect(closedRows).toBe(1)
        // Recovered losses show as NAKs and retransmissions; c's as irrecoverable, with range and reason.
        // Which receiver NAKs a gap that several share is random (back-off, then suppression on hearing
        // another's NAK), so a's own NAKs may take a few more gaps: wait for them, bounded.
        for (const field of ["naksSent", "retransmissionsReceived", "lostSegments"]) {
          expect(yield* Effect.promise(() => counterBecomesPositive(page, field, 20_000)), field).toBeGreaterThan(0)
        }
        const loss = (yield* ca.stats).recentLosses.find((r) => r.loss.sessionId === pc.source.sessionIdHex)?.loss
        expect(loss?.reason).toBe("NotInSenderCache")
        if (loss === undefined) return
        const lossRow = `section.conn[data-conn="${key}"] tr[data-loss="${loss.sessionId}:${loss.firstSeq}"]`
        expect(yield* text(lossRow)).toContain("audit-feed@host-c")
        expect(yield* text(`${lossRow} td:nth-child(4)`)).toBe(
          loss.firstSeq === loss.lastSeq ? `${loss.firstSeq}` : `${loss.firstSeq}–${loss.lastSeq}`
        )
        expect(yield* text(`${lossRow} td:last-child`)).toBe("NotInSenderCache")
        // The rate charts have drawn lines.
        const lines = yield* Effect.promise(() => page.locator(`section.conn[data-conn="${key}"] svg polyline`).count())
        expect(lines).toBeGreaterThan(0)

        mkdirSync("test-artifacts", { recursive: true })
        yield* Effect.promise(() => page.screenshot({ path: "test-artifacts/console.png", fullPage: true }))
        expect(problems).toEqual([])
      }).pipe(
        Effect.provide(
          Transport.layerMemory({
            seed: 5,
            link: {
              loss: 0.02,
              // Every link also loses its 20th and 21st original data datagrams: recovered from a and
              // b, irrecoverable from c.
              drop: (_bytes, ctx) =>
                ctx.class === "data" && !ctx.retransmission && (ctx.classIndex === 20 || ctx.classIndex === 21)
            }
          })
        )
      ),
    90_000
  )
})
