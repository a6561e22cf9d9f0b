/**
 * Hostile-traffic smoke test over real UDP multicast on loopback (127.0.0.1, group 239.255.22.1,
 * port 47122): a publisher and a subscriber in two Distributors, and a raw dgram socket forging a
 * Goodbye, heartbeats (oldestCached 0 and 2^53 - 1), a huge NAK and new sessions (one with the
 * publisher's restart key) while 2 000 updates flow. Every update must arrive, in order.
 * The deterministic, per-finding cases are in engine.hostile.test.ts.
 */
import { createSocket } from "node:dgram"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as Distributor from "../src/Distributor.js"
import { Fragment, type Packet, PacketKind, type Source } from "../src/internal/protocol/packets.js"
import { encodePacket } from "../src/internal/protocol/wire.js"
import * as Transport from "../src/Transport.js"

const GROUP = "239.255.22.1"
const PORT = 47_122

describe("hostile traffic over real UDP multicast on loopback", () => {
  it.scopedLive(
    "forged Goodbye, heartbeats, a huge NAK and new sessions while 2 000 updates flow: all delivered",
    () =>
      Effect.gen(function* () {
        const config = { group: GROUP, port: PORT, interface: "127.0.0.1", loopback: true }
        const a = yield* Distributor.make({ application: "hostile-pub", console: { enabled: false } })
        const b = yield* Distributor.make({ application: "hostile-sub", console: { enabled: false } })
        const ca = yield* a.connection(config)
        const cb = yield* b.connection(config)
        const forger = yield* Effect.acquireRelease(
          Effect.async<ReturnType<typeof createSocket>>((resume) => {
            const socket = createSocket({ type: "udp4", reuseAddr: true })
            socket.bind(0, "127.0.0.1", () => {
              socket.setMulticastInterface("127.0.0.1")
              socket.setMulticastLoopback(true)
              resume(Effect.succeed(socket))
            })
          }),
          (socket) => Effect.sync(() => socket.close())
        )
        const forge = (packet: Packet) =>
          Effect.async<void>((resume) => {
            // NAKs and Status go to the control channel (port + 1), where publishers listen.
            const port = packet.kind === PacketKind.Nak || packet.kind === PacketKind.Status ? PORT + 1 : PORT
            forger.send(encodePacket(packet), port, GROUP, () => resume(Effect.void))
          })

        const n = 2000
        const received = yield* cb.subscribe("/hostile/...").pipe(Stream.take(n), Stream.runCollect, Effect.fork)
        yield* Effect.repeat(cb.stats, { until: (s) => s.subscriptions.length > 0 })
        const p = yield* ca.publisher
        const legit: Source = {
          sessionId: p.source.sessionId,
          senderIndex: p.source.senderIndex,
          host: p.source.host,
          application: p.source.application
        }
        const highest = () =>
          Effect.map(ca.stats, (s) => s.publishers.find((x) => x.source.sessionId === legit.sessionId)?.highestSeq ?? 0)
        const attacks: ReadonlyArray<(h: number) => Packet> = [
          (h) => ({ kind: PacketKind.Goodbye, source: legit, highestSeq: h }),
          (h) => ({ kind: PacketKind.Heartbeat, source: legit, highestSeq: h, oldestCached: 0, fresh: false }),
          () => ({ kind: PacketKind.Heartbeat, source: legit, highestSeq: 2 ** 53 - 1, oldestCached: 0, fresh: false }),
          () => ({
            kind: PacketKind.Nak,
            source: { sessionId: 0xf0f0n, senderIndex: 0xffff, host: "forger", application: "x" },
            target: legit.sessionId,
            ranges: [{ first: 1, last: 2 ** 53 - 1 }]
          }),
          () => ({
            kind: PacketKind.Data,
            source: { ...legit, sessionId: 0x0bad_cafe_0bad_cafen },
            retransmission: false,
            fresh: true,
            seq: 1,
            body: { fragment: Fragment.None, updates: [{ topic: "/forged/restart", payload: Uint8Array.of(1) }] }
          }),
          (h) => ({
            kind: PacketKind.Data,
            source: { sessionId: BigInt(0x7e57_0000 + h), senderIndex: 9, host: "forger", application: "y" },
            retransmission: false,
            fresh: true,
            seq: 50,
            body: { fragment: Fragment.First, topic: "/hostile/0", totalLength: 2 ** 30, chunk: new Uint8Array(10) }
          })
        ]
        // 2 000 updates at about 2 000/s in batches of 20; one forged datagram after every batch.
        for (let i = 0; i < n; i += 20) {
          yield* p.publishAll(Array.from({ length: 20 }, (_, j) => [`/hostile/${(i + j) % 4}`, String(i + j)] as const))
          const attack = attacks[(i / 20) % attacks.length]
          yield* forge(attack(yield* highest()))
          yield* Effect.sleep("10 millis")
        }
        // A blackout (the session closed or replaced by a forgery) would leave the take unfinished.
        const updates = Chunk.toReadonlyArray(yield* Fiber.join(received).pipe(Effect.timeout("20 seconds")))
        expect(updates.length).toBe(n)
        expect(updates.every((u, i) => new TextDecoder().decode(u.payload) === String(i))).toBe(true)
        expect(updates.every((u) => u.source.sessionId === legit.sessionId)).toBe(true)
        const stats = yield* cb.stats
        expect(stats.implausible).toBeGreaterThan(0)
        // The forged 2^30-byte Firsts (topic /hostile/0, matching the subscription) were losses of
        // unconfirmed sessions: reported on the connection, failing no subscription.
        expect(stats.lossEvents).toBeGreaterThan(0)
        const pubStats = yield* ca.stats
        // The [1, 2^53 - 1] NAKs reached the publisher and were answered within the bounds (here the
        // cache holds ~100 packed segments, below both the segment cap and the 512 KiB burst).
        expect(pubStats.naksReceived).toBeGreaterThan(0)
        expect(pubStats.retransmissionsSent).toBeLessThan(20 * 2048)
      }).pipe(Effect.provide(Transport.layerUdp)),
    60_000
  )
})
