/**
 * The UDP transport on its own, over real multicast on 127.0.0.1, on both backends (native
 * recvmmsg/sendmmsg where built, and node:dgram).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Transport from "../src/Transport.js"
import { backends } from "./fixtures/backends.js"

const options = {
  group: "239.255.40.1",
  port: 7401,
  interface: "127.0.0.1",
  ttl: 1,
  loopback: true,
  recvBufferSize: 1 << 20,
  sendBufferSize: 1 << 20
}

describe.each(backends)("Transport.layerUdp ($name)", ({ name, layer, skip }) => {
  if (skip) return it.skip("the native UDP addon is not built", () => {})
  const backend = name === "native" ? "native" : "dgram"

  it.scopedLive("a socket never hears its own datagrams; another socket on the group does", () =>
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const a = yield* transport.open(options)
      const b = yield* transport.open(options)
      expect(a.stats().backend).toBe(backend)
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
    }).pipe(Effect.provide(layer))
  )

  it.scopedLive("a burst from two senders arrives complete, in order per sender, with the right sources", () =>
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const opts = { ...options, group: "239.255.40.2", port: 7402, recvBufferSize: 4 << 20 }
      const a = yield* transport.open(opts)
      const b = yield* transport.open(opts)
      const c = yield* transport.open(opts)
      const n = 700
      const batches: Array<number> = []
      let batch = 0
      const got: Array<{ data: Uint8Array; address: string }> = []
      c.listen({
        onDatagram: (data, address) => {
          got.push({ data, address })
          batch++
        },
        onBatchEnd: () => {
          batches.push(batch)
          batch = 0
        }
      })
      // Sizes 1..1200 bytes, each filled with its index: a datagram cut, merged or misplaced shows.
      const datagram = (i: number, from: number) => {
        const d = new Uint8Array(1 + ((i * 37) % 1200)).fill(i & 0xff)
        d[0] = from
        return d
      }
      for (let i = 0; i < n; i++) {
        a.send(datagram(i, 1))
        if (i % 2 === 0) b.send(datagram(i, 2))
      }
      yield* Effect.repeat(Effect.sleep("10 millis"), { until: () => got.length >= n + n / 2, times: 300 })
      expect(got.length).toBe(n + n / 2)
      const check = (from: number, address: string, every: number) => {
        const mine = got.filter((d) => d.data[0] === from)
        expect(mine.every((d) => d.address === address)).toBe(true)
        expect(mine.map((d) => d.data.length)).toEqual(
          Array.from({ length: n / every }, (_, k) => datagram(k * every, from).length)
        )
        expect(mine.every((d, k) => d.data.subarray(1).every((x) => x === ((k * every) & 0xff)))).toBe(true)
      }
      check(1, a.localAddress, 1)
      check(2, b.localAddress, 2)
      // Every datagram was delivered inside a batch, and every batch ended.
      expect(batches.reduce((x, y) => x + y, 0)).toBe(got.length)
      expect(a.stats().sendErrors + b.stats().sendErrors).toBe(0)
    }).pipe(Effect.provide(layer))
  )

  it.scopedLive("runs of equal-size datagrams arrive exactly as sent, here and at a node:dgram receiver", () =>
    Effect.gen(function* () {
      const opts = { ...options, group: "239.255.40.4", port: 7404, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 }
      const open = (l: typeof layer) => Effect.flatMap(Transport.Transport, (t) => t.open(opts)).pipe(Effect.provide(l))
      const a = yield* open(layer)
      const receivers = [yield* open(layer), yield* open(Transport.layerUdpDgram)]
      const got = receivers.map((r) => {
        const into: Array<Uint8Array> = []
        r.listen({ onDatagram: (d) => into.push(d), onBatchEnd: () => {} })
        return into
      })
      // Runs the native sender sends as one GSO message each (equal sizes, a shorter one closing a
      // run, a run cut at 64 datagrams or 65 000 bytes), between lone datagrams; each datagram
      // carries its index and is filled with it.
      const sizes = [
        ...Array(100).fill(1400),
        300,
        ...Array(70).fill(1000),
        10,
        ...Array(3).fill(500),
        9000,
        ...Array(47).fill(1400),
        ...Array(200).fill(64),
        2000,
        1
      ]
      // Every other datagram is a view into one shared buffer (as a sender's slab), at an offset.
      const shared = new ArrayBuffer(sizes.reduce((x, y) => x + y + 8, 0))
      let at = 3
      const datagram = (i: number) => {
        const d = i % 2 === 0 ? new Uint8Array(shared, at, sizes[i]) : new Uint8Array(sizes[i])
        if (i % 2 === 0) at += sizes[i] + 5
        d.fill(i & 0xff)
        d[0] = i >> 8
        return d
      }
      for (let i = 0; i < sizes.length; i++) a.send(datagram(i))
      a.flush?.()
      yield* Effect.repeat(Effect.sleep("10 millis"), {
        until: () => got.every((g) => g.length >= sizes.length),
        times: 300
      })
      for (const g of got) {
        expect(g.map((d) => d.length)).toEqual(sizes)
        expect(
          g.every((d, i) =>
            d.length === 1 ? d[0] === i >> 8 : d[0] === i >> 8 && d.subarray(1).every((x) => x === (i & 0xff))
          )
        ).toBe(true)
      }
      const sent = a.stats().segmentation
      const heard = receivers[0].stats().segmentation
      if (backend === "native") {
        // On Linux loopback the kernel segments (GSO) and hands the runs over whole (GRO).
        expect(sent!.gsoSends).toBeGreaterThan(0)
        expect(sent!.gsoDatagrams).toBeGreaterThan(sent!.gsoSends)
        expect(heard!.groReads).toBeGreaterThan(0)
        expect(receivers[1].stats().segmentation).toBeUndefined()
      } else expect(sent).toBeUndefined()
      expect(a.stats().sendErrors).toBe(0)
    })
  )

  it.scopedLive("memory a handler released is read into again; memory it kept never is", () =>
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const opts = { ...options, group: "239.255.40.5", port: 7405, recvBufferSize: 4 << 20 }
      const a = yield* transport.open(opts)
      const releasing = yield* transport.open(opts)
      const keeping = yield* transport.open(opts)
      // One copies each datagram out and says it kept nothing; the other keeps the views.
      const copies: Array<Uint8Array> = []
      releasing.listen({
        onDatagram: (d) => {
          copies.push(Uint8Array.from(d))
          return false
        },
        onBatchEnd: () => {}
      })
      const views: Array<Uint8Array> = []
      keeping.listen({ onDatagram: (d) => views.push(d), onBatchEnd: () => {} })
      const datagram = (i: number) => new Uint8Array(1000 + (i % 7) * 50).fill(i & 0xff)
      // Waves of datagrams, each read in rounds of its own.
      const waves = 20
      const perWave = 30
      for (let w = 0; w < waves; w++) {
        for (let k = 0; k < perWave; k++) a.send(datagram(w * perWave + k))
        a.flush?.()
        yield* Effect.sleep("5 millis")
      }
      const total = waves * perWave
      yield* Effect.repeat(Effect.sleep("10 millis"), {
        until: () => copies.length >= total && views.length >= total,
        times: 300
      })
      const intact = (got: Array<Uint8Array>) =>
        got.length === total && got.every((d, i) => d.length === datagram(i).length && d.every((x) => x === (i & 0xff)))
      expect(intact(copies)).toBe(true)
      // Read after all the others: none of them was written over.
      expect(intact(views)).toBe(true)
      if (backend === "native") {
        expect(releasing.stats().segmentation!.reusedReads).toBeGreaterThan(0)
        expect(keeping.stats().segmentation!.reusedReads).toBe(0)
      } else expect(releasing.stats().segmentation).toBeUndefined()
    }).pipe(Effect.provide(layer))
  )

  it.scopedLive("datagrams that arrive before listen are handed over by it; leaving and rejoining works", () =>
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const opts = { ...options, group: "239.255.40.3", port: 7403 }
      const a = yield* transport.open(opts)
      const b = yield* transport.open({ ...opts, joined: false })
      const c = yield* transport.open(opts)
      for (let i = 0; i < 5; i++) a.send(new Uint8Array([i]))
      yield* Effect.sleep("50 millis")
      const early: Array<number> = []
      c.listen({ onDatagram: (d) => early.push(d[0]), onBatchEnd: () => {} })
      expect(early).toEqual([0, 1, 2, 3, 4])
      const heard: Array<number> = []
      b.listen({ onDatagram: (d) => heard.push(d[0]), onBatchEnd: () => {} })
      a.send(new Uint8Array([10]))
      yield* Effect.sleep("50 millis")
      expect(heard).toEqual([])
      yield* b.setJoined(true)
      a.send(new Uint8Array([11]))
      yield* Effect.repeat(Effect.sleep("10 millis"), { until: () => heard.length > 0, times: 100 })
      yield* b.setJoined(false)
      a.send(new Uint8Array([12]))
      yield* Effect.sleep("50 millis")
      yield* b.setJoined(true)
      a.send(new Uint8Array([13]))
      yield* Effect.repeat(Effect.sleep("10 millis"), { until: () => heard.length > 1, times: 100 })
      expect(heard).toEqual([11, 13])
      expect(b.stats().backend).toBe(backend)
    }).pipe(Effect.provide(layer))
  )
})
