/**
 * The `distributor` command-line tools, each run as a child process (`node --import tsx
 * src/cli/main.ts …`) on loopback multicast (interface 127.0.0.1, groups 239.255.50.x, ports
 * 7500–7599): bad arguments and help, pub → sub with simulated loss, the demo, and Ctrl-C.
 */
import { createSocket } from "node:dgram"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type Packet, PacketKind } from "../src/internal/protocol/packets.js"
import { encodePacket } from "../src/internal/protocol/wire.js"
import { type Child, runScript } from "./fixtures/child.js"

type Run = Child

const distributor = (args: ReadonlyArray<string>): Run => runScript("src/cli/main.ts", args)

const json = (l: string) => JSON.parse(l) as Record<string, any>
const isType = (type: string) => (l: string) => l.startsWith("{") && json(l).type === type

/** Runs to completion; the summary is the JSON line of type "summary". */
const complete = async (args: ReadonlyArray<string>) => {
  const run = distributor(args)
  const code = await run.exit
  return { code, stdout: run.lines, stderr: run.stderr(), summary: run.lines.filter(isType("summary")).map(json)[0] }
}

const loopback = (n: number) => ["-g", `239.255.50.${n}`, "-p", String(7500 + n), "-i", "127.0.0.1"]

describe("distributor command line", () => {
  it.live(
    "--help shows examples and exit codes; bad arguments exit 2 with a one-line message; --count not reached exits 5",
    () =>
      Effect.promise(async () => {
        const [pubHelp, subHelp, demoHelp, badRate, badGroup, badPattern, incomplete, noReceivers] = await Promise.all([
          complete(["pub", "--help"]),
          complete(["sub", "--help"]),
          complete(["demo", "--help"]),
          complete(["pub", "--rate", "abc"]),
          complete(["pub", "--group", "10.0.0.1", "--count", "1"]),
          complete(["sub", "-i", "127.0.0.1", "no-slash"]),
          // Nobody publishes on this group: --count is not reached within --duration.
          complete(["sub", ...loopback(2), "--count", "10", "--duration", "1s", "--json"]),
          // Nobody subscribes on this group: the receivers awaited do not come within --duration.
          complete(["pub", ...loopback(3), "--await-receivers", "1", "--duration", "1s", "--json"])
        ])
        for (const [help, command] of [
          [pubHelp, "pub"],
          [subHelp, "sub"],
          [demoHelp, "demo"]
        ] as const) {
          expect(help.code).toBe(0)
          const text = help.stdout.join("\n")
          expect(text).toContain("EXAMPLES")
          expect(text).toContain(`distributor ${command}`)
          expect(text).toContain("Exit codes: 0 ok")
        }
        expect(badRate.code).toBe(2)
        expect(badRate.stderr).toContain("'abc' is not a float")
        expect(badGroup.code).toBe(2)
        expect(badGroup.stderr).toContain("10.0.0.1 is not a multicast address")
        expect(badPattern.code).toBe(2)
        expect(badPattern.stderr).toContain('Invalid topic "no-slash"')
        expect(incomplete.code).toBe(5)
        expect(incomplete.summary).toMatchObject({ stopReason: "duration", received: 0, exitCode: 5 })
        expect(noReceivers.code).toBe(5)
        expect(noReceivers.stderr).toContain("0 of 1 receiver(s) present within --duration")
        for (const bad of [badRate, badGroup, badPattern]) {
          // A message, not a stack trace.
          expect(bad.stderr).not.toMatch(/\n\s+at /)
          expect(bad.stdout).toEqual([])
        }
      }),
    // Eight CLI processes start at once (each compiles the CLI with tsx): a loaded 2-core machine
    // took ~60 s.
    120_000
  )

  it.live(
    "pub → sub with 5% send and 5% receive loss: every update delivered in order, or its loss reported",
    () =>
      Effect.promise(async () => {
        const count = 3000
        const sub = distributor([
          "sub",
          ...loopback(1),
          "--publishers",
          "1",
          "--receive-loss",
          "5",
          "--on-loss",
          "report",
          "--duration",
          "45s",
          // Seeded drops: the fate of the first datagrams (which carry the session's start) is fixed.
          "--seed",
          "2",
          "--name",
          "cli-sub",
          "--json-lines"
        ])
        try {
          await sub.line(isType("ready"))
          const pub = await complete([
            "pub",
            ...loopback(1),
            "--count",
            String(count),
            "--rate",
            "3000",
            "--topics",
            "7",
            "--size",
            "40-600",
            "--send-loss",
            "5",
            "--seed",
            "3",
            "--await-receivers",
            "1",
            "--json"
          ])
          expect(pub.code).toBe(0)
          // The subscriber was present (named) before the first update, and flow control paced the run.
          expect(pub.summary.receivers).toEqual([`cli-sub@${os.hostname()} (distributor-sub)`])
          expect(pub.summary.receiversPeak).toBe(1)
          expect(pub.stdout).toHaveLength(1)
          expect(pub.summary).toMatchObject({ published: count, endMarkers: 7, topics: 7, interrupted: false })
          expect(pub.summary.simulatedSendDrops).toBeGreaterThan(0)
          expect(pub.summary.retransmissionsSent).toBeGreaterThan(0)

          const s = json(await sub.line(isType("summary")))
          expect(await sub.exit).toBe(0)
          expect(s).toMatchObject({
            stopReason: "publishers",
            publishers: 1,
            unreportedMissing: 0,
            duplicates: 0,
            outOfOrder: 0,
            corrupt: 0,
            ok: true,
            exitCode: 0
          })
          // Every update is accounted for: delivered, or inside a loss the library reported.
          expect(s.received + s.missing).toBe(count)
          if (s.missing > 0) expect(s.lossReports).toBeGreaterThan(0)
          expect(s.subscriptions[0].publishers[0]).toMatchObject({ published: count, ended: true })
          expect(s.subscriptions[0].publishers[0].sessionId).toBe(pub.summary.session)
          expect(s.simulatedReceiveDrops).toBeGreaterThan(0)
          expect(s.naksSent).toBeGreaterThan(0)
          expect(s.retransmissionsReceived).toBeGreaterThan(0)
          expect(s.latency.samples).toBe(s.received)
          expect(s.latency.p50Ms).toBeLessThanOrEqual(s.latency.p99Ms)
          expect(s.latency.p99Ms).toBeLessThanOrEqual(s.latency.maxMs)
        } finally {
          sub.child.kill()
        }
      }),
    60_000
  )

  it.live(
    "--dialect pycast: pub → sub with 5% send and receive loss and segmented updates; --await-receivers is refused",
    () =>
      Effect.promise(async () => {
        const count = 600
        const refused = complete(["pub", "--dialect", "pycast", ...loopback(4), "--await-receivers", "1"])
        const sub = distributor([
          "sub",
          "--dialect",
          "pycast",
          ...loopback(5),
          "--publishers",
          "1",
          "--receive-loss",
          "5",
          "--on-loss",
          "report",
          "--duration",
          "45s",
          "--seed",
          "2",
          "--json-lines"
        ])
        try {
          await sub.line(isType("ready"))
          // pycast has no fresh mark: the session's start second must be 2 s after the subscriber
          // opened for it to repair the session's head (docs/PROTOCOL.md "pycast dialect").
          await new Promise((resolve) => setTimeout(resolve, 3500))
          const pub = await complete([
            "pub",
            "--dialect",
            "pycast",
            ...loopback(5),
            "--count",
            String(count),
            "--rate",
            "1000",
            "--topics",
            "3",
            "--size",
            "40-20000",
            "--send-loss",
            "5",
            "--seed",
            "3",
            "--json"
          ])
          expect(pub.code).toBe(0)
          expect(pub.summary).toMatchObject({ published: count, endMarkers: 3, interrupted: false })
          expect(pub.summary.retransmissionsSent).toBeGreaterThan(0)
          const s = json(await sub.line(isType("summary")))
          expect(await sub.exit).toBe(0)
          expect(s).toMatchObject({ stopReason: "publishers", unreportedMissing: 0, duplicates: 0, ok: true })
          expect(s.received + s.missing).toBe(count)
          expect(s.naksSent).toBeGreaterThan(0)
          expect(s.retransmissionsReceived).toBeGreaterThan(0)
          const r = await refused
          expect(r.code).toBe(2)
          expect(r.stderr).toContain("pycast receivers do not send")
        } finally {
          sub.child.kill()
        }
      }),
    90_000
  )

  it.live(
    "--key-file secures pub → sub; a sub with another key hears nothing; a bad key exits 2",
    () =>
      Effect.promise(async () => {
        const dir = mkdtempSync(join(os.tmpdir(), "distributor-key-"))
        const key = join(dir, "key")
        const other = join(dir, "other")
        const bad = join(dir, "bad")
        writeFileSync(key, `${"4b".repeat(32)}\n`)
        writeFileSync(other, Buffer.alloc(32, 7).toString("base64"))
        writeFileSync(bad, "1234")
        const subArgs = ["sub", ...loopback(5), "--json-lines"]
        const keyed = distributor([...subArgs, "--key-file", key, "--publishers", "1", "--duration", "20s"])
        const wrong = distributor([...subArgs, "--key-file", other, "--count", "1", "--duration", "4s"])
        try {
          await Promise.all([keyed.line(isType("ready")), wrong.line(isType("ready"))])
          const [pub, badKey, both] = await Promise.all([
            complete([
              "pub",
              ...loopback(5),
              "--key-file",
              key,
              "--count",
              "500",
              "--rate",
              "2000",
              "--await-receivers",
              "1",
              "--json"
            ]),
            complete(["pub", ...loopback(6), "--key-file", bad, "--count", "1"]),
            complete(["pub", ...loopback(6), "--key-file", key, "--passphrase-env", "HOME", "--count", "1"])
          ])
          expect(pub.code).toBe(0)
          expect(pub.summary).toMatchObject({ published: 500, receiversPeak: 1 })
          const s = json(await keyed.line(isType("summary")))
          expect(s).toMatchObject({ stopReason: "publishers", received: 500, missing: 0, ok: true })
          const w = json(await wrong.line(isType("summary")))
          expect(w).toMatchObject({ stopReason: "duration", received: 0 })
          expect(await wrong.exit).toBe(5)
          expect(badKey.code).toBe(2)
          expect(badKey.stderr).toMatch(/64 hex digits|256 bits/)
          expect(both.code).toBe(2)
          expect(both.stderr).toContain("not both")
        } finally {
          keyed.child.kill()
          wrong.child.kill()
          rmSync(dir, { recursive: true, force: true })
        }
      }),
    120_000
  )

  it.live(
    "sub shows Conflict events (a forged implausible heartbeat): a line, a --json-lines event, the summary",
    () =>
      Effect.promise(async () => {
        const sub = distributor(["sub", ...loopback(7), "--duration", "4s", "--json-lines"])
        const forger = createSocket({ type: "udp4" })
        try {
          await sub.line(isType("ready"))
          await new Promise<void>((resolve) => forger.bind(0, "127.0.0.1", () => resolve()))
          forger.setMulticastInterface("127.0.0.1")
          const source = { sessionId: 0x5eedn, senderIndex: 1, host: "forger", application: "forged" }
          const send = (packet: Packet) =>
            new Promise<void>((resolve) => forger.send(encodePacket(packet), 7507, "239.255.50.7", () => resolve()))
          // A session heard at 10, then a claim far beyond anything plausible.
          await send({ kind: PacketKind.Heartbeat, source, highestSeq: 10, oldestCached: 0, fresh: false })
          await send({ kind: PacketKind.Heartbeat, source, highestSeq: 2 ** 50, oldestCached: 0, fresh: false })
          const conflict = json(await sub.line(isType("conflict")))
          expect(conflict).toMatchObject({
            reason: "ImplausibleClaim",
            sessionId: "0000000000005eed",
            host: "forger",
            application: "forged"
          })
          expect(conflict.address).toMatch(/^127\.0\.0\.1:\d+$/)
        } finally {
          forger.close()
        }
        expect(await sub.exit).toBe(0)
        const summary = sub.lines.filter(isType("summary")).map(json)[0]
        expect(summary).toMatchObject({ conflicts: 1, conflictEvents: [{ reason: "ImplausibleClaim" }] })
        expect(sub.stderr()).toContain("Conflict (ImplausibleClaim): session 0000000000005eed forged@forger")
      }),
    60_000
  )

  it.live(
    "demo with a short duration exits 0 and reports zero unreported loss",
    () =>
      Effect.promise(async () => {
        const demo = await complete([
          "demo",
          "-g",
          "239.255.50.3",
          "-p",
          "7503",
          "--duration",
          "2s",
          "--console-port",
          "0",
          "--json"
        ])
        expect(demo.code).toBe(0)
        expect(demo.stdout).toHaveLength(1)
        const s = demo.summary
        expect(s).toMatchObject({ ok: true, unreportedMissing: 0, exitCode: 0, interrupted: false, loss: 0.05 })
        expect(s.consoleUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
        expect(s.published).toBeGreaterThan(1000)
        expect(s.subscribers).toHaveLength(2)
        for (const sub of s.subscribers) {
          expect(sub.delivered + sub.missing).toBe(s.published)
          expect(sub).toMatchObject({ unreportedMissing: 0, duplicates: 0, outOfOrder: 0, corrupt: 0 })
          expect(sub.simulatedReceiveDrops).toBeGreaterThan(0)
          expect(sub.naksSent).toBeGreaterThan(0)
        }
        expect(s.publisher.retransmissionsSent).toBeGreaterThan(0)
      }),
    60_000
  )

  it.live(
    "Ctrl-C (SIGINT) ends pub and sub cleanly: goodbye sent, connections closed, summaries printed",
    () =>
      Effect.promise(async () => {
        const sub = distributor(["sub", ...loopback(4), "--json-lines"])
        let pub: Run | undefined
        try {
          await sub.line(isType("ready"))
          pub = distributor(["pub", ...loopback(4), "--rate", "500", "--topics", "3", "--json-lines"])
          await pub.line(isType("ready"))
          // Interrupt while the publisher is running, once the subscriber has received something.
          await sub.line((l) => isType("progress")(l) && json(l).received > 0)
          pub.child.kill("SIGINT")
          const p = json(await pub.line(isType("summary")))
          expect(await pub.exit).toBe(0)
          expect(p).toMatchObject({ interrupted: true, connectionClosed: true, endMarkers: 3, exitCode: 0 })
          expect(p.published).toBeGreaterThan(0)

          // The subscriber receives the end markers, then the goodbye; wait for it to see them.
          await sub.line((l) => isType("progress")(l) && json(l).received >= p.published)
          sub.child.kill("SIGINT")
          const s = json(await sub.line(isType("summary")))
          expect(await sub.exit).toBe(0)
          expect(s).toMatchObject({
            interrupted: true,
            stopReason: "interrupted",
            connectionClosed: true,
            received: p.published,
            missing: 0,
            ok: true,
            exitCode: 0
          })
          expect(s.subscriptions[0].publishers[0]).toMatchObject({
            sessionId: p.session,
            published: p.published,
            ended: true,
            state: "closed"
          })
        } finally {
          sub.child.kill()
          pub?.child.kill()
        }
      }),
    60_000
  )
})
