/**
 * `distributor gateway` and `distributor sub --gateway`, each a real child process on 127.0.0.1:
 * `pub` multicasts into the gateway's connection (loopback, group 239.255.52.x, ports 7600–7699),
 * the gateway serves it over WebSocket, and `sub --gateway` verifies what arrives exactly as the
 * multicast `sub` does. Also the token, bad arguments and Ctrl-C.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { runScript } from "./fixtures/child.js"

const distributor = (args: ReadonlyArray<string>) => runScript("src/cli/main.ts", args)

const json = (l: string) => JSON.parse(l) as Record<string, any>
const isType = (type: string) => (l: string) => l.startsWith("{") && json(l).type === type
const summaryOf = (lines: ReadonlyArray<string>) => lines.filter(isType("summary")).map(json)[0]

const complete = async (args: ReadonlyArray<string>) => {
  const run = distributor(args)
  const code = await run.exit
  return { code, stdout: run.lines, stderr: run.stderr(), summary: summaryOf(run.lines) }
}

const loopback = (n: number) => ["-g", `239.255.52.${n}`, "-p", String(7600 + n), "-i", "127.0.0.1"]

// Read by the children (they inherit the environment): the secret never appears in argv.
process.env.DISTRIBUTOR_TEST_GW_TOKEN = "gateway-test-token-1"
process.env.DISTRIBUTOR_TEST_GW_WRONG = "not-the-gateway-token"

describe("distributor gateway / sub --gateway", () => {
  it.live(
    "pub → gateway → sub --gateway: every update in order, exit 0; a wrong token exits 1; join/leave lines; Ctrl-C stops the gateway cleanly",
    () =>
      Effect.promise(async () => {
        const gateway = distributor([
          "gateway",
          ...loopback(1),
          "--listen",
          "127.0.0.1:0",
          "--token-env",
          "DISTRIBUTOR_TEST_GW_TOKEN",
          "--resume-window",
          "30s",
          "--json-lines"
        ])
        try {
          const ready = json(await gateway.line(isType("ready")))
          expect(ready.connections).toEqual(["239.255.52.1:7601"])
          const url = String(ready.url)
          expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/$/)

          const sub = distributor([
            "sub",
            "--gateway",
            url,
            "--token-env",
            "DISTRIBUTOR_TEST_GW_TOKEN",
            "--name",
            "cli-gw-sub",
            "--publishers",
            "1",
            "--duration",
            "45s",
            "--json-lines",
            "/cli/..."
          ])
          await sub.line(isType("ready"))
          const joined = json(await gateway.line((l) => isType("client")(l) && json(l).state === "joined"))
          expect(joined).toMatchObject({ name: "cli-gw-sub", address: "127.0.0.1", resumed: false })

          const count = 2000
          const [pub, wrong] = await Promise.all([
            complete([
              "pub",
              ...loopback(1),
              "--count",
              String(count),
              "--rate",
              "4000",
              "--topics",
              "3",
              "--prefix",
              "/cli",
              "--size",
              "40-2000",
              "--json"
            ]),
            complete(["sub", "--gateway", url, "--token-env", "DISTRIBUTOR_TEST_GW_WRONG", "--json", "/..."])
          ])
          expect(pub.code).toBe(0)
          expect(pub.summary).toMatchObject({ published: count, interrupted: false })

          const code = await sub.exit
          const s = summaryOf(sub.lines)
          expect(code).toBe(0)
          expect(s).toMatchObject({
            connection: url,
            received: count,
            publishers: 1,
            missing: 0,
            duplicates: 0,
            outOfOrder: 0,
            corrupt: 0,
            gatewayLosses: 0,
            ok: true,
            stopReason: "publishers",
            exitCode: 0
          })
          expect(s.subscriptions[0].publishers[0]).toMatchObject({ received: count, published: count, ended: true })

          // The gateway refuses the handshake (401), which a WebSocket cannot tell from a network
          // failure: the client retries, the command gives up after 10 s with one line.
          expect(wrong.code).toBe(1)
          expect(wrong.stderr).toMatch(/distributor: gateway ws:\/\/127\.0\.0\.1:\d+\/ unreachable \(Timeout\)/)
          expect(wrong.stderr).not.toMatch(/\n\s+at /)

          await gateway.line((l) => isType("client")(l) && json(l).state === "left" && json(l).name === "cli-gw-sub")
          gateway.child.kill("SIGINT")
          expect(await gateway.exit).toBe(0)
          const g = summaryOf(gateway.lines)
          expect(g).toMatchObject({ url, interrupted: true })
          expect(g.counters.hellos).toBe(1)
          expect(g.counters.updatesOut).toBeGreaterThanOrEqual(count)
          expect(g.counters.socketsRefused).toBeGreaterThanOrEqual(1)
        } finally {
          gateway.child.kill()
        }
      }),
    120_000
  )

  it.live(
    "--help shows examples; bad arguments exit 2 with one line: a URL that is not ws://, multicast-only options with --gateway, an unset token variable, a bad --listen",
    () =>
      Effect.promise(async () => {
        const results = await Promise.all([
          complete(["sub", "--gateway", "http://127.0.0.1:1/", "/..."]),
          complete(["sub", "--gateway", "ws://127.0.0.1:1/", "--receive-loss", "5", "/..."]),
          complete(["gateway", "--token-env", "DISTRIBUTOR_TEST_UNSET_VARIABLE"]),
          complete(["gateway", "--listen", "localhost"])
        ])
        const help = await complete(["gateway", "--help"])
        expect(help.code).toBe(0)
        const text = help.stdout.join("\n")
        for (const part of ["EXAMPLES", "distributor gateway", "--token-env", "--resume-window", "Exit codes: 0 ok"])
          expect(text).toContain(part)
        const [badUrl, multicastOnly, unset, badListen] = results
        expect(badUrl.stderr).toContain("--gateway: expected a ws:// or wss:// URL")
        expect(multicastOnly.stderr).toContain("--receive-loss apply to multicast only")
        expect(unset.stderr).toContain("environment variable DISTRIBUTOR_TEST_UNSET_VARIABLE is not set")
        expect(badListen.stderr).toContain("--listen: expected host:port")
        for (const r of results) {
          expect(r.code).toBe(2)
          expect(r.stderr).not.toMatch(/\n\s+at /)
        }
      }),
    120_000
  )
})
