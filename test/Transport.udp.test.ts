/**
 * The UDP transport on its own, over real multicast on 127.0.0.1.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Transport from "../src/Transport.js"

const options = {
  group: "239.255.40.1",
  port: 7401,
  interface: "127.0.0.1",
  ttl: 1,
  loopback: true,
  recvBufferSize: 1 << 20,
  sendBufferSize: 1 << 20
}

describe("Transport.layerUdp", () => {
  it.scopedLive("a socket never hears its own datagrams; another socket on the group does", () =>
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const a = yield* transport.open(options)
      const b = yield* transport.open(options)
      const heardByB = yield* Transport.incoming(b).pipe(Stream.take(3), Stream.runCollect, Effect.fork)
      const heardByA = yield* Transport.incoming(a).pipe(Stream.runHead, Effect.fork)
      // Membership takes effect at once on loopback, but give the receive fibers a moment to start.
      yield* Effect.sleep("20 millis")
      for (let i = 0; i < 3; i++) a.send(new Uint8Array([i]))
      const got = Chunk.toReadonlyArray(yield* Fiber.join(heardByB))
      expect(got.map((d) => d.data[0])).toEqual([0, 1, 2])
      expect(got.every((d) => d.address === a.localAddress)).toBe(true)
      // b's traffic reaches a, and only b's: a's own three datagrams were skipped.
      b.send(new Uint8Array([42]))
      const first = yield* Fiber.join(heardByA)
      expect(Option.map(first, (d) => [d.data[0], d.address])).toEqual(Option.some([42, b.localAddress]))
    }).pipe(Effect.provide(Transport.layerUdp))
  )
})
