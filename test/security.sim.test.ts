/**
 * A secured cluster on the deterministic simulator: NAK recovery still works through the envelope,
 * and a forger without the key — plaintext packets of every kind, envelopes under a wrong or
 * unknown key, tampered and replayed captures — has no effect at all: every receiver's deliveries,
 * losses and events, and the publisher's recovery work, are identical to the same seeded run
 * without it, and the drops show in the security counters.
 */
import { describe, expect, it } from "@effect/vitest"
import type { EngineStats } from "../src/internal/protocol/engine.js"
import type { Source } from "../src/internal/protocol/packets.js"
import {
  encodeAnnounce,
  encodeGoodbye,
  encodeHeartbeat,
  encodeLost,
  encodeNak,
  encodeReceiverName,
  encodeStatus,
  makeSourcePrefix,
  markFresh,
  PackedSegmentWriter,
  topicBytes
} from "../src/internal/protocol/wire.js"
import type { EngineSecurity } from "../src/internal/security/config.js"
import { SecureChannel } from "../src/internal/security/envelope.js"
import { checkInvariant, makeCluster, payloadFor } from "./engine.harness.js"

const KEY = new Uint8Array(32).fill(0x5c)
const WRONG = new Uint8Array(32).fill(0x5d)
const FRESHNESS_MS = 3000

const security = (key: Uint8Array, id = 1): EngineSecurity => ({
  mode: "encrypt",
  keys: [{ id, key }],
  freshnessMs: FRESHNESS_MS,
  context: "239.255.21.1:47121"
})

const SECURITY_COUNTERS = [
  "securityMismatch",
  "unknownKeyIds",
  "authFailures",
  "replaysDropped",
  "staleDropped"
] as const
type SecurityCounter = (typeof SECURITY_COUNTERS)[number]

interface Outcome {
  /** Per receiver: deliveries and losses in order, and session events. */
  readonly receivers: ReadonlyArray<{ readonly log: ReadonlyArray<string>; readonly events: ReadonlyArray<string> }>
  /** Recovery work on both sides. */
  readonly work: Record<string, number>
  readonly security: Record<SecurityCounter, number>
  readonly decodeErrors: number
  readonly forged: number
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")

const run = (seed: string, forger: boolean): Outcome => {
  const c = makeCluster({ seed, receivers: 3, config: { security: security(KEY) } })
  const { net, pub, receivers } = c
  // Loss only from the publisher: data and retransmissions need NAKs; the receivers' own NAKs and
  // Status reach everyone (so a replay of one is always a replay).
  for (const r of receivers) net.setLink(pub.node, r.node, { loss: 0.08 })
  const sender = pub.endpoint.openSender(net.now)
  const start = net.now + 5
  for (let i = 0; i < 200; i++) {
    net.schedule(start + i * 3, (now) => {
      const size = i % 25 === 0 ? 5000 + i * 10 : 20 + (i % 90)
      expect(pub.endpoint.publish(sender, `/t/${i % 4}`, payloadFor(i, size), now)).toBe("ok")
      pub.endpoint.endBatch(sender, now)
    })
  }
  const end = start + 200 * 3
  net.schedule(end + 2000, (now) => pub.endpoint.closeSender(sender, now))

  let forged = 0
  if (forger) {
    const captured: Array<{ readonly bytes: Uint8Array; readonly fromPub: boolean }> = []
    const node = net.addNode("forger", () => ({
      onDatagram: (bytes, address) => {
        captured.push({ bytes, fromPub: address === pub.node.address })
      },
      onTimer: () => {},
      nextDeadline: () => Number.POSITIVE_INFINITY
    }))
    // The forger knows every identity (in authenticate mode it could read them off the wire).
    const pubSource: Source = {
      sessionId: sender.session.sessionId,
      senderIndex: 0,
      host: sender.session.host,
      application: sender.session.application
    }
    const pubPrefix = makeSourcePrefix(pubSource)
    const impostor = makeSourcePrefix({ ...pubSource, sessionId: 0x0123456789abcdefn })
    const evil = makeSourcePrefix({ sessionId: 0x0badn, senderIndex: 0xffff, host: "evil", application: "evil" })
    const data = (prefix: typeof pubPrefix, seq: number, payload: string) => {
      const w = new PackedSegmentWriter(prefix, 1400)
      w.begin(seq)
      w.tryAppend(topicBytes("/t/0"), Buffer.from(payload))
      return w.finish()
    }
    const plaintexts = (k: number): Array<Uint8Array> => [
      data(pubPrefix, sender.highestSeq + 1, `forged ${k}`),
      data(pubPrefix, Math.max(1, sender.highestSeq - 3), `overwrite ${k}`),
      markFresh(data(impostor, 1, `impostor ${k}`)),
      markFresh(encodeAnnounce(impostor, 0, 0)),
      encodeHeartbeat(pubPrefix, sender.highestSeq + 1000, 1),
      encodeGoodbye(pubPrefix, sender.highestSeq),
      encodeLost(pubPrefix, [{ first: 1, last: sender.highestSeq + 5 }]),
      encodeNak(evil, sender.session.sessionId, [{ first: 1, last: Math.max(1, sender.highestSeq) }]),
      encodeStatus(evil, encodeReceiverName("evil"), false, 1 << 30, 1 << 20, [
        { target: sender.session.sessionId, position: 2 ** 40 }
      ])
    ]
    const wrongKey = new SecureChannel(security(WRONG), { ...zero() })
    const unknownId = new SecureChannel(security(KEY, 9), { ...zero() })
    const inject = (bytes: Uint8Array) => {
      forged++
      node.send(bytes)
    }
    for (let t = 1; t < end + 1500; t += 7) {
      net.schedule(t, (now) => {
        const k = Math.floor(t)
        for (const p of plaintexts(k)) {
          inject(p)
          inject(wrongKey.seal(p, now))
          inject(unknownId.seal(p, now))
        }
        // Captured envelopes: altered (any byte but the key id) and, from receivers, replayed at once.
        const recent = captured.slice(-6)
        for (const { bytes, fromPub } of recent) {
          const altered = Buffer.from(bytes)
          const at = 4 + (k % (altered.length - 4))
          altered[at] ^= 0x40
          inject(altered)
          if (!fromPub) inject(bytes)
        }
      })
    }
    // Later, everything captured again: stale by then.
    net.schedule(end + 2000 + FRESHNESS_MS + 500, () => {
      for (const { bytes } of captured) inject(bytes)
    })
  }
  net.runFor(end + 2000 + FRESHNESS_MS + 3000)

  const stats: Array<EngineStats> = [pub.endpoint.stats, ...receivers.map((r) => r.endpoint.stats)]
  const sum = (name: keyof EngineStats) => stats.reduce((a, s) => a + s[name], 0)
  for (const r of receivers) {
    const result = checkInvariant(pub.sink.updates, r.sink, sender.session.sessionId, sender.highestSeq)
    expect(result.delivered).toBe(200)
  }
  return {
    receivers: receivers.map((r) => ({
      log: r.sink.log.map((i) =>
        i.kind === "update"
          ? `${i.update.topic} ${i.update.sequence} ${hex(i.update.payload)}`
          : `loss ${i.loss.firstSeq}-${i.loss.lastSeq} ${i.loss.reason}`
      ),
      events: r.sink.events.map((e) => `${e._tag} ${"session" in e ? e.session.sessionIdHex : e.receiver.sessionIdHex}`)
    })),
    work: {
      retransmissionsSent: pub.endpoint.stats.retransmissionsSent,
      naksReceived: pub.endpoint.stats.naksReceived,
      lostPacketsSent: pub.endpoint.stats.lostPacketsSent,
      statusReceived: pub.endpoint.stats.statusReceived,
      naksSent: sum("naksSent"),
      duplicates: sum("duplicates"),
      updatesIn: sum("updatesIn"),
      datagramsOut: sum("datagramsOut"),
      receiversSeen: pub.endpoint.remoteReceiverStats().length
    },
    security: Object.fromEntries(SECURITY_COUNTERS.map((n) => [n, sum(n)])) as Record<SecurityCounter, number>,
    decodeErrors: sum("decodeErrors"),
    forged
  }
}

const zero = (): Record<SecurityCounter, number> =>
  Object.fromEntries(SECURITY_COUNTERS.map((n) => [n, 0])) as Record<SecurityCounter, number>

describe("security over the simulated network", () => {
  for (const seed of ["sec-1", "sec-2"]) {
    it(`${seed}: a secured cluster recovers loss with NAKs, and a forger without the key changes nothing`, () => {
      const clean = run(seed, false)
      expect(clean.work.retransmissionsSent).toBeGreaterThan(0)
      expect(clean.work.naksSent).toBeGreaterThan(0)
      expect(clean.security).toEqual(zero())
      expect(clean.decodeErrors).toBe(0)

      const attacked = run(seed, true)
      expect(attacked.forged).toBeGreaterThan(10_000)
      expect(attacked.receivers).toEqual(clean.receivers)
      expect(attacked.work).toEqual(clean.work)
      expect(attacked.decodeErrors).toBe(0)
      // Every kind of forgery was seen and dropped by its rule.
      for (const name of SECURITY_COUNTERS) expect(attacked.security[name], name).toBeGreaterThan(0)
    })
  }
})
