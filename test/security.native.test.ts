/**
 * The optional native AES-GCM accelerator (native/, src/internal/security/gcm.ts) against
 * node:crypto: the same bytes on the wire, each opens the other's envelopes in both modes and
 * under both accepted keys, both reject and count the same forgeries; the addon is really used
 * when it was built, refuses bad arguments without crashing, and DISTRIBUTOR_NATIVE=0 turns it off.
 */
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { loadConnectionConfig } from "../src/DistributorConfig.js"
import type { EngineSecurity, SecurityMode } from "../src/internal/security/config.js"
import { ENVELOPE_HEADER_SIZE, SecureChannel } from "../src/internal/security/envelope.js"
import { ADDON_FILE, defaultGcm, type Gcm, gcmBackends, nodeGcm } from "../src/internal/security/gcm.js"
import { payloadFor } from "./engine.harness.js"
import { zeroStats } from "./fixtures/security.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const built = existsSync(join(root, "native/build"))
const forcedOff = process.env.DISTRIBUTOR_NATIVE === "0"
const native = gcmBackends().native

const OLD = { id: 1, key: new Uint8Array(32).fill(0x11) }
const NEW = { id: 2, key: new Uint8Array(32).fill(0x22) }

const channel = (gcm: Gcm, mode: SecurityMode, keys: EngineSecurity["keys"], prefix = 0) => {
  const stats = zeroStats()
  const security: EngineSecurity = { mode, keys, freshnessMs: 60_000, context: "239.255.21.9:47129" }
  // A fixed nonce prefix per channel, so two backends can be made to seal the same envelope.
  const ch = new SecureChannel(security, stats, (n) => Buffer.alloc(n, prefix), gcm)
  return { stats, ch }
}

describe("native AES-GCM accelerator", () => {
  it("is what secured channels use whenever native/build exists (no silent fallback)", () => {
    if (forcedOff) {
      expect(defaultGcm().name).toBe("node")
      expect(gcmBackends().reason).toBe("DISTRIBUTOR_NATIVE=0")
    } else if (built) {
      // A build that does not load, or loads but disagrees with node:crypto, fails here.
      expect(gcmBackends().reason).toBe(join(root, ADDON_FILE))
      expect(native?.name).toBe("native")
      expect(defaultGcm().name).toBe("native")
      expect(channel(defaultGcm(), "encrypt", [OLD]).ch.backend).toBe("native")
    } else {
      expect(defaultGcm().name).toBe("node")
    }
  })

  it("its variables are not unknown configuration variables", () => {
    const env = new Map([
      ["DISTRIBUTOR_NATIVE", "0"],
      ["DISTRIBUTOR_NATIVE_PATH", "/x.node"]
    ])
    const result = Effect.runSync(
      Effect.either(Effect.withConfigProvider(loadConnectionConfig(), ConfigProvider.fromMap(env)))
    )
    expect(Either.isRight(result)).toBe(true)
  })

  it("DISTRIBUTOR_NATIVE=0 forces node:crypto; an addon path that does not load falls back", () => {
    const backend = (env: Record<string, string>) =>
      execFileSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          `const m = await import("./src/internal/security/gcm.ts"); console.log(m.defaultGcm().name, "|", m.gcmBackends().reason)`
        ],
        { cwd: root, env: { ...process.env, ...env }, encoding: "utf8" }
      ).trim()
    expect(backend({ DISTRIBUTOR_NATIVE: "0" })).toBe("node | DISTRIBUTOR_NATIVE=0")
    expect(backend({ DISTRIBUTOR_NATIVE: "1", DISTRIBUTOR_NATIVE_PATH: "/nonexistent/distributor_gcm.node" })).toMatch(
      /^node \| \/nonexistent\/distributor_gcm\.node: /
    )
  })

  if (native === undefined) it.skip(`against node:crypto (addon not loaded: ${gcmBackends().reason})`, () => {})
  else
    describe("against node:crypto", () => {
      const nat = native
      const pairs: ReadonlyArray<readonly [Gcm, Gcm]> = [
        [nat, nodeGcm],
        [nodeGcm, nat]
      ]

      for (const mode of ["encrypt", "authenticate"] as const) {
        it(`${mode}: both backends seal the same bytes`, () => {
          const a = channel(nat, mode, [OLD], 7)
          const b = channel(nodeGcm, mode, [OLD], 7)
          for (const n of [1, 15, 16, 17, 64, 1024, 1360, 9000]) {
            const inner = payloadFor(n, n)
            const x = a.ch.seal(inner, 1_764_633_600_000 + n)
            const y = b.ch.seal(inner, 1_764_633_600_000 + n)
            expect(Buffer.from(x).equals(Buffer.from(y)), `${n} bytes`).toBe(true)
          }
        })

        for (const [tx, rx] of pairs) {
          it(`${mode}: sealed by ${tx.name}, opened by ${rx.name}, under both accepted keys (rotation)`, () => {
            const oldSender = channel(tx, mode, [OLD], 1)
            const newSender = channel(tx, mode, [NEW, OLD], 2)
            const receiver = channel(rx, mode, [OLD, NEW], 3)
            for (const [sender, id] of [
              [oldSender, 1],
              [newSender, 2]
            ] as const) {
              for (const n of [1, 100, 1024, 1360]) {
                const inner = payloadFor(id * n, n)
                const sealed = sender.ch.seal(inner, 1000)
                expect(sealed[3]).toBe(id)
                const opened = receiver.ch.open(sealed, 1000)
                expect(opened, `key ${id}, ${n} bytes`).toBeDefined()
                expect(Buffer.from(opened!).equals(Buffer.from(inner))).toBe(true)
              }
            }
            expect(receiver.stats).toEqual(zeroStats())
          })

          it(`${mode}: ${rx.name} rejects and counts ${tx.name}'s envelopes with a changed header, body or tag`, () => {
            const sender = channel(tx, mode, [NEW], 4)
            const receiver = channel(rx, mode, [OLD, NEW], 5)
            const inner = payloadFor(9, 1024)
            const sealed = sender.ch.seal(inner, 1000)
            const end = sealed.length - 16
            // Nonce, timestamp (header: AAD), first and last body byte, first and last tag byte.
            const spots = [4, 15, 16, 23, ENVELOPE_HEADER_SIZE, end - 1, end, sealed.length - 1]
            for (const i of spots) {
              const forged = Buffer.from(sealed)
              forged[i] ^= 0x40
              expect(receiver.ch.open(forged, 1000), `byte ${i}`).toBeUndefined()
            }
            // Under the other accepted key: the tag does not check out either.
            const other = Buffer.from(sealed)
            other[3] = 1
            expect(receiver.ch.open(other, 1000)).toBeUndefined()
            expect(receiver.stats).toEqual({ ...zeroStats(), authFailures: spots.length + 1 })
            // Nothing forged was recorded as seen: the genuine envelope opens, then is a replay
            // (arriving as its own copy, as from a socket: opening decrypts in place).
            const replay = Buffer.from(sealed)
            expect(Buffer.from(receiver.ch.open(sealed, 1000)!).equals(Buffer.from(inner))).toBe(true)
            expect(receiver.ch.open(replay, 1000)).toBeUndefined()
            expect(receiver.stats.replaysDropped).toBe(1)
          })
        }
      }

      it("the addon refuses wrong arguments with a status, never a crash or a write out of bounds", () => {
        const addon = createRequire(import.meta.url)(join(root, ADDON_FILE))
        expect(addon.newKey(new Uint8Array(16))).toBeUndefined()
        expect(addon.newKey("not bytes")).toBeUndefined()
        const key = addon.newKey(new Uint8Array(32).fill(3))
        const inner = new Uint8Array(100)
        expect(addon.sealEncrypt(key, new Uint8Array(24 + 100 + 15), inner)).toBe(-1)
        expect(addon.sealAuthenticate(key, new Uint8Array(24 + 100 + 17), inner)).toBe(-1)
        expect(addon.sealEncrypt({}, new Uint8Array(140), inner)).toBe(-1)
        expect(addon.sealEncrypt(key, new Uint8Array(140))).toBe(-1)
        const out = new Uint8Array(140)
        expect(addon.sealEncrypt(key, out, inner)).toBe(1)
        expect(addon.openEncrypt(key, out, new Uint8Array(99))).toBe(-1)
        expect(addon.openEncrypt(key, out.subarray(0, 40), new Uint8Array(0))).toBe(-1)
        expect(addon.openAuthenticate(key, 42)).toBe(-1)
        // Output overlapping the input: refused, except opening exactly in place (into the
        // ciphertext's own bytes, which is how the envelope opens).
        expect(addon.sealEncrypt(key, new Uint8Array(140), new Uint8Array(240).subarray(0, 100))).toBe(1)
        const shared = new Uint8Array(140)
        expect(addon.sealEncrypt(key, shared, shared.subarray(24, 124))).toBe(-1)
        expect(addon.openEncrypt(key, out, out.subarray(23, 123))).toBe(-1)
        expect(addon.openEncrypt(key, out, out.subarray(25, 125))).toBe(-1)
        const plain = new Uint8Array(100).fill(9)
        expect(addon.openEncrypt(key, out, plain)).toBe(1)
        expect(plain).toEqual(inner)
        const inPlace = out.slice()
        expect(addon.openEncrypt(key, inPlace, inPlace.subarray(24, 124))).toBe(1)
        expect(inPlace.subarray(24, 124)).toEqual(inner)
        out[50] ^= 1
        expect(addon.openEncrypt(key, out, plain)).toBe(0)
      })
    })
})
