/**
 * A mixed group on the seeded simulator: pycast nodes (the model in pycast.model.ts) and our
 * endpoints in the pycast dialect, with loss, in both directions; plus what pycast cannot do (no
 * Lost answers) and what our engine does about it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Endpoint } from "../src/internal/protocol/endpoint.js"
import type { EngineConfig } from "../src/internal/protocol/engine.js"
import { PycastType } from "../src/internal/protocol/pycast.js"
import { type LinkConfig, SimNetwork } from "../src/internal/sim/index.js"
import { payloadFor, type Recorder, recorder, testConfig } from "./engine.harness.js"
import { PycastModel } from "./pycast.model.js"

const pycastConfig = (host: string, overrides: Partial<EngineConfig> = {}): EngineConfig =>
  testConfig({
    application: "test",
    segmentSize: 8192,
    flowControl: "none",
    heartbeatIntervalMs: 1000,
    pycast: { group: "224.10.11.12", port: 5656, hostAddress: host },
    ...overrides
  })

/** pycast's UPDATE and RETRANSMISSION segments are data; the rest control. */
const classify: LinkConfig["classify"] = (b) =>
  b.length > 2 && (b[2] === PycastType.Update || b[2] === PycastType.Retransmission) ? "data" : "control"

const LOSSY: Partial<LinkConfig> = { loss: 0.05, controlLoss: 0.05, reorder: 0.02, reorderDelayMs: 3, classify }
const PERFECT: Partial<LinkConfig> = { loss: 0, controlLoss: 0, reorder: 0, drop: undefined, classify }

interface Ours {
  readonly endpoint: Endpoint
  readonly sink: Recorder
}

const addOurs = (net: SimNetwork, name: string, host: string, overrides: Partial<EngineConfig> = {}): Ours => {
  let ours: Ours | undefined
  net.addNode(name, (node) => {
    const sink = recorder(node.send)
    // No newSessionId: the pycast dialect draws pycast-form ids (start time, sender id).
    const endpoint = new Endpoint({
      config: pycastConfig(host, overrides),
      sink,
      random: () => node.prng.next(),
      now: net.now,
      wallClock: () => 1_765_000_000_000 + net.now
    })
    ours = { endpoint, sink }
    return endpoint
  })
  return ours!
}

const addModel = (
  net: SimNetwork,
  name: string,
  host: string,
  senderId: number,
  publisher = true,
  startTime = 1_765_000_000
): PycastModel => {
  let model: PycastModel | undefined
  net.addNode(name, (node) => {
    model = new PycastModel({ host, senderId, startTime }, node.send, net.now, "test", publisher)
    return model
  })
  return model!
}

/** A mix of small and large (multi-segment) updates. */
const workload = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    topic: `/test/${i % 4}`,
    payload: payloadFor(i, i % 10 === 3 ? 8000 + ((i * 7919) % 30_000) : 10 + ((i * 31) % 500))
  }))

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

describe("pycast dialect in a mixed group (simulator)", () => {
  it("pycast publishers reach our receivers through loss, large updates included; their answers to every request are harmless", () => {
    const net = new SimNetwork({ seed: "pycast-to-ours", defaultLink: { classify } })
    const a = addModel(net, "pycast-a", "10.0.0.1", 61234)
    const b = addModel(net, "pycast-b", "10.0.0.2", 61234)
    const ours = [addOurs(net, "ours-1", "10.0.0.3"), addOurs(net, "ours-2", "10.0.0.4")]
    const updates = workload(160)
    // A lossless start (pycast carries no mark that tells a receiver it heard a session from its
    // first segment), then loss on every link.
    net.schedule(1, (now) => {
      a.publish(updates[0].topic, updates[0].payload, now)
      b.publish(updates[0].topic, updates[0].payload, now)
    })
    net.runFor(20)
    net.setLinkAll(LOSSY)
    for (let i = 1; i < updates.length; i++) {
      net.schedule(net.now + i * 5, (now) => {
        a.publish(updates[i].topic, updates[i].payload, now)
        if (i % 2 === 0) b.publish(updates[i].topic, updates[i].payload, now)
      })
    }
    net.runFor(updates.length * 5 + 100)
    net.setLinkAll(PERFECT)
    net.runFor(5000) // a heartbeat (3 s) reveals any lost tail

    const fromB = updates.filter((_, i) => i % 2 === 0)
    expect(a.requestsHeard.length).toBeGreaterThan(0)
    for (const o of ours) {
      expect(o.sink.losses).toEqual([])
      const byHost = (host: string) => o.sink.updates.filter((u) => u.source.host === host)
      expect(byHost("10.0.0.1").map((u) => hex(u.payload))).toEqual(updates.map((u) => hex(u.payload)))
      expect(byHost("10.0.0.2").map((u) => hex(u.payload))).toEqual(fromB.map((u) => hex(u.payload)))
      expect(byHost("10.0.0.1")[0].source.application).toBe("test")
      expect(o.endpoint.stats.retransmissionsReceived).toBeGreaterThan(0)
      expect(o.endpoint.stats.decodeErrors).toBe(0)
    }
    // pycast answers requests meant for the other publisher too: both sent more than was asked of them.
    expect(a.retransmissionsSent.length + b.retransmissionsSent.length).toBeGreaterThan(0)
  })

  it("our publisher reaches a pycast subscriber and our receiver through loss, in pycast's layout", () => {
    const net = new SimNetwork({ seed: "ours-to-pycast", defaultLink: { classify } })
    const pub = addOurs(net, "ours-pub", "10.0.0.1")
    const sub = addModel(net, "pycast-sub", "10.0.0.2", 61234, false)
    const ours = addOurs(net, "ours-sub", "10.0.0.3")
    const sender = pub.endpoint.openSender(net.now)
    const updates = workload(160)
    net.schedule(1, (now) => {
      pub.endpoint.publish(sender, updates[0].topic, updates[0].payload, now)
      pub.endpoint.endBatch(sender, now)
    })
    net.runFor(20)
    net.setLinkAll(LOSSY)
    for (let i = 1; i < updates.length; i++) {
      net.schedule(net.now + i * 5, (now) => {
        pub.endpoint.publish(sender, updates[i].topic, updates[i].payload, now)
        pub.endpoint.endBatch(sender, now)
      })
    }
    net.runFor(updates.length * 5 + 100)
    net.setLinkAll(PERFECT)
    net.runFor(3000)

    expect(sub.requestsSent.length).toBeGreaterThan(0)
    expect(sub.gaveUp).toBe(0)
    expect(sub.delivered.map((u) => hex(u.payload))).toEqual(updates.map((u) => hex(u.payload)))
    expect(sub.delivered.map((u) => u.topic)).toEqual(updates.map((u) => u.topic))
    expect(ours.sink.losses).toEqual([])
    expect(ours.sink.updates.map((u) => hex(u.payload))).toEqual(updates.map((u) => hex(u.payload)))
    expect(pub.endpoint.stats.retransmissionsSent).toBeGreaterThan(0)
    // No native packet ever left: no Status, Goodbye or Lost in this dialect.
    expect(pub.endpoint.stats.statusSent + ours.endpoint.stats.statusSent).toBe(0)
  })

  it("a pycast session that starts while our receiver listens is repaired from its first segment (its start time stands in for the fresh mark)", () => {
    const net = new SimNetwork({ seed: "pycast-fresh", defaultLink: { classify } })
    const ours = addOurs(net, "ours", "10.0.0.2") // wall clock 1 765 000 000 s at t = 0
    net.runFor(5000)
    // Its first three segments (a large update and a small one) never reach us.
    net.setLinkAll({
      classify,
      drop: (b, ctx) => ctx.class === "data" && b[2] === PycastType.Update && Buffer.from(b).readUInt32BE(20) <= 3
    })
    const model = addModel(net, "pycast", "10.0.0.1", 61234, true, 1_765_000_005)
    const updates = [
      { topic: "/test/a", payload: payloadFor(1, 12_000) },
      { topic: "/test/b", payload: payloadFor(2, 40) },
      { topic: "/test/c", payload: payloadFor(3, 50) }
    ]
    updates.forEach((u, i) => {
      net.schedule(net.now + 1 + i, (now) => model.publish(u.topic, u.payload, now))
    })
    net.runFor(2000)
    expect(model.requestsHeard.length).toBeGreaterThan(0)
    expect(ours.sink.losses).toEqual([])
    expect(ours.sink.updates.map((u) => hex(u.payload))).toEqual(updates.map((u) => hex(u.payload)))
  })

  it("a segment evicted from our publisher's cache cannot be reported (pycast has no Lost): receivers give up after their retries", () => {
    const net = new SimNetwork({ seed: "pycast-evicted", defaultLink: { classify } })
    const pub = addOurs(net, "ours-pub", "10.0.0.1", { cacheMaxBytes: 20_000 })
    const r = addOurs(net, "ours-sub", "10.0.0.2")
    const sender = pub.endpoint.openSender(net.now)
    net.runFor(5)
    // Lose the first transmission of segment 3 on its way to the receiver.
    net.setLink("ours-pub", "ours-sub", {
      drop: (b, ctx) => ctx.class === "data" && b[2] === PycastType.Update && Buffer.from(b).readUInt32BE(20) === 3
    })
    net.schedule(net.now, (now) => {
      // One burst of 20 near-full segments: segment 3 is evicted before any request can arrive.
      for (let i = 0; i < 20; i++) pub.endpoint.publish(sender, "/test/big", payloadFor(i, 7000), now)
      pub.endpoint.endBatch(sender, now)
    })
    net.runFor(3000)
    expect(pub.endpoint.stats.naksReceived).toBeGreaterThan(0)
    expect(pub.endpoint.stats.lostPacketsSent).toBe(0)
    expect(r.sink.losses.map((l) => [l.firstSeq, l.lastSeq, l.reason])).toEqual([[3, 3, "RetriesExhausted"]])
    expect(r.sink.updates.length).toBe(19)
  })
})
