/**
 * The native UDP backend (native/udp): that it is really the one in use when built (a silent
 * fallback to node:dgram must fail here), the DISTRIBUTOR_NATIVE switch, and its send queue's
 * behaviour when the kernel's send buffer is full — which loopback never is, so that part runs
 * against a fake addon and a fake node:dgram socket.
 */
import type * as Dgram from "node:dgram"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import { resolve } from "node:path"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Worker } from "node:worker_threads"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { unzeroed } from "../src/internal/slab.js"
import { type Addon, makeHotPath } from "../src/internal/transport/native.js"
import type { HotPathContext } from "../src/internal/transport/udp.js"
import * as Transport from "../src/Transport.js"
import { runScript } from "./fixtures/child.js"

const built = existsSync("native/udp/build/Release/udp.node")
// A collection on demand, for the pool's finalizers.
setFlagsFromString("--expose-gc")

describe("native UDP backend", () => {
  it.scopedLive.skipIf(!built || process.platform !== "linux" || process.env.DISTRIBUTOR_NATIVE === "0")(
    "is what layerUdp uses when the addon is built",
    () =>
      Effect.gen(function* () {
        expect(Transport.udpBackend()).toMatchObject({ backend: "native" })
        const transport = yield* Transport.Transport
        const socket = yield* transport.open({
          group: "239.255.40.9",
          port: 7409,
          interface: "127.0.0.1",
          ttl: 1,
          loopback: true,
          recvBufferSize: 0,
          sendBufferSize: 0
        })
        expect(socket.stats().backend).toBe("native")
        expect(socket.flush).toBeTypeOf("function")
      }).pipe(Effect.provide(Transport.layerUdp))
  )

  it.live("DISTRIBUTOR_NATIVE=0 turns it off", () =>
    Effect.promise(async () => {
      const child = runScript("test/fixtures/backend.ts", [], { stderr: "pipe", env: { DISTRIBUTOR_NATIVE: "0" } })
      const line = await child.line((l) => l.startsWith("{"))
      expect(JSON.parse(line)).toEqual({ backend: "dgram", reason: "DISTRIBUTOR_NATIVE=0" })
      await child.exit
    })
  )

  it.live.skipIf(!built || process.platform !== "linux")(
    "a worker thread that ends with a receiver open, under traffic, does not take the process down",
    () =>
      Effect.promise(async () => {
        // Teardown closes node's handles (and fds) before any addon hook runs: the addon polls its
        // own duplicate of the fd and closes it in an async cleanup hook (native/udp/src/udp.c).
        const code = `
          const { parentPort, workerData } = require("node:worker_threads")
          const dgram = require("node:dgram")
          const addon = require(${JSON.stringify(resolve("native/udp/build/Release/udp.node"))})
          const s = dgram.createSocket({ type: "udp4", reuseAddr: true })
          s.bind({ port: 7408, address: "239.255.40.8" }, () => {
            s.addMembership("239.255.40.8", "127.0.0.1")
            const state = Object.getOwnPropertySymbols(s).find((x) => x.description === "state symbol")
            const handle = s[state].handle
            handle.recvStop()
            addon.rxOpen(handle.fd, 0, -1, new Uint32Array(64 * 64 * 4), () => {})
            parentPort.postMessage("open")
            if (workerData.exit) process.exit(0)
          })`
        const dgram = await import("node:dgram")
        const tx = dgram.createSocket("udp4")
        await new Promise<void>((r) => tx.bind(0, "127.0.0.1", () => r()))
        tx.setMulticastInterface("127.0.0.1")
        const traffic = setInterval(() => {
          for (let i = 0; i < 20; i++) tx.send(new Uint8Array(100), 7408, "239.255.40.8")
        }, 1)
        try {
          for (let k = 0; k < 6; k++) {
            const w = new Worker(code, { eval: true, workerData: { exit: k % 2 === 0 } })
            w.on("message", () => setTimeout(() => w.terminate(), k * 3))
            await new Promise((r) => w.on("exit", r))
          }
        } finally {
          clearInterval(traffic)
          tx.close()
        }
      })
  )

  it.live.skipIf(!built || process.platform !== "linux")(
    "receive: after 64 rounds kept by nobody, rounds come in the kernel's own slots; a round that is kept stays intact",
    () =>
      Effect.promise(async () => {
        // Direct mode hands JS the memory recvmmsg wrote (native/udp/src/udp.c rx_deliver): the
        // offsets of single datagrams and of GRO runs must be right there, and once JS keeps a view
        // that memory must never be written again.
        const addon = createRequire(import.meta.url)(resolve("native/udp/build/Release/udp.node")) as Addon
        const dgram = await import("node:dgram")
        const fdOf = (socket: Dgram.Socket) => {
          const state = Object.getOwnPropertySymbols(socket).find((x) => x.description === "state symbol")!
          return (socket as unknown as Record<symbol, { handle: { fd: number; recvStop(): void } }>)[state].handle
        }
        const rxSocket = dgram.createSocket("udp4")
        const txSocket = dgram.createSocket("udp4")
        await new Promise<void>((r) => rxSocket.bind(0, "127.0.0.1", () => r()))
        await new Promise<void>((r) => txSocket.bind(0, "127.0.0.1", () => r()))
        txSocket.connect(rxSocket.address().port, "127.0.0.1")
        await new Promise<void>((r) => txSocket.once("connect", () => r()))
        const rxHandle = fdOf(rxSocket)
        rxHandle.recvStop()
        const meta = new Uint32Array(64 * 64 * 4)
        type Round = { buffer: ArrayBuffer; datagrams: Array<Uint8Array> }
        const rounds: Array<Round> = []
        let keep = false
        let waiting: (() => void) | undefined
        const rx = addon.rxOpen(rxHandle.fd, 0, -1, meta, (buffer, count) => {
          const datagrams = Array.from(
            { length: count },
            (_, i) => new Uint8Array(buffer, meta[4 * i], meta[4 * i + 1])
          )
          rounds.push({ buffer, datagrams: datagrams.map((d) => (keep ? d : d.slice())) })
          waiting?.()
          return !keep
        })
        // One round per send: a run of `n` equal datagrams of `size` bytes (one GSO send), each filled with its own byte.
        let fill = 0
        const status = new Int32Array(3)
        const round = async (n: number, size: number) => {
          const base = new ArrayBuffer(n * size)
          const bytes = new Uint8Array(base)
          const sent: Array<number> = []
          for (let i = 0; i < n; i++, fill = (fill + 1) & 0xff) {
            bytes.fill(fill, i * size, (i + 1) * size)
            sent.push(fill)
          }
          const arrived = new Promise<void>((r) => {
            waiting = r
          })
          const range = Uint32Array.from({ length: n }, (_, i) => i)
          const left = addon.sendBatch(
            fdOf(txSocket).fd,
            [base],
            new Uint32Array(n),
            range.map((i) => i * size),
            new Uint32Array(n).fill(size),
            n,
            status,
            true
          )
          expect(left).toBe(n)
          await arrived
          const r = rounds[rounds.length - 1]
          expect(r.datagrams.map((d) => d.length)).toEqual(new Array(n).fill(size))
          expect(r.datagrams.map((d) => (d.every((x) => x === d[0]) ? d[0] : -1))).toEqual(sent)
          return r
        }
        try {
          for (let k = 0; k < 64; k++) expect((await round(1, 1000)).buffer.byteLength).toBeLessThan(1 << 20)
          const direct = await round(1, 1000)
          expect(direct.buffer.byteLength).toBe(64 * 65536)
          expect((await round(5, 1200)).buffer).toBe(direct.buffer)
          expect((await round(1, 700)).buffer).toBe(direct.buffer)
          keep = true
          const kept = await round(3, 900)
          expect(kept.buffer).toBe(direct.buffer)
          const before = kept.datagrams.map((d) => d.slice())
          keep = false
          let later: Round | undefined
          for (let k = 0; k < 68; k++) {
            later = await round(k % 2 === 0 ? 1 : 4, 900)
            expect(later.buffer).not.toBe(direct.buffer)
          }
          // Direct again, in fresh slots.
          expect(later?.buffer.byteLength).toBe(64 * 65536)
          // Nothing was written over the memory that JS kept.
          expect(kept.datagrams).toEqual(before)
        } finally {
          addon.rxClose(rx)
          rxSocket.close()
          txSocket.close()
        }
      })
  )

  it.live.skipIf(!built || process.platform !== "linux" || process.env.DISTRIBUTOR_NATIVE === "0")(
    "reassembly memory: the pool hands out exact-size buffers and reuses a block once the collector freed its buffer",
    () =>
      Effect.promise(async () => {
        const addon = createRequire(import.meta.url)(resolve("native/udp/build/Release/udp.node")) as Addon
        const stats = new Float64Array(5)
        const read = () => {
          addon.poolStats!(stats)
          return { made: stats[0], reused: stats[1], returned: stats[2] }
        }
        expect(() => addon.poolAlloc!(1024 * 1024 + 1)).toThrow(RangeError)
        const before = read()
        const take = (n: number) => {
          const buffers = Array.from({ length: n }, (_, i) => new Uint8Array(addon.poolAlloc!(40_000 + i)).fill(i))
          for (const [i, b] of buffers.entries()) {
            expect(b.length).toBe(40_000 + i)
            expect(b[0] + b[b.length - 1]).toBe(2 * i)
          }
          return buffers.length
        }
        expect(take(32)).toBe(32)
        const gc = runInNewContext("gc") as () => void
        // The finalizers run on the JS thread after a collection (node defers them to an immediate).
        for (let k = 0; k < 200 && read().returned - before.returned < 32; k++) {
          gc()
          await new Promise((r) => setTimeout(r, 5))
        }
        expect(read().returned - before.returned).toBeGreaterThanOrEqual(32)
        take(32)
        expect(read().reused - before.reused).toBeGreaterThanOrEqual(32)
        // Loading the backend sends the receivers' reassembly buffers there.
        expect(Transport.udpBackend().backend).toBe("native")
        const inUse = read()
        expect(unzeroed(50_000).length).toBe(50_000)
        const now = read()
        expect(now.made + now.reused).toBe(inUse.made + inUse.reused + 1)
      })
  )

  describe("send queue", () => {
    const { EAGAIN, EPERM } = os.constants.errno
    /**
     * A fake addon whose sendBatch sends up to `accept[k]` datagrams on its k-th call and then fails
     * with `errno[k]`, and a fake node:dgram socket that completes sends when `complete()` is called.
     */
    const harness = (accept: Array<number>, errnos: Array<number>) => {
      const wire: Array<string> = []
      const gsoFlags: Array<boolean> = []
      // Each call's bases (a copy) and the array itself, to look at after the call.
      const basesSeen: Array<Array<ArrayBufferLike>> = []
      const basesArrays: Array<ReadonlyArray<ArrayBufferLike | undefined>> = []
      let call = 0
      const addon: Addon = {
        rxOpen: () => undefined,
        rxClose: () => {},
        sendBatch: (_fd, bases, which, offsets, _lengths, count, status, gso) => {
          const k = call++
          gsoFlags.push(gso)
          basesSeen.push([...bases])
          basesArrays.push(bases)
          const n = Math.min(count, accept[k] ?? count)
          for (let i = 0; i < n; i++) wire.push(`native:${new Uint8Array(bases[which[i]])[offsets[i]]}`)
          status[0] = n < count ? (errnos[k] ?? EAGAIN) : 0
          return n
        }
      }
      const pending: Array<() => void> = []
      const socket = {
        [Symbol("state symbol")]: { handle: { fd: 99, recvStop: () => 0, recvStart: () => 0 } },
        send: (d: Uint8Array, cb: (err: Error | null) => void) => {
          wire.push(`node:${d[0]}`)
          pending.push(() => cb(null))
        }
      } as unknown as Dgram.Socket
      const errors: Array<string> = []
      const context: HotPathContext = {
        group: "239.255.40.9:7409",
        own: undefined,
        deliver: () => {},
        endBatch: () => {},
        sendError: (m) => errors.push(m),
        segmentation: { gsoSends: 0, gsoDatagrams: 0, groReads: 0, groDatagrams: 0, reusedReads: 0 }
      }
      const sender = makeHotPath(addon).sender(socket, context)!
      const complete = () => {
        for (const f of pending.splice(0)) f()
      }
      return { wire, sender, errors, complete, gsoFlags, basesSeen, basesArrays }
    }
    const d = (i: number) => new Uint8Array([i, 0, 0])

    it("EAGAIN: the rest goes to node:dgram in order, later sends follow it until it has sent them", () => {
      const { wire, sender, errors, complete } = harness([3], [EAGAIN])
      for (let i = 0; i < 6; i++) sender.send(d(i))
      sender.flush()
      expect(wire).toEqual(["native:0", "native:1", "native:2", "node:3", "node:4", "node:5"])
      // node:dgram still has them: the next datagrams queue behind them.
      sender.send(d(6))
      sender.flush()
      expect(wire.at(-1)).toBe("node:6")
      complete()
      sender.send(d(7))
      sender.flush()
      expect(wire.at(-1)).toBe("native:7")
      expect(errors).toEqual([])
    })

    it("another error loses that datagram only, counted; the rest are sent", () => {
      const { wire, sender, errors } = harness([2], [EPERM])
      for (let i = 0; i < 5; i++) sender.send(d(i))
      sender.flush()
      expect(wire).toEqual(["native:0", "native:1", "native:3", "native:4"])
      expect(errors).toEqual(["send EPERM 239.255.40.9:7409"])
    })

    it("send only queues; a microtask flushes what no one flushed; close flushes, later sends are errors", async () => {
      const { wire, sender, errors } = harness([], [])
      sender.send(d(1))
      sender.send(d(2))
      expect(wire).toEqual([])
      await Promise.resolve()
      expect(wire).toEqual(["native:1", "native:2"])
      // A send after a synchronous flush in the same tick still leaves by the microtask.
      sender.send(d(5))
      sender.flush()
      sender.send(d(6))
      expect(wire).toEqual(["native:1", "native:2", "native:5"])
      await Promise.resolve()
      expect(wire).toEqual(["native:1", "native:2", "native:5", "native:6"])
      sender.send(d(3))
      sender.close()
      expect(wire).toEqual(["native:1", "native:2", "native:5", "native:6", "native:3"])
      sender.send(d(4))
      expect(errors).toEqual(["send after close 239.255.40.9:7409"])
    })

    it("a route that refuses GSO (EIO): the same datagrams again without it, none lost, and no GSO after", () => {
      const { wire, sender, errors, gsoFlags } = harness([2], [os.constants.errno.EIO])
      for (let i = 0; i < 5; i++) sender.send(d(i))
      sender.flush()
      expect(wire).toEqual(["native:0", "native:1", "native:2", "native:3", "native:4"])
      sender.send(d(5))
      sender.flush()
      expect(wire.at(-1)).toBe("native:5")
      expect(gsoFlags).toEqual([true, false, false])
      expect(errors).toEqual([])
    })

    it("each call gets exactly the distinct buffers of its datagrams, and none stays referenced after it", () => {
      const { wire, sender, basesSeen, basesArrays } = harness([], [])
      const slab = new Uint8Array(64)
      const at = (i: number, offset: number) => {
        slab[offset] = i
        return slab.subarray(offset, offset + 8)
      }
      // Three datagrams in one buffer, one in another, two more in the first again.
      for (const dg of [at(1, 0), at(2, 8), at(3, 16), d(4), at(5, 24), at(6, 32)]) sender.send(dg)
      sender.flush()
      sender.send(d(7))
      sender.flush()
      expect(wire).toEqual(["native:1", "native:2", "native:3", "native:4", "native:5", "native:6", "native:7"])
      expect(basesSeen.map((b) => b.length)).toEqual([3, 1])
      expect(basesSeen[0][0]).toBe(slab.buffer)
      expect(basesSeen[0][2]).toBe(slab.buffer)
      for (const b of basesArrays) expect(b.every((x) => x === undefined)).toBe(true)
    })

    it("a queue bigger than the stage goes in several batches, in order", () => {
      const { wire, sender } = harness([], [])
      const big = (i: number) => new Uint8Array(60_000).fill(i)
      for (let i = 0; i < 10; i++) sender.send(big(i))
      sender.flush()
      expect(wire).toEqual(Array.from({ length: 10 }, (_, i) => `native:${i}`))
    })
  })
})
