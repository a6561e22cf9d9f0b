import { describe, expect, it } from "@effect/vitest"
import { PacketKind } from "../src/internal/protocol/packets.js"
import {
  classifyDatagram,
  type DropContext,
  LinkModel,
  Prng,
  type SimEndpoint,
  SimNetwork,
  type SimNode,
  type SimTraceEvent
} from "../src/internal/sim/index.js"

/** A datagram with our header layout: magic "ED", version, kind (offset 3), flags (offset 4), then a u32 tag. */
const packet = (kind: number, tag = 0, flags = 0): Uint8Array => {
  const b = new Uint8Array(9)
  b[0] = 0x45
  b[1] = 0x44
  b[2] = 1
  b[3] = kind
  b[4] = flags
  new DataView(b.buffer).setUint32(5, tag)
  return b
}
const tagOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(5)

interface Received {
  readonly tag: number
  readonly from: string
  readonly at: number
}

/** Records every datagram; no timers. */
class Recorder implements SimEndpoint {
  readonly received: Array<Received> = []
  onDatagram(bytes: Uint8Array, address: string, now: number) {
    this.received.push({ tag: tagOf(bytes), from: address, at: now })
  }
  onTimer() {}
  nextDeadline() {
    return Number.POSITIVE_INFINITY
  }
}

/** Fires at a sorted list of deadlines and records when. */
class Alarm implements SimEndpoint {
  readonly fired: Array<number> = []
  constructor(private deadlines: Array<number>) {}
  add(t: number) {
    this.deadlines.push(t)
    this.deadlines.sort((a, b) => a - b)
  }
  onDatagram() {}
  onTimer(now: number) {
    while (this.deadlines.length > 0 && this.deadlines[0] <= now) {
      this.deadlines.shift()
      this.fired.push(now)
    }
  }
  nextDeadline() {
    return this.deadlines.length > 0 ? this.deadlines[0] : Number.POSITIVE_INFINITY
  }
}

const lossyLink = (seed: string, config: ConstructorParameters<typeof LinkModel>[0]) =>
  new LinkModel(config, new Prng(seed).fork("link"))

describe("Prng", () => {
  it("replays the same sequence for the same seed and differs for another", () => {
    const a = new Prng(42)
    const b = new Prng(42)
    const c = new Prng(43)
    const xs = Array.from({ length: 100 }, () => a.u32())
    expect(Array.from({ length: 100 }, () => b.u32())).toEqual(xs)
    expect(Array.from({ length: 100 }, () => c.u32())).not.toEqual(xs)
  })

  it("next() is in [0,1) with a mean near 1/2; int(n) covers [0,n) about evenly", () => {
    const p = new Prng("uniform")
    let sum = 0
    let outside = 0
    for (let i = 0; i < 100_000; i++) {
      const x = p.next()
      if (!(x >= 0 && x < 1)) outside++
      sum += x
    }
    expect(outside).toBe(0)
    expect(sum / 100_000).toBeCloseTo(0.5, 2)
    const counts = new Array(10).fill(0)
    for (let i = 0; i < 100_000; i++) counts[p.int(10)]++
    for (const n of counts) expect(Math.abs(n - 10_000)).toBeLessThan(500)
    expect(() => p.int(0)).toThrow(RangeError)
  })

  it("fork depends only on seed and label, not on consumption or fork order", () => {
    const a = new Prng(7)
    const b = new Prng(7)
    for (let i = 0; i < 1000; i++) b.next()
    b.fork("other")
    const fa = a.fork("x")
    const fb = b.fork("x")
    expect(Array.from({ length: 20 }, () => fa.u32())).toEqual(Array.from({ length: 20 }, () => fb.u32()))
    const fy = new Prng(7).fork("y")
    const fx = new Prng(7).fork("x")
    expect(fx.u32()).not.toBe(fy.u32())
    expect(new Prng(7).fork("x").fork("z").path).toBe("7/x/z")
  })

  it("bigint64 yields distinct unsigned 64-bit values", () => {
    const p = new Prng("ids")
    const ids = new Set<bigint>()
    let high = false
    for (let i = 0; i < 1000; i++) {
      const id = p.bigint64()
      expect(id >= 0n && id < 1n << 64n).toBe(true)
      if (id >= 1n << 63n) high = true
      ids.add(id)
    }
    expect(ids.size).toBe(1000)
    expect(high).toBe(true)
  })
})

describe("LinkModel", () => {
  it("classifies by the kind byte; garbage is control", () => {
    expect(classifyDatagram(packet(PacketKind.Data))).toBe("data")
    expect(classifyDatagram(packet(PacketKind.Nak))).toBe("control")
    expect(classifyDatagram(packet(PacketKind.Heartbeat))).toBe("control")
    expect(classifyDatagram(new Uint8Array([1, 2]))).toBe("control")
    const badMagic = packet(PacketKind.Data)
    badMagic[0] = 0
    expect(classifyDatagram(badMagic)).toBe("control")
  })

  it("drops close to the configured independent loss rate", () => {
    const link = lossyLink("loss", { loss: 0.1 })
    const n = 100_000
    let lost = 0
    for (let i = 0; i < n; i++) if (link.fate(packet(PacketKind.Data, i), 0).length === 0) lost++
    expect(lost / n).toBeGreaterThan(0.095)
    expect(lost / n).toBeLessThan(0.105)
    expect(link.stats).toMatchObject({ sent: n, dropped: lost, droppedByLoss: lost, data: { sent: n, dropped: lost } })
  })

  it("applies controlLoss to control packets and loss to data packets", () => {
    const link = lossyLink("ctl", { loss: 0.02, controlLoss: 0.3 })
    for (let i = 0; i < 50_000; i++) {
      link.fate(packet(PacketKind.Data, i), 0)
      link.fate(packet(PacketKind.Nak, i), 0)
    }
    const { data, control } = link.stats
    expect(data.sent).toBe(50_000)
    expect(control.sent).toBe(50_000)
    expect(data.dropped / data.sent).toBeGreaterThan(0.017)
    expect(data.dropped / data.sent).toBeLessThan(0.023)
    expect(control.dropped / control.sent).toBeGreaterThan(0.29)
    expect(control.dropped / control.sent).toBeLessThan(0.31)
    // Without controlLoss, control packets use `loss`.
    link.configure({ controlLoss: undefined, loss: 0 })
    for (let i = 0; i < 1000; i++) expect(link.fate(packet(PacketKind.Heartbeat), 0)).toHaveLength(1)
  })

  it("burst loss produces runs whose mean length is about 1/exit", () => {
    const n = 200_000
    const runs = (link: LinkModel) => {
      const lengths: Array<number> = []
      let run = 0
      for (let i = 0; i < n; i++) {
        if (link.fate(packet(PacketKind.Data, i), 0).length === 0) run++
        else if (run > 0) {
          lengths.push(run)
          run = 0
        }
      }
      return lengths
    }
    const burst = lossyLink("burst", { burst: { enter: 0.01, exit: 0.2, lossInBurst: 1 } })
    const bursty = runs(burst)
    const meanBurst = bursty.reduce((a, b) => a + b, 0) / bursty.length
    expect(meanBurst).toBeGreaterThan(4.5)
    expect(meanBurst).toBeLessThan(5.5)
    // Stationary loss rate enter/(enter+exit) ≈ 4.8 %.
    const rate = burst.stats.dropped / n
    expect(rate).toBeGreaterThan(0.04)
    expect(rate).toBeLessThan(0.056)
    expect(burst.stats.droppedByBurst).toBe(burst.stats.dropped)
    expect(burst.stats.burstsEntered).toBeGreaterThan(500)
    // Independent loss of the same average rate gives runs of about 1.05.
    const indep = runs(lossyLink("burst", { loss: rate }))
    expect(indep.reduce((a, b) => a + b, 0) / indep.length).toBeLessThan(1.1)
  })

  it("duplicates and reorders at the configured rates, with the configured delays", () => {
    const link = lossyLink("dup", { duplicate: 0.05, reorder: 0.1, reorderDelayMs: 20, delayMs: 3, jitterMs: 0 })
    const n = 50_000
    let twice = 0
    let late = 0
    const other: Array<ReadonlyArray<number>> = []
    for (let i = 0; i < n; i++) {
      const d = link.fate(packet(PacketKind.Data, i), 0)
      if (d.length === 2) twice++
      if (d[0] === 23) late++
      if (d.length === 0 || d.length > 2 || (d[0] !== 3 && d[0] !== 23) || (d.length === 2 && d[1] !== 3)) other.push(d)
    }
    expect(other).toEqual([])
    expect(link.stats.duplicated).toBe(twice)
    expect(link.stats.reordered).toBe(late)
    expect(twice / n).toBeGreaterThan(0.045)
    expect(twice / n).toBeLessThan(0.055)
    expect(late / n).toBeGreaterThan(0.095)
    expect(late / n).toBeLessThan(0.105)
  })

  it("jitter stays within [delay, delay + jitter)", () => {
    const link = lossyLink("jit", { delayMs: 5, jitterMs: 2 })
    let min = Number.POSITIVE_INFINITY
    let max = 0
    for (let i = 0; i < 10_000; i++) {
      const [d] = link.fate(packet(PacketKind.Data), 0)
      min = Math.min(min, d)
      max = Math.max(max, d)
    }
    expect(min).toBeGreaterThanOrEqual(5)
    expect(max).toBeLessThan(7)
    expect(max - min).toBeGreaterThan(1.9)
  })

  it("the drop predicate targets the 3rd data packet, every NAK, or retransmissions", () => {
    const seen: Array<DropContext> = []
    const third = lossyLink("p", { drop: (_b, ctx) => ctx.class === "data" && ctx.classIndex === 3 })
    const fates = [
      third.fate(packet(PacketKind.Data, 1), 0),
      third.fate(packet(PacketKind.Heartbeat, 2), 0),
      third.fate(packet(PacketKind.Data, 3), 0),
      third.fate(packet(PacketKind.Data, 4), 0),
      third.fate(packet(PacketKind.Data, 5), 0)
    ].map((d) => d.length)
    expect(fates).toEqual([1, 1, 1, 0, 1])
    expect(third.stats.droppedByPredicate).toBe(1)

    const naks = lossyLink("p", {
      drop: (_b, ctx) => {
        seen.push(ctx)
        return ctx.packetKind === PacketKind.Nak
      }
    })
    expect(naks.fate(packet(PacketKind.Nak), 7)).toEqual([])
    expect(naks.fate(packet(PacketKind.Nak), 8)).toEqual([])
    expect(naks.fate(packet(PacketKind.Lost), 9)).toHaveLength(1)
    expect(seen.map((c) => [c.now, c.index, c.classIndex, c.class])).toEqual([
      [7, 1, 1, "control"],
      [8, 2, 2, "control"],
      [9, 3, 3, "control"]
    ])

    const rtx = lossyLink("p", { drop: (_b, ctx) => ctx.retransmission })
    expect(rtx.fate(packet(PacketKind.Data, 1, 0x01), 0)).toEqual([])
    expect(rtx.fate(packet(PacketKind.Data, 1, 0x00), 0)).toHaveLength(1)
    expect(rtx.fate(packet(PacketKind.Nak, 1, 0x01), 0)).toHaveLength(1)
    rtx.configure({ drop: undefined })
    expect(rtx.fate(packet(PacketKind.Data, 1, 0x01), 0)).toHaveLength(1)
  })

  it("the loss pattern does not shift when duplication or a predicate is turned on", () => {
    const lost = (config: ConstructorParameters<typeof LinkModel>[0]) => {
      const link = lossyLink("stable", config)
      const out: Array<number> = []
      for (let i = 0; i < 5000; i++) {
        const d = link.fate(packet(PacketKind.Data, i), 0)
        if (d.length === 0 && link.stats.droppedByPredicate === 0) out.push(i)
      }
      return out
    }
    const base = lost({ loss: 0.05 })
    expect(base.length).toBeGreaterThan(150)
    expect(lost({ loss: 0.05, duplicate: 0.5, reorder: 0.5, jitterMs: 3 })).toEqual(base)
  })

  it("rejects out-of-range config", () => {
    expect(() => lossyLink("x", { loss: 1.5 })).toThrow(RangeError)
    expect(() => lossyLink("x", { delayMs: -1 })).toThrow(RangeError)
    expect(() => lossyLink("x", { burst: { enter: 0.1, exit: 2, lossInBurst: 1 } })).toThrow(RangeError)
  })
})

describe("SimNetwork", () => {
  /** Three nodes; a and b each send `count` datagrams, one per ms; returns the full trace. */
  const scenario = (seed: number) => {
    const trace: Array<SimTraceEvent> = []
    const net = new SimNetwork({
      seed,
      defaultLink: { loss: 0.1, duplicate: 0.05, reorder: 0.05, jitterMs: 2 },
      onTrace: (e) => trace.push(e)
    })
    const rec = { a: new Recorder(), b: new Recorder(), c: new Recorder() }
    const a = net.addNode("a", rec.a)
    const b = net.addNode("b", rec.b)
    net.addNode("c", rec.c)
    for (let i = 0; i < 500; i++) {
      net.schedule(i, () => a.send(packet(PacketKind.Data, i)))
      net.schedule(i + 0.5, () => b.send(packet(PacketKind.Heartbeat, 10_000 + i)))
    }
    net.run()
    return { trace, rec, net }
  }

  it("replays an identical delivery trace for a seed, and a different one for another seed", () => {
    const one = scenario(1)
    const again = scenario(1)
    const other = scenario(2)
    expect(again.trace).toEqual(one.trace)
    expect(again.rec.c.received).toEqual(one.rec.c.received)
    expect(other.trace).not.toEqual(one.trace)
    expect(one.trace.filter((e) => e.type === "deliver").length).toBe(one.net.stats.delivered)
    expect(one.net.stats.droppedByLink).toBeGreaterThan(0)
    expect(one.net.stats.duplicated).toBeGreaterThan(0)
    expect(one.net.stats.reordered).toBeGreaterThan(0)
  })

  it("never delivers a node's datagrams to itself; the source address is the sender's", () => {
    const { rec, net } = scenario(3)
    const [a, b, c] = net.nodes
    expect(rec.a.received.every((r) => r.tag >= 10_000 && r.from === b.address)).toBe(true)
    expect(rec.b.received.every((r) => r.tag < 10_000 && r.from === a.address)).toBe(true)
    expect(new Set(rec.c.received.map((r) => r.from))).toEqual(new Set([a.address, b.address]))
    expect(c.stats.sent).toBe(0)
    expect(net.stats.sends).toBe(1000)
    // offered = 2 destinations per send
    expect(net.stats.offered).toBe(2000)
    expect(net.stats.offered - net.stats.droppedByLink + net.stats.duplicated).toBe(net.stats.delivered)
    expect(net.stats.data.offered).toBe(1000)
    expect(net.stats.control.offered).toBe(1000)
    expect(net.linkStats("a", "b").delivered).toBe(rec.b.received.length)
  })

  it("adding a node does not change another link's fault pattern", () => {
    const lossPattern = (extraNode: boolean) => {
      const net = new SimNetwork({ seed: 9, defaultLink: { loss: 0.2 } })
      const rb = new Recorder()
      const a = net.addNode("a", new Recorder())
      if (extraNode) net.addNode("z", new Recorder())
      net.addNode("b", rb)
      for (let i = 0; i < 2000; i++) a.send(packet(PacketKind.Data, i))
      net.run()
      return rb.received.map((r) => r.tag)
    }
    const without = lossPattern(false)
    expect(without.length).toBeGreaterThan(1500)
    expect(without.length).toBeLessThan(1700)
    expect(lossPattern(true)).toEqual(without)
  })

  it("applies per-link loss separately for data and control", () => {
    const net = new SimNetwork({ seed: 5 })
    const a = net.addNode("a", new Recorder())
    net.addNode("b", new Recorder())
    net.addNode("c", new Recorder())
    net.setLink("a", "b", { loss: 0.05, controlLoss: 0.5 })
    for (let i = 0; i < 20_000; i++) {
      a.send(packet(PacketKind.Data, i))
      a.send(packet(PacketKind.Nak, i))
    }
    net.run()
    const ab = net.linkStats("a", "b")
    expect(ab.data.dropped / ab.data.sent).toBeGreaterThan(0.04)
    expect(ab.data.dropped / ab.data.sent).toBeLessThan(0.06)
    expect(ab.control.dropped / ab.control.sent).toBeGreaterThan(0.48)
    expect(ab.control.dropped / ab.control.sent).toBeLessThan(0.52)
    expect(net.linkStats("a", "c").dropped).toBe(0)
    expect(net.linkStats("b", "a").sent).toBe(0)
    expect(net.stats.data.dropped).toBe(ab.data.dropped)
    expect(net.stats.control.dropped).toBe(ab.control.dropped)
  })

  it("delivers after delayMs; a send inside a callback is scheduled, not re-entered", () => {
    const net = new SimNetwork({ seed: 1, defaultLink: { delayMs: 0 } })
    const log: Array<string> = []
    let depth = 0
    const pingPong =
      (name: string) =>
      (node: SimNode): SimEndpoint => ({
        onDatagram: (bytes, _from, now) => {
          depth++
          expect(depth).toBe(1)
          const n = tagOf(bytes)
          log.push(`${name}:${n}@${now}`)
          if (n < 5) node.send(packet(PacketKind.Data, n + 1))
          log.push(`${name}:${n}:end`)
          depth--
        },
        onTimer: () => {},
        nextDeadline: () => Number.POSITIVE_INFINITY
      })
    const a = net.addNode("a", pingPong("a"))
    net.addNode("b", pingPong("b"))
    a.send(packet(PacketKind.Data, 0))
    const r = net.run()
    expect(r.reason).toBe("empty")
    expect(log).toEqual([
      "b:0@0",
      "b:0:end",
      "a:1@0",
      "a:1:end",
      "b:2@0",
      "b:2:end",
      "a:3@0",
      "a:3:end",
      "b:4@0",
      "b:4:end",
      "a:5@0",
      "a:5:end"
    ])
    // The datagram is copied at send time: reusing the sender's buffer does not change what arrives.
    const reused = packet(PacketKind.Data, 42)
    const got: Array<number> = []
    const d = net.addNode("d", {
      onDatagram: (bytes) => got.push(tagOf(bytes)),
      onTimer: () => {},
      nextDeadline: () => Number.POSITIVE_INFINITY
    })
    net.removeNode("b")
    a.send(reused)
    reused[8] = 0
    net.run()
    expect(got).toEqual([42])
    net.removeNode(d)
    net.setLinkAll({ delayMs: 7 })
    const rec = new Recorder()
    net.addNode("c", rec)
    net.schedule(100, () => a.send(packet(PacketKind.Data, 99)))
    net.run()
    expect(rec.received).toEqual([{ tag: 99, from: a.address, at: 107 }])
  })

  it("fires timers at nextDeadline, in time order across nodes, and re-arms after deadlines change", () => {
    const net = new SimNetwork({ seed: 1 })
    const x = new Alarm([10, 30, 30, 50])
    const y = new Alarm([20, 40])
    const order: Array<string> = []
    const wrap = (name: string, alarm: Alarm): SimEndpoint => ({
      onDatagram: () => {},
      onTimer: (now) => {
        order.push(`${name}@${now}`)
        alarm.onTimer(now)
      },
      nextDeadline: () => alarm.nextDeadline()
    })
    net.addNode("x", wrap("x", x))
    net.addNode("y", wrap("y", y))
    // A deadline added by a test action is picked up (actions refresh every node's timer).
    net.schedule(25, () => y.add(26))
    const r = net.run({ until: 45 })
    expect(r.reason).toBe("until")
    expect(net.now).toBe(45)
    expect(order).toEqual(["x@10", "y@20", "y@26", "x@30", "y@40"])
    expect(x.fired).toEqual([10, 30, 30])
    net.runFor(100)
    expect(x.fired).toEqual([10, 30, 30, 50])
    expect(net.now).toBe(145)
    expect(net.stats.timerCallbacks).toBe(6)
  })

  it("a deadline set while handling a datagram fires at that deadline", () => {
    const net = new SimNetwork({ seed: 1, defaultLink: { delayMs: 2 } })
    const alarm = new Alarm([])
    const fired: Array<number> = []
    const a = net.addNode("a", new Recorder())
    net.addNode("b", {
      onDatagram: (_b, _f, now) => alarm.add(now + 5),
      onTimer: (now) => {
        fired.push(now)
        alarm.onTimer(now)
      },
      nextDeadline: () => alarm.nextDeadline()
    })
    net.schedule(10, () => a.send(packet(PacketKind.Nak)))
    net.schedule(11, () => a.send(packet(PacketKind.Nak)))
    net.run()
    expect(fired).toEqual([17, 18])
    expect(net.now).toBe(18)
  })

  it("a deadline moved later does not call onTimer early", () => {
    const net = new SimNetwork({ seed: 1 })
    let deadline = 10
    const calls: Array<number> = []
    net.addNode("n", {
      onDatagram: () => {},
      onTimer: (now) => {
        calls.push(now)
        deadline = Number.POSITIVE_INFINITY
      },
      nextDeadline: () => deadline
    })
    net.schedule(5, () => {
      deadline = 50
    })
    net.run({ until: 49 })
    expect(calls).toEqual([])
    deadline = Number.POSITIVE_INFINITY
    net.schedule(55, () => {
      deadline = 60
    })
    net.run({ until: 100 })
    expect(calls).toEqual([60])
  })

  it("throws on an endpoint whose deadline never advances", () => {
    const net = new SimNetwork({ seed: 1, timerSpinLimit: 100 })
    net.addNode("stuck", { onDatagram: () => {}, onTimer: () => {}, nextDeadline: () => 5 })
    expect(() => net.run({ until: 10 })).toThrow(/keeps asking for a timer/)
  })

  it("isolate stops sending and receiving (also in flight); heal restores; timers keep firing", () => {
    const net = new SimNetwork({ seed: 1, defaultLink: { delayMs: 10 } })
    const ra = new Recorder()
    const rb = new Recorder()
    const alarm = new Alarm([15])
    const a = net.addNode("a", ra)
    const b = net.addNode("b", rb)
    net.addNode("t", alarm)
    b.send(packet(PacketKind.Data, 1)) // in flight to a, arrives at 10
    a.send(packet(PacketKind.Data, 2)) // in flight to b, arrives at 10
    net.schedule(5, () => {
      net.isolate(a)
      net.isolate("t")
    })
    net.schedule(6, () => a.send(packet(PacketKind.Data, 3))) // discarded
    net.schedule(7, () => b.send(packet(PacketKind.Data, 4))) // a is isolated: dropped
    net.schedule(30, () => {
      net.heal(a)
      net.heal("t")
    })
    net.schedule(31, () => a.send(packet(PacketKind.Data, 5)))
    net.schedule(32, () => b.send(packet(PacketKind.Data, 6)))
    net.run()
    expect(ra.received.map((r) => r.tag)).toEqual([6])
    expect(rb.received.map((r) => r.tag)).toEqual([2, 5])
    expect(alarm.fired).toEqual([15])
    expect(net.stats.sendsDiscarded).toBe(1)
    expect(a.isolated).toBe(false)
  })

  it("removeNode stops callbacks; the name can be re-added and keeps its links", () => {
    const net = new SimNetwork({ seed: 1 })
    const rb = new Recorder()
    const alarm = new Alarm([5])
    const a = net.addNode("a", new Recorder())
    net.addNode("b", rb)
    net.addNode("t", alarm)
    net.setLink("a", "b", { delayMs: 3 })
    a.send(packet(PacketKind.Data, 1))
    net.removeNode("b")
    net.removeNode("t")
    net.run()
    expect(rb.received).toEqual([])
    expect(alarm.fired).toEqual([])
    expect(net.nodes.map((n) => n.name)).toEqual(["a"])
    const rb2 = new Recorder()
    const b2 = net.addNode("b", rb2)
    expect(b2.id).not.toBe(3)
    a.send(packet(PacketKind.Data, 2))
    net.run()
    expect(rb2.received).toEqual([{ tag: 2, from: a.address, at: net.now }])
    expect(net.link("a", "b").config.delayMs).toBe(3)
  })

  it("run stops at idle, on stopWhen and at maxEvents", () => {
    const net = new SimNetwork({ seed: 1 })
    const rb = new Recorder()
    const a = net.addNode("a", new Recorder())
    net.addNode("b", rb)
    net.addNode("t", new Alarm([1000]))
    for (let i = 0; i < 10; i++) a.send(packet(PacketKind.Data, i))
    // 10 datagrams × 2 receivers; the timer at 1000 does not keep an idle run going.
    expect(net.run({ idle: true })).toEqual({ events: 20, reason: "idle" })
    expect(net.now).toBe(1)
    for (let i = 0; i < 10; i++) a.send(packet(PacketKind.Data, i))
    expect(net.run({ stopWhen: () => rb.received.length >= 15 })).toEqual({ events: 9, reason: "stopped" })
    expect(net.run({ maxEvents: 2 })).toEqual({ events: 2, reason: "maxEvents" })
    expect(net.run()).toEqual({ events: 10, reason: "empty" })
    expect(net.now).toBe(1000)
  })

  it("moves hundreds of thousands of datagrams, each accounted for", () => {
    const net = new SimNetwork({ seed: 1, defaultLink: { loss: 0.01, jitterMs: 1 } })
    const recs = [new Recorder(), new Recorder(), new Recorder(), new Recorder()]
    const nodes = recs.map((r, i) => net.addNode(`n${i}`, r))
    const bytes = packet(PacketKind.Data, 1)
    let t = 0
    const tick = () => {
      for (let i = 0; i < 100; i++) nodes[0].send(bytes)
      if (++t < 1000) net.after(1, tick)
    }
    net.schedule(0, tick)
    net.run()
    expect(net.stats.sends).toBe(100_000)
    expect(net.stats.offered).toBe(300_000)
    expect(net.stats.delivered).toBe(300_000 - net.stats.droppedByLink)
  })
})
