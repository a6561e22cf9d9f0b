/**
 * Datagram memory the engine says it did not keep (`onDatagram` returned false) may be overwritten
 * by the socket once the batch ended (`endReceiveBatch`): the native backend reads its next round
 * into it. Deterministic: the receivers here get datagrams in one scratch buffer, one per batch or
 * many, scribbled over whenever the engine released all of them, under loss, duplication and
 * reordering.
 */
import { describe, expect, it } from "@effect/vitest"
import { REMEMBERED_BYTES } from "../src/internal/protocol/endpoint.js"
import type { EngineConfig } from "../src/internal/protocol/engine.js"
import { Fragment, type Packet, PacketKind, type Source } from "../src/internal/protocol/packets.js"
import { decode, encodePacket } from "../src/internal/protocol/wire.js"
import { type LinkConfig, SimNetwork } from "../src/internal/sim/index.js"
import { addPeer, checkInvariant, endpointOn, type Peer, payloadFor, testConfig } from "./engine.harness.js"

interface ReusingPeer extends Peer {
  /** Datagrams the engine released (their memory was overwritten) / kept (a new scratch followed). */
  readonly counts: { released: number; kept: number }
}

/** A receiver whose socket reuses released memory, and scribbles over it to show any later use. */
const reusingPeer = (net: SimNetwork, name: string, config: EngineConfig): ReusingPeer => {
  let peer: Peer | undefined
  const counts = { released: 0, kept: 0 }
  let scratch = new Uint8Array(65_536)
  const node = net.addNode(name, (node) => {
    const { endpoint, sink } = endpointOn(net, node, config)
    peer = { node, endpoint, sink } as Peer
    return {
      onDatagram: (bytes: Uint8Array, address: string, now: number) => {
        const view = scratch.subarray(0, bytes.length)
        view.set(bytes)
        const released = endpoint.onDatagram(view, address, now) === false
        endpoint.endReceiveBatch()
        if (released) {
          counts.released++
          scratch.fill(0xa5)
        } else {
          counts.kept++
          scratch = new Uint8Array(65_536)
        }
      },
      onTimer: (now: number) => endpoint.onTimer(now),
      nextDeadline: () => endpoint.nextDeadline()
    }
  })
  return { ...peer!, node, counts }
}

/**
 * A receiver that reads like the native backend: up to `batch` datagrams (those that arrived within
 * a millisecond) back to back in one scratch buffer, one batch, then `endReceiveBatch`; the scratch
 * is scribbled over and read into again if the engine released every datagram of the batch.
 */
const batchingPeer = (net: SimNetwork, name: string, config: EngineConfig, batch: number): ReusingPeer => {
  let peer: Peer | undefined
  const counts = { released: 0, kept: 0 }
  let scratch = new Uint8Array(batch * 2048)
  let pending: Array<{ readonly bytes: Uint8Array; readonly address: string }> = []
  let flushAt = Number.POSITIVE_INFINITY
  const node = net.addNode(name, (node) => {
    const { endpoint, sink } = endpointOn(net, node, config)
    peer = { node, endpoint, sink } as Peer
    const flush = (now: number) => {
      const round = pending
      pending = []
      flushAt = Number.POSITIVE_INFINITY
      let at = 0
      let kept = false
      for (const { address, bytes } of round) {
        const view = scratch.subarray(at, at + bytes.length)
        view.set(bytes)
        at += bytes.length
        if (endpoint.onDatagram(view, address, now) !== false) kept = true
      }
      endpoint.endReceiveBatch()
      if (kept) {
        counts.kept++
        scratch = new Uint8Array(batch * 2048)
      } else {
        counts.released++
        scratch.fill(0xa5)
      }
    }
    return {
      onDatagram: (bytes: Uint8Array, address: string, now: number) => {
        pending.push({ bytes: Uint8Array.from(bytes), address })
        if (pending.length === batch) flush(now)
        else if (flushAt === Number.POSITIVE_INFINITY) flushAt = now + 1
      },
      onTimer: (now: number) => {
        if (now >= flushAt) flush(now)
        endpoint.onTimer(now)
      },
      nextDeadline: () => Math.min(flushAt, endpoint.nextDeadline())
    }
  })
  return { ...peer!, node, counts }
}

/** One publisher, one reusing receiver; `sizes[i]` is the payload length of update i (1 per ms). */
const run = (seed: string, link: Partial<LinkConfig>, sizes: ReadonlyArray<number>, batch = 1) => {
  const net = new SimNetwork({ seed, defaultLink: link })
  const config = testConfig()
  const pub = addPeer(net, "pub", config)
  const rx = batch === 1 ? reusingPeer(net, "rx", config) : batchingPeer(net, "rx", config, batch)
  const sender = pub.endpoint.openSender(net.now)
  sizes.forEach((size, i) => {
    net.schedule(10 + i, (now) => {
      expect(pub.endpoint.publish(sender, `/reuse/${i % 3}`, payloadFor(i, size), now)).toBe("ok")
      pub.endpoint.endBatch(sender, now)
    })
  })
  net.run({ until: 10 + sizes.length + 5000 })
  const sessionId = sender.session.sessionId
  const published = pub.sink.updates.filter((u) => u.source.sessionId === sessionId)
  return { net, pub, rx, sender, published, sessionId }
}

/** The fragment datagrams a peer sent, in order. */
const fragmentsSent = (peer: Peer): Array<Uint8Array> =>
  peer.sink.sent.filter((d) => {
    const p = decode(d)
    return "kind" in p && p.kind === PacketKind.Data && p.body.fragment !== Fragment.None
  })

describe("engine: datagram memory released to the socket", () => {
  it("large updates arrive byte-exact although every released datagram was overwritten at once", () => {
    const sizes = Array.from({ length: 300 }, (_, i) => (i % 5 === 0 ? 64 : 20_000 + ((i * 7919) % 150_000)))
    const { rx, sender, published, sessionId } = run(
      "reuse-large",
      { loss: 0.03, duplicate: 0.03, reorder: 0.05, reorderDelayMs: 3 },
      sizes
    )
    const result = checkInvariant(published, rx.sink, sessionId, sender.highestSeq)
    expect(result.delivered).toBe(published.length)
    expect(rx.sink.losses).toEqual([])
    // Duplicates (link copies, retransmissions) were compared with what was remembered: no
    // false content mismatch from memory that changed under the record.
    expect(rx.endpoint.stats.duplicates).toBeGreaterThan(100)
    expect(rx.endpoint.stats.conflicts).toBe(0)
    // In-order fragments were released; packed segments and fragments waiting behind a gap
    // (most of them here, at 3 % loss) were kept.
    expect(rx.counts.released).toBeGreaterThan(1000)
    expect(rx.counts.kept).toBeGreaterThan(1000)
  })

  it("a copy of a fragment with other bytes is still detected (ContentMismatch) after its memory was reused", () => {
    const sizes = Array.from({ length: 40 }, () => 30_000)
    const { net, pub, rx } = run("reuse-mismatch", {}, sizes)
    // The last fragment the publisher sent, one payload byte changed, from a forger on the group.
    const sent = fragmentsSent(pub)
    const forged = Uint8Array.from(sent[sent.length - 1])
    forged[forged.length - 1] ^= 0xff
    const forger = net.addNode("forger", { onDatagram: () => {}, onTimer: () => {}, nextDeadline: () => Infinity })
    // On a clean link every fragment arrives in order and is released.
    expect(rx.counts.released).toBeGreaterThanOrEqual(sent.length)
    forger.send(forged)
    net.run({ until: net.now + 100 })
    expect(rx.endpoint.stats.conflicts).toBe(1)
    // An unchanged copy is a plain duplicate.
    forger.send(Uint8Array.from(sent[sent.length - 2]))
    net.run({ until: net.now + 100 })
    expect(rx.endpoint.stats.conflicts).toBe(1)
  })

  it("batches of many datagrams in one buffer: what is still remembered at the batch's end is copied before the buffer is reused", () => {
    // 30 000 B updates are 22 fragments, one per ms: a batch (what arrived within a ms) holds an
    // update or two, and the link duplicates and delays, so duplicates arrive in later batches.
    const sizes = Array.from({ length: 200 }, () => 30_000)
    const { net, pub, rx, sender, published, sessionId } = run(
      "reuse-batches",
      { duplicate: 0.05, reorder: 0.005, reorderDelayMs: 3 },
      sizes,
      64
    )
    const result = checkInvariant(published, rx.sink, sessionId, sender.highestSeq)
    expect(result.delivered).toBe(published.length)
    expect(rx.sink.losses).toEqual([])
    // Released whole batches were overwritten: duplicates compared with copies, never with that.
    expect(rx.counts.released).toBeGreaterThan(20)
    expect(rx.endpoint.stats.duplicates).toBeGreaterThan(50)
    expect(rx.endpoint.stats.conflicts).toBe(0)
    // The session's last 16 fragments are remembered (copied at their batch's end), older ones not.
    const sent = fragmentsSent(pub)
    const forger = net.addNode("forger", { onDatagram: () => {}, onTimer: () => {}, nextDeadline: () => Infinity })
    const changed = (d: Uint8Array) => {
      const c = Uint8Array.from(d)
      c[c.length - 1] ^= 0xff
      return c
    }
    // Unchanged: plain duplicates (compared with the copies, not with the scribbled buffer).
    for (const d of sent.slice(-16)) forger.send(Uint8Array.from(d))
    net.run({ until: net.now + 100 })
    expect(rx.endpoint.stats.conflicts).toBe(0)
    forger.send(changed(sent[sent.length - 17]))
    net.run({ until: net.now + 100 })
    expect(rx.endpoint.stats.conflicts).toBe(0)
    forger.send(changed(sent[sent.length - 16]))
    net.run({ until: net.now + 100 })
    expect(rx.endpoint.stats.conflicts).toBe(1)
  })

  it("the copies stay within the connection's bound while far more than it streams through", () => {
    // ~12 MiB of fragments: the record's ring of REMEMBERED_BYTES wraps three times.
    const sizes = Array.from({ length: 200 }, () => 60_000)
    const { net, pub, rx } = run("reuse-bound", {}, sizes)
    expect(rx.sink.updates.length).toBe(200)
    expect(rx.endpoint.rememberedBytes).toBeLessThanOrEqual(REMEMBERED_BYTES)
    const last = fragmentsSent(pub)
    const forged = Uint8Array.from(last[last.length - 3])
    forged[forged.length - 10] ^= 1
    const forger = net.addNode("forger", { onDatagram: () => {}, onTimer: () => {}, nextDeadline: () => Infinity })
    forger.send(forged)
    net.run({ until: net.now + 100 })
    expect(rx.endpoint.stats.conflicts).toBe(1)
  })
})

describe("engine: the duplicate-content record's copies", () => {
  it("many sessions' fragments through the ring: an identical copy is never a mismatch, a changed one is", () => {
    const net = new SimNetwork({ seed: "reuse-ring", defaultLink: {} })
    const rx = reusingPeer(net, "rx", testConfig())
    const forger = net.addNode("forger", { onDatagram: () => {}, onTimer: () => {}, nextDeadline: () => Infinity })
    // 150 sessions × 16 fragments of ~2 400 B (5.8 MB, the ring is 4 MiB): each session remembers
    // all 16, the oldest sessions' copies are forgotten as the ring wraps.
    const sent: Array<Uint8Array> = []
    let copies = 0
    for (let k = 0; k < 150; k++) {
      const source: Source = { sessionId: BigInt(0x7000 + k), senderIndex: k, host: "many", application: "x" }
      net.schedule(10 + k, () => {
        for (let seq = 1; seq <= 16; seq++) {
          const chunk = payloadFor(k * 100 + seq, seq === 1 ? 2300 : 2350 + (k % 40))
          const packet: Packet = {
            kind: PacketKind.Data,
            source,
            retransmission: false,
            fresh: false,
            seq,
            body:
              seq === 1
                ? { fragment: Fragment.First, topic: "/m", totalLength: 1_000_000, chunk }
                : { fragment: Fragment.Middle, chunk }
          }
          const bytes = encodePacket(packet)
          sent.push(bytes)
          forger.send(bytes)
        }
        // Unchanged copies of the sessions whose copies are about to be forgotten (~110 sessions
        // fit in the ring): the oldest copies, where the next ones are written.
        for (const d of sent.slice(Math.max(0, (k - 120) * 16), Math.max(0, (k - 95) * 16))) {
          forger.send(Uint8Array.from(d))
          copies++
        }
      })
    }
    net.run({ until: 400 })
    expect(rx.endpoint.stats.sessionsRejected).toBe(0)
    expect(rx.counts.released).toBe(sent.length + copies)
    expect(rx.endpoint.stats.conflicts).toBe(0)
    expect(rx.endpoint.rememberedBytes).toBeLessThanOrEqual(REMEMBERED_BYTES)
    // Every datagram again, unchanged: duplicates, compared with the copies still remembered.
    for (const d of sent) forger.send(Uint8Array.from(d))
    net.run({ until: 500 })
    expect(rx.endpoint.stats.duplicates).toBe(sent.length + copies)
    expect(rx.endpoint.stats.conflicts).toBe(0)
    // The newest session's last fragment with one byte changed is noticed.
    const changed = Uint8Array.from(sent[sent.length - 1])
    changed[changed.length - 1] ^= 1
    forger.send(changed)
    net.run({ until: 600 })
    expect(rx.endpoint.stats.conflicts).toBe(1)
  })
})
