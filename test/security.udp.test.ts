/**
 * Security over real IP multicast on loopback (127.0.0.1 only): peers sharing a key exchange
 * updates; a peer with the wrong key, a peer without security and raw forged datagrams are all
 * dropped and counted on both sides, and never delivered.
 */
import { createSocket } from "node:dgram"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as Distributor from "../src/Distributor.js"
import { encodeGoodbye, makeSourcePrefix, PackedSegmentWriter, topicBytes } from "../src/internal/protocol/wire.js"
import * as Transport from "../src/Transport.js"

const GROUP = "239.255.21.1"
const PORT = 47_121
const KEY = "5c".repeat(32)
const WRONG = "5d".repeat(32)

describe("security over real UDP multicast on loopback", () => {
  it.scopedLive("only peers with the key hear each other; everything else is dropped and counted", () =>
    Effect.gen(function* () {
      const base = { group: GROUP, port: PORT, interface: "127.0.0.1", loopback: true }
      const make = (application: string, security?: { key: string; mode?: "encrypt" | "authenticate" }) =>
        Effect.flatMap(Distributor.make({ application, console: { enabled: false } }), (d) =>
          d.connection(security === undefined ? base : { ...base, security })
        )
      const pub = yield* make("sec-pub", { key: KEY })
      const sub = yield* make("sec-sub", { key: KEY })
      const wrong = yield* make("sec-wrong", { key: WRONG })
      const plain = yield* make("sec-plain")

      const n = 5000
      const received = yield* sub.subscribe("/sec/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
      const strays: Array<string> = []
      for (const [name, other] of [
        ["wrong", wrong],
        ["plain", plain]
      ] as const) {
        yield* other.subscribe("/...").pipe(
          Stream.runForEach((u) => Effect.sync(() => strays.push(`${name} ${new TextDecoder().decode(u.payload)}`))),
          Effect.forkScoped
        )
      }
      // Every subscriber reports status; only the keyed one counts as a receiver for the publisher.
      const p = yield* pub.publisher
      yield* p.awaitReceivers(1)
      yield* Effect.sleep("250 millis")
      expect(yield* pub.receivers).toHaveLength(1)

      // Raw forgeries from a plain socket: a Data packet and a Goodbye for the real session.
      const source = {
        sessionId: p.source.sessionId,
        senderIndex: p.source.senderIndex,
        host: p.source.host,
        application: p.source.application
      }
      const prefix = makeSourcePrefix(source)
      const w = new PackedSegmentWriter(prefix, 1400)
      w.begin(1)
      w.tryAppend(topicBytes("/sec/0"), Buffer.from("forged"))
      const forgeries = [w.finish(), encodeGoodbye(prefix, 0)]
      const raw = createSocket({ type: "udp4", reuseAddr: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => void raw.close()))
      yield* Effect.async<void>((resume) => {
        raw.bind(0, "127.0.0.1", () => resume(Effect.void))
      })
      raw.setMulticastInterface("127.0.0.1")
      const sendRaw = (d: Uint8Array) =>
        Effect.async<void>((resume) => raw.send(d, PORT, GROUP, () => resume(Effect.void)))
      for (const d of forgeries) yield* sendRaw(d)

      for (let i = 0; i < n; i += 100) {
        yield* p.publishAll(Array.from({ length: 100 }, (_, j) => [`/sec/${(i + j) % 10}`, String(i + j)] as const))
        if (i === n / 2) for (const d of forgeries) yield* sendRaw(d)
      }
      const updates = Chunk.toReadonlyArray(yield* Fiber.join(received))
      expect(updates.map((u) => new TextDecoder().decode(u.payload))).toEqual(
        Array.from({ length: n }, (_, i) => String(i))
      )
      yield* Effect.sleep("300 millis")
      // Nothing of the keyed publisher's; the plain peer takes the raw plaintext forgery (it has no key).
      expect(strays.every((s) => s === "plain forged")).toBe(true)

      const [ps, ss, ws, xs] = yield* Effect.all([pub.stats, sub.stats, wrong.stats, plain.stats])
      // The keyed subscriber dropped the raw forgeries, the plain peer's status (no envelope) and the
      // wrong-key peer's status (tag fails), and decoded nothing bad.
      expect(ss.securityMismatch).toBeGreaterThanOrEqual(2 * forgeries.length)
      expect(ss.authFailures).toBeGreaterThan(0)
      expect(ss.decodeErrors).toBe(0)
      expect(ps.authFailures).toBeGreaterThan(0)
      expect(ps.securityMismatch).toBeGreaterThan(0)
      expect(ps.replaysDropped + ss.replaysDropped + ps.staleDropped + ss.staleDropped).toBe(0)
      // The others heard the keyed traffic and dropped all of it.
      expect(ws.authFailures).toBeGreaterThan(n / 100)
      expect(ws.updatesIn).toBe(0)
      expect(xs.securityMismatch).toBeGreaterThan(n / 100)
      expect(xs.updatesIn).toBeLessThanOrEqual(1)
      expect(ws.decodeErrors + xs.decodeErrors).toBe(0)
      expect(ps.socket.sendErrors).toBe(0)
    }).pipe(Effect.provide(Transport.layerUdp))
  )
})
