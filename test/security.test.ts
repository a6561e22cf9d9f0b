/**
 * The datagram security layer (docs/PROTOCOL.md "Security"): the envelope, replay and freshness
 * rules, key rotation, nonce uniqueness, the endpoint's seal/open boundary and the configuration.
 * The envelope suite runs once per AES-GCM backend: node:crypto, and the native addon when it is
 * built (test/security.native.test.ts checks the two against each other).
 */
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import {
  ConnectionConfig,
  DistributorConfig,
  decodeConnectionConfig,
  loadConnectionConfig,
  SecurityConfig,
  toEngineConfig,
  toEngineSecurity
} from "../src/DistributorConfig.js"
import type { InvalidConfig } from "../src/DistributorError.js"
import { Endpoint } from "../src/internal/protocol/endpoint.js"
import { decode, isDecodeFailure } from "../src/internal/protocol/wire.js"
import type { EngineSecurity } from "../src/internal/security/config.js"
import {
  ENVELOPE_HEADER_SIZE,
  ENVELOPE_OVERHEAD,
  SecureChannel,
  type SecurityStats
} from "../src/internal/security/envelope.js"
import { type Gcm, gcmBackends, nodeGcm } from "../src/internal/security/gcm.js"
import { parseKey, passphraseKey } from "../src/internal/security/keys.js"
import { MAX_SENDERS, REPLAY_WINDOW, ReplayWindow } from "../src/internal/security/replay.js"
import { payloadFor, recorder, testConfig } from "./engine.harness.js"
import { zeroStats } from "./fixtures/security.js"

const KEY_A = new Uint8Array(32).fill(0xa1)
const KEY_B = new Uint8Array(32).fill(0xb2)
const HEX_A = Buffer.from(KEY_A).toString("hex")

const security = (overrides: Partial<EngineSecurity> = {}): EngineSecurity => ({
  mode: "encrypt",
  keys: [{ id: 1, key: KEY_A }],
  freshnessMs: 300_000,
  context: "239.255.21.1:47121",
  ...overrides
})

const total = (s: SecurityStats): number =>
  s.securityMismatch + s.unknownKeyIds + s.authFailures + s.replaysDropped + s.staleDropped

const backends: ReadonlyArray<Gcm> = [nodeGcm, ...(gcmBackends().native === undefined ? [] : [gcmBackends().native!])]

const inner = (n: number, seed = 7): Uint8Array => payloadFor(seed, n)

for (const gcm of backends)
  describe(`security envelope (${gcm.name})`, () => {
    const channel = (overrides: Partial<EngineSecurity> = {}) => {
      const stats = zeroStats()
      return { stats, ch: new SecureChannel(security(overrides), stats, undefined, gcm) }
    }

    for (const mode of ["encrypt", "authenticate"] as const) {
      it(`${mode}: round trip of datagrams of every size, ${ENVELOPE_OVERHEAD} bytes of overhead`, () => {
        const tx = channel({ mode })
        const rx = channel({ mode })
        for (const n of [1, 17, 64, 1000, 1360, 8192]) {
          const plain = inner(n, n)
          const sealed = tx.ch.seal(plain, 1000)
          expect(sealed.length).toBe(n + ENVELOPE_OVERHEAD)
          const body = Buffer.from(sealed.subarray(ENVELOPE_HEADER_SIZE, ENVELOPE_HEADER_SIZE + n))
          // Encrypt hides the datagram; authenticate leaves it readable on the wire. (Not asked of
          // the 1-byte datagram: its ciphertext equals it once in 256 nonces, and CI met that.)
          if (mode === "encrypt") {
            if (n >= 16) expect(body.equals(Buffer.from(plain))).toBe(false)
          } else expect(body.equals(Buffer.from(plain))).toBe(true)
          const opened = rx.ch.open(sealed, 1000)
          expect(opened).toBeDefined()
          expect(Buffer.from(opened!).equals(Buffer.from(plain))).toBe(true)
        }
        expect(total(rx.stats)).toBe(0)
      })

      it(`${mode}: a change to any byte is dropped and counted, never opened`, () => {
        const tx = channel({ mode })
        const rx = channel({ mode })
        const sealed = tx.ch.seal(inner(100), 1000)
        for (let i = 0; i < sealed.length; i++) {
          for (const flip of [0x01, 0x80]) {
            const forged = Buffer.from(sealed)
            forged[i] ^= flip
            const before = total(rx.stats)
            expect(rx.ch.open(forged, 1000)).toBeUndefined()
            expect(total(rx.stats)).toBe(before + 1)
          }
        }
        // Magic and version/mode: mismatch; key id: unknown (only id 1 is known); the rest fails the tag.
        expect(rx.stats.securityMismatch).toBe(6)
        expect(rx.stats.unknownKeyIds).toBe(2)
        expect(rx.stats.authFailures).toBe(2 * (sealed.length - 4))
        expect(rx.stats.replaysDropped + rx.stats.staleDropped).toBe(0)
        // Failed attempts consume nothing: the genuine datagram still opens, once (each arrival its
        // own copy, as from a socket: opening decrypts in place).
        expect(rx.ch.open(Buffer.from(sealed), 1000)).toBeDefined()
        expect(rx.ch.open(Buffer.from(sealed), 1000)).toBeUndefined()
        expect(rx.stats.replaysDropped).toBe(1)
      })
    }

    it("truncated, plaintext and other-mode datagrams are security mismatches", () => {
      const tx = channel()
      const rx = channel({ mode: "authenticate" })
      const sealed = tx.ch.seal(inner(50), 0)
      expect(rx.ch.open(sealed, 0)).toBeUndefined()
      expect(rx.ch.open(sealed.subarray(0, ENVELOPE_OVERHEAD), 0)).toBeUndefined()
      expect(rx.ch.open(new Uint8Array([0x45, 0x44, 1, 1, 0, 0, 0, 0]), 0)).toBeUndefined()
      expect(rx.stats.securityMismatch).toBe(3)
      expect(total(rx.stats)).toBe(3)
    })

    it("a wrong key fails authentication; an unknown key id is counted as such", () => {
      const tx = channel({ keys: [{ id: 1, key: KEY_B }] })
      const rx = channel()
      expect(rx.ch.open(tx.ch.seal(inner(64), 0), 0)).toBeUndefined()
      expect(rx.stats.authFailures).toBe(1)
      const other = channel({ keys: [{ id: 9, key: KEY_A }] })
      expect(rx.ch.open(other.ch.seal(inner(64), 0), 0)).toBeUndefined()
      expect(rx.stats.unknownKeyIds).toBe(1)
      expect(total(rx.stats)).toBe(2)
    })

    it("the same key on another connection (group:port) is another subkey", () => {
      const tx = channel({ context: "239.255.21.1:47122" })
      const rx = channel()
      expect(rx.ch.open(tx.ch.seal(inner(64), 0), 0)).toBeUndefined()
      expect(rx.stats.authFailures).toBe(1)
    })

    it("replays: a datagram opens once; reordering inside the window is fine; older than the window is dropped", () => {
      const tx = channel()
      const rx = channel()
      const sealed: Array<Uint8Array> = []
      // Each arrival its own copy, as from a socket (opening decrypts in place).
      const arrive = (d: Uint8Array) => Buffer.from(d)
      for (let i = 0; i < REPLAY_WINDOW + 10; i++) sealed.push(tx.ch.seal(inner(20, i), 5))
      expect(rx.ch.open(arrive(sealed[100]), 5)).toBeDefined()
      expect(rx.ch.open(arrive(sealed[100]), 5)).toBeUndefined()
      expect(rx.ch.open(arrive(sealed[50]), 5)).toBeDefined() // late but inside the window
      expect(rx.ch.open(arrive(sealed[50]), 5)).toBeUndefined()
      expect(rx.stats.replaysDropped).toBe(2)
      expect(rx.ch.open(arrive(sealed[REPLAY_WINDOW + 9]), 5)).toBeDefined()
      expect(rx.ch.open(arrive(sealed[9]), 5)).toBeUndefined() // exactly a window behind
      expect(rx.ch.open(arrive(sealed[10]), 5)).toBeDefined() // just inside
      expect(rx.stats.replaysDropped).toBe(3)
      expect(rx.stats.authFailures).toBe(0)
    })

    it("freshness: a datagram further than freshnessMs from the receiver's clock (either way) is stale", () => {
      const tx = channel({ freshnessMs: 1000 })
      const rx = channel({ freshnessMs: 1000 })
      expect(rx.ch.open(tx.ch.seal(inner(10), 10_000), 11_000)).toBeDefined()
      expect(rx.ch.open(tx.ch.seal(inner(10), 10_000), 11_001)).toBeUndefined()
      expect(rx.ch.open(tx.ch.seal(inner(10), 12_002), 11_001)).toBeUndefined()
      expect(rx.stats.staleDropped).toBe(2)
      // A stale datagram is not recorded as seen: the check comes before the replay window.
      const off = channel({ freshnessMs: 0 })
      expect(off.ch.open(tx.ch.seal(inner(10), 0), 10 * 86_400_000)).toBeDefined()
      expect(off.stats.staleDropped).toBe(0)
      // Timestamps beyond 32 bits of milliseconds (the epoch now) survive the round trip.
      const now = 1_764_633_600_000
      expect(rx.ch.open(tx.ch.seal(inner(10), now), now + 999)).toBeDefined()
    })

    it("rotation: a receiver accepts its key and the second key; senders seal with their primary", () => {
      const oldKey = { id: 1, key: KEY_A }
      const newKey = { id: 2, key: KEY_B }
      const oldSender = channel({ keys: [oldKey] })
      const switched = channel({ keys: [newKey, oldKey] })
      const rotating = channel({ keys: [oldKey, newKey] })
      expect(rotating.ch.open(oldSender.ch.seal(inner(30), 0), 0)).toBeDefined()
      expect(rotating.ch.open(switched.ch.seal(inner(30), 0), 0)).toBeDefined()
      expect(switched.ch.open(rotating.ch.seal(inner(30), 0), 0)).toBeDefined()
      const sealedNew = switched.ch.seal(inner(30), 0)
      expect(sealedNew[3]).toBe(2)
      // After the old key is retired, datagrams under it are unknown.
      const retired = channel({ keys: [newKey] })
      expect(retired.ch.open(oldSender.ch.seal(inner(30), 0), 0)).toBeUndefined()
      expect(retired.stats.unknownKeyIds).toBe(1)
      expect(retired.ch.open(sealedNew, 0)).toBeDefined()
    })

    it("nonces are unique: per channel across many seals, across channels with the same key, and past 2^32 seals", () => {
      const a = channel()
      const b = channel()
      const nonces = new Set<string>()
      for (let i = 0; i < 50_000; i++) {
        nonces.add(Buffer.from(a.ch.seal(inner(8), 0).subarray(4, 16)).toString("hex"))
        nonces.add(Buffer.from(b.ch.seal(inner(8), 0).subarray(4, 16)).toString("hex"))
      }
      expect(nonces.size).toBe(100_000)
      // The 32-bit counter's last value draws a new random prefix instead of wrapping.
      let draws = 0
      const c = new SecureChannel(security(), zeroStats(), (n) => Buffer.alloc(n, ++draws), gcm)
      ;(c as unknown as { counter: number }).counter = 0xffffffff
      const last = c.seal(inner(8), 0)
      const next = c.seal(inner(8), 0)
      expect(Buffer.from(last.subarray(4, 12)).equals(Buffer.alloc(8, 1))).toBe(true)
      expect(Buffer.from(last.subarray(12, 16)).toString("hex")).toBe("ffffffff")
      expect(Buffer.from(next.subarray(4, 12)).equals(Buffer.alloc(8, 2))).toBe(true)
      expect(Buffer.from(next.subarray(12, 16)).toString("hex")).toBe("00000000")
    })

    it("the replay table is bounded: least recently used senders are forgotten", () => {
      const w = new ReplayWindow()
      for (let s = 0; s < MAX_SENDERS + 500; s++) expect(w.accept(1, s, s * 7, 0)).toBe(true)
      expect(w.size).toBe(MAX_SENDERS)
      // The oldest senders were evicted (their counters are accepted again), the newest are remembered.
      expect(w.accept(1, MAX_SENDERS + 499, (MAX_SENDERS + 499) * 7, 0)).toBe(false)
      expect(w.accept(1, 0, 0, 0)).toBe(true)
      // Same prefix under another key id is another sender.
      expect(w.accept(2, 0, 0, 0)).toBe(true)
      expect(w.accept(2, 0, 0, 0)).toBe(false)
    })
  })

describe("security at the endpoint", () => {
  let ids = 0
  const open = (config = testConfig()) => {
    const sink = recorder()
    const endpoint = new Endpoint({ config, sink, random: () => 0.5, newSessionId: () => BigInt(++ids), now: 0 })
    return { sink, endpoint }
  }

  it("seals every packet kind within segmentSize, and a keyed peer decodes them all", () => {
    const cfg = testConfig({ security: security(), listening: true })
    const a = open(cfg)
    const b = open(cfg)
    const sender = a.endpoint.openSender(0)
    a.endpoint.publish(sender, "/big", payloadFor(1, 20_000), 0)
    a.endpoint.publish(sender, "/small", payloadFor(2, 10), 0)
    a.endpoint.endBatch(sender, 0)
    a.endpoint.onTimer(5000)
    a.endpoint.closeSender(sender, 5000)
    for (const d of a.sink.sent) b.endpoint.onDatagram(d, "a", 5000)
    expect(a.sink.sent.length).toBeGreaterThan(15)
    for (const d of a.sink.sent) {
      expect(d.length).toBeLessThanOrEqual(1400)
      expect(d[0]).toBe(0x45)
      expect(d[1]).toBe(0x53)
      expect(isDecodeFailure(decode(d))).toBe(true)
    }
    expect(a.sink.sent.some((d) => d.length === 1400)).toBe(true)
    expect(b.sink.updates.map((u) => u.topic)).toEqual(["/big", "/small"])
    expect(b.endpoint.stats.decodeErrors).toBe(0)
    // b answered with sealed Status reports.
    expect(b.sink.sent.length).toBeGreaterThan(0)
    for (const d of b.sink.sent) a.endpoint.onDatagram(d, "b", 5000)
    expect(a.endpoint.stats.statusReceived).toBe(b.sink.sent.length)
  })

  it("a peer with security and one without do not hear each other: both count, neither delivers", () => {
    const secured = open(testConfig({ security: security(), listening: true }))
    const plain = open(testConfig({ listening: true }))
    const s1 = secured.endpoint.openSender(0)
    secured.endpoint.publish(s1, "/x", payloadFor(1, 10), 0)
    secured.endpoint.endBatch(s1, 0)
    const s2 = plain.endpoint.openSender(0)
    plain.endpoint.publish(s2, "/y", payloadFor(2, 10), 0)
    plain.endpoint.endBatch(s2, 0)
    for (const d of secured.sink.sent) plain.endpoint.onDatagram(d, "s", 1)
    for (const d of plain.sink.sent) secured.endpoint.onDatagram(d, "p", 1)
    expect(secured.sink.updates.filter((u) => u.topic === "/y")).toEqual([])
    expect(plain.sink.updates.filter((u) => u.topic === "/x")).toEqual([])
    expect(plain.endpoint.stats.securityMismatch).toBe(secured.sink.sent.length)
    expect(secured.endpoint.stats.securityMismatch).toBe(plain.sink.sent.length)
    expect(plain.endpoint.stats.decodeErrors + secured.endpoint.stats.decodeErrors).toBe(0)
    expect(plain.sink.events).toEqual([])
    expect(secured.sink.events).toEqual([])
  })
})

describe("SecurityConfig", () => {
  const failure = <A>(effect: Effect.Effect<A, InvalidConfig>): InvalidConfig => {
    const result = Effect.runSync(Effect.either(effect))
    if (Either.isRight(result)) throw new Error("expected a failure")
    return result.left
  }
  const base64A = Buffer.from(KEY_A).toString("base64")

  it("accepts a hex or base64 key, redacts it, and resolves both to the same bytes", () => {
    const hex = Effect.runSync(decodeConnectionConfig({ security: { keyId: 3, key: HEX_A } }))
    const b64 = Effect.runSync(decodeConnectionConfig({ security: { keyId: 3, key: base64A } }))
    expect(hex.security?.mode).toBe("encrypt")
    expect(hex.security?.freshnessMs).toBe(300_000)
    expect(String(hex.security?.key)).not.toContain(HEX_A.slice(0, 8))
    const e = toEngineSecurity(hex.security!, hex.key)
    expect(e.keys).toEqual(toEngineSecurity(b64.security!, b64.key).keys)
    expect(Buffer.from(e.keys[0].key).equals(Buffer.from(KEY_A))).toBe(true)
    expect(e.context).toBe("239.192.0.1:5197")
    const engine = toEngineConfig(new DistributorConfig(), hex)
    expect(engine.security?.keys[0].id).toBe(3)
    expect(toEngineConfig(new DistributorConfig(), new ConnectionConfig()).security).toBeUndefined()
  })

  it("a passphrase goes through scrypt once (deterministic, 32 bytes); the accept key for rotation", () => {
    const c = new SecurityConfig({
      mode: "authenticate",
      keyId: 2,
      passphrase: Redacted.make("correct horse battery staple"),
      acceptKeyId: 1,
      acceptKey: Redacted.make(HEX_A)
    })
    const e = toEngineSecurity(c, "239.1.2.3:4000")
    expect(e.mode).toBe("authenticate")
    expect(e.keys.map((k) => k.id)).toEqual([2, 1])
    expect(Buffer.from(e.keys[0].key).equals(Buffer.from(passphraseKey("correct horse battery staple")))).toBe(true)
    expect(e.keys[0].key.length).toBe(32)
    expect(Buffer.from(e.keys[1].key).equals(Buffer.from(KEY_A))).toBe(true)
  })

  it("rejects bad keys and contradictory fields with a clear reason", () => {
    const cases: ReadonlyArray<readonly [unknown, string, RegExp]> = [
      [{ key: HEX_A.slice(2) }, "security.key", /256 bits|64 hex/],
      [{ key: `${HEX_A}00` }, "security.key", /exactly 64 hex digits/],
      [{ key: Buffer.alloc(16).toString("base64") }, "security.key", /got 16 bytes/],
      [{ key: "not a key!" }, "security.key", /64 hex digits or the base64/],
      [{ key: HEX_A, passphrase: "long enough phrase" }, "security.passphrase", /either key or passphrase/],
      [{}, "security.key", /needs a key/],
      [{ passphrase: "short" }, "security.passphrase", /8\.\.1024/],
      [{ key: HEX_A, acceptKey: HEX_A }, "security.acceptKeyId", /needs its acceptKeyId/],
      [{ key: HEX_A, acceptKeyId: 2 }, "security.acceptKey", /needs an acceptKey/],
      [{ key: HEX_A, keyId: 4, acceptKeyId: 4, acceptKey: HEX_A }, "security.acceptKeyId", /must differ/],
      [{ key: HEX_A, keyId: 256 }, "security.keyId", /./],
      [{ key: HEX_A, mode: "obfuscate" }, "security.mode", /./],
      [{ key: HEX_A, freshnessMs: -1 }, "security.freshnessMs", /./],
      [{ key: HEX_A, kye: 1 }, "security.kye", /unknown field/]
    ]
    for (const [input, path, detail] of cases) {
      const error = failure(decodeConnectionConfig({ security: input }))
      expect(error.path, JSON.stringify(input)).toBe(path)
      expect(error.detail, JSON.stringify(input)).toMatch(detail)
    }
    expect(() => parseKey("")).not.toThrow()
    expect(typeof parseKey("")).toBe("string")
  })

  it("reads DISTRIBUTOR_SECURITY_* variables, and reports a bad one by its name", () => {
    const withEnv = (vars: Record<string, string>) =>
      Effect.runSync(
        Effect.either(
          Effect.withConfigProvider(loadConnectionConfig(), ConfigProvider.fromMap(new Map(Object.entries(vars))))
        )
      )
    const ok = withEnv({
      DISTRIBUTOR_SECURITY_MODE: "authenticate",
      DISTRIBUTOR_SECURITY_KEY_ID: "7",
      DISTRIBUTOR_SECURITY_KEY: HEX_A,
      DISTRIBUTOR_SECURITY_ACCEPT_KEY_ID: "8",
      DISTRIBUTOR_SECURITY_ACCEPT_PASSPHRASE: "another long passphrase",
      DISTRIBUTOR_SECURITY_FRESHNESS_MS: "60000"
    })
    if (Either.isLeft(ok)) throw new Error(ok.left.detail)
    expect(ok.right.security?.mode).toBe("authenticate")
    expect(ok.right.security?.keyId).toBe(7)
    expect(ok.right.security?.acceptKeyId).toBe(8)
    expect(ok.right.security?.freshnessMs).toBe(60_000)
    expect(Redacted.value(ok.right.security!.key!)).toBe(HEX_A)
    expect(Either.getOrThrow(withEnv({})).security).toBeUndefined()
    const bad = withEnv({ DISTRIBUTOR_SECURITY_KEY: "abcd" })
    expect(Either.isLeft(bad) && bad.left.path).toBe("DISTRIBUTOR_SECURITY_KEY")
    const both = withEnv({ DISTRIBUTOR_SECURITY_KEY: HEX_A, DISTRIBUTOR_SECURITY_PASSPHRASE: "long enough phrase" })
    expect(Either.isLeft(both) && both.left.detail).toMatch(/either key or passphrase/)
    const typo = withEnv({ DISTRIBUTOR_SECURITY_KEYS: HEX_A })
    expect(Either.isLeft(typo) && typo.left.reason).toBe("UnknownField")
  })
})
