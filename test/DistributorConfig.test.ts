import { hostname } from "node:os"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import fc from "fast-check"
import {
  ConnectionConfig,
  checkEnvironment,
  connectionConfig,
  connectionConfigFromJson,
  DistributorConfig,
  decodeConnectionConfig,
  decodeDistributorConfig,
  distributorConfig,
  distributorConfigFromJson,
  envVarName,
  loadConnectionConfig,
  loadDistributorConfig,
  toEngineConfig,
  WebConsoleConfig
} from "../src/DistributorConfig.js"
import type { InvalidConfig } from "../src/DistributorError.js"

const MiB = 1024 * 1024

/** Runs a decode and returns its failure (the test fails if it succeeded). */
const failure = <A>(effect: Effect.Effect<A, InvalidConfig>): InvalidConfig => {
  const result = Effect.runSync(Effect.either(effect))
  if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
  return result.left
}

const succeed = <A, E>(effect: Effect.Effect<A, E>): A => Effect.runSync(effect)

const env = (vars: Record<string, string>) => ConfigProvider.fromMap(new Map(Object.entries(vars)))

const withEnv = <A, E>(effect: Effect.Effect<A, E>, vars: Record<string, string>) =>
  Effect.runSync(Effect.either(Effect.withConfigProvider(effect, env(vars))))

describe("defaults", () => {
  it("DistributorConfig fills every field", () => {
    const config = new DistributorConfig()
    expect(config.application).toBe("effect-distributor")
    expect(config.host).toBe(hostname())
    expect(config.console).toBeInstanceOf(WebConsoleConfig)
    expect({ ...config.console }).toEqual({ enabled: true, host: "127.0.0.1", port: 8888, allowedHosts: [] })
  })

  it("ConnectionConfig fills every field around the given ones", () => {
    const config = new ConnectionConfig({ group: "239.1.2.3", port: 6000 })
    expect({ ...config }).toEqual({
      group: "239.1.2.3",
      port: 6000,
      interface: "0.0.0.0",
      ttl: 1,
      loopback: true,
      recvBufferSize: 4 * MiB,
      sendBufferSize: MiB,
      segmentSize: 1400,
      maxUpdateSize: 64 * MiB,
      holdbackDelayMs: 2,
      holdbackThreshold: 2000,
      heartbeatIntervalMs: 1000,
      senderTimeoutMs: 10_000,
      nakBackoffMs: 10,
      nakRetryIntervalMs: 100,
      nakMaxRetries: 10,
      retransmitHoldoffMs: 10,
      cacheMaxBytes: 16 * MiB,
      cacheMaxAgeMs: 60_000,
      maxBandwidth: 0,
      reorderBufferSegments: 16_384,
      subscriberBufferSize: 65_536,
      name: "",
      flowControl: "min",
      receiverWindowBytes: 3 * MiB,
      statusIntervalMs: 100,
      receiverTimeoutMs: 2000,
      maxRemoteSessions: 1024,
      retransmitRateBytes: 4 * MiB,
      connectionBufferBytes: 256 * MiB,
      dialect: "native"
    })
    expect(config.key).toBe("239.1.2.3:6000")
    expect(new ConnectionConfig().key).toBe("239.192.0.1:5197")
  })

  it("decoding partial input fills defaults, including nested ones", () => {
    const d = succeed(decodeDistributorConfig({ console: { port: 0 } }))
    expect(d).toBeInstanceOf(DistributorConfig)
    expect({ ...d.console }).toEqual({ enabled: true, host: "127.0.0.1", port: 0, allowedHosts: [] })
    expect(d.application).toBe("effect-distributor")
    expect(succeed(decodeDistributorConfig({})).console.port).toBe(8888)
    const c = succeed(decodeConnectionConfig({ nakBackoffMs: 0, holdbackDelayMs: 0 }))
    expect(c).toBeInstanceOf(ConnectionConfig)
    expect(c.nakBackoffMs).toBe(0)
    expect(c.holdbackDelayMs).toBe(0)
    expect(c.segmentSize).toBe(1400)
  })

  it("the constructor validates too", () => {
    expect(() => new ConnectionConfig({ group: "10.0.0.1" })).toThrow(/not a multicast address/)
    expect(() => new ConnectionConfig({ heartbeatIntervalMs: 20_000 })).toThrow(/must exceed heartbeatIntervalMs/)
  })

  it("toEngineConfig takes identity from the distributor and the rest from the connection", () => {
    const d = new DistributorConfig({ application: "app", host: "box" })
    const c = new ConnectionConfig({ segmentSize: 8192, nakMaxRetries: 3, maxBandwidth: 1_000_000 })
    const e = toEngineConfig(d, c)
    expect(e.host).toBe("box")
    expect(e.application).toBe("app")
    expect(e.segmentSize).toBe(8192)
    expect(e.nakMaxRetries).toBe(3)
    expect(e.maxBandwidth).toBe(1_000_000)
    // Every engine field besides identity and the derived ones has a same-named connection field.
    const derived = ["host", "application", "receiverName", "receiverWindowBytes", "receiverWindowSegments"]
    for (const [key, value] of Object.entries(e)) {
      if (derived.includes(key)) continue
      expect(value).toBe((c as unknown as Record<string, unknown>)[key])
    }
    // sessionBufferBytes is absent unless set (the engine derives it from maxUpdateSize).
    expect(Object.keys(e)).toHaveLength(25)
    expect(toEngineConfig(d, new ConnectionConfig({ sessionBufferBytes: 4 * MiB })).sessionBufferBytes).toBe(4 * MiB)
    expect(e.receiverName).toBe(c.name)
    // A full receive window fits the socket buffer: at most 3/4 of it in bytes, and 1/2048 in segments.
    expect(e.receiverWindowBytes).toBe(3 * MiB)
    expect(e.receiverWindowSegments).toBe(2048)
    const small = toEngineConfig(d, new ConnectionConfig({ recvBufferSize: 256 * 1024, receiverWindowBytes: MiB }))
    expect(small.receiverWindowBytes).toBe(192 * 1024)
    expect(small.receiverWindowSegments).toBe(128)
    // What the kernel granted bounds it when less than requested (net.core.rmem_max), never more.
    const capped = toEngineConfig(d, c, 208 * 1024)
    expect(capped.receiverWindowBytes).toBe(156 * 1024)
    expect(capped.receiverWindowSegments).toBe(104)
    expect(toEngineConfig(d, c, 64 * MiB).receiverWindowBytes).toBe(3 * MiB)
    expect(toEngineConfig(d, c, 0).receiverWindowBytes).toBe(3 * MiB)
  })

  it("receiverTimeoutMs must leave room for 4 status intervals", () => {
    const error = failure(decodeConnectionConfig({ statusIntervalMs: 1000, receiverTimeoutMs: 3000 }))
    expect(error.reason).toBe("Inconsistent")
    expect(error.path).toBe("receiverTimeoutMs")
    expect(failure(decodeConnectionConfig({ flowControl: "fastest" })).path).toBe("flowControl")
    expect(succeed(decodeConnectionConfig({ flowControl: "none", name: "desk-7" })).name).toBe("desk-7")
  })

  it("controlPort: port + 1 by default (65534 next to 65535), or as set; pycast has one channel", () => {
    expect(succeed(decodeConnectionConfig({ port: 7000 })).effectiveControlPort).toBe(7001)
    expect(succeed(decodeConnectionConfig({ port: 65535 })).effectiveControlPort).toBe(65534)
    expect(succeed(decodeConnectionConfig({ port: 7000, controlPort: 9000 })).effectiveControlPort).toBe(9000)
    expect(succeed(decodeConnectionConfig({ port: 7000, controlPort: 7000 })).effectiveControlPort).toBe(7000)
    expect(failure(decodeConnectionConfig({ controlPort: 0 })).path).toBe("controlPort")
    const pycast = { dialect: "pycast", segmentSize: 8192, flowControl: "none", port: 7000 } as const
    expect(succeed(decodeConnectionConfig(pycast)).effectiveControlPort).toBe(7000)
    expect(succeed(decodeConnectionConfig({ ...pycast, controlPort: 7000 })).effectiveControlPort).toBe(7000)
    const split = failure(decodeConnectionConfig({ ...pycast, controlPort: 7001 }))
    expect(split.path).toBe("controlPort")
    expect(split.detail).toMatch(/no separate control channel/)
  })

  it("dialect pycast requires pycast's segment size and no flow control; its engine config names group and host", () => {
    const size = failure(decodeConnectionConfig({ dialect: "pycast", flowControl: "none" }))
    expect(size.reason).toBe("Inconsistent")
    expect(size.path).toBe("segmentSize")
    expect(size.detail).toMatch(/requires segmentSize 8192/)
    const flow = failure(decodeConnectionConfig({ dialect: "pycast", segmentSize: 8192 }))
    expect(flow.path).toBe("flowControl")
    expect(flow.detail).toMatch(/pycast receivers send no status/)
    const sealed = failure(
      decodeConnectionConfig({
        dialect: "pycast",
        segmentSize: 8192,
        flowControl: "none",
        security: { key: "ab".repeat(32) }
      })
    )
    expect(sealed.detail).toMatch(/cannot be combined with security/)
    expect(failure(decodeConnectionConfig({ dialect: "python" })).path).toBe("dialect")
    const c = succeed(
      decodeConnectionConfig({
        dialect: "pycast",
        segmentSize: 8192,
        flowControl: "none",
        group: "224.10.11.12",
        port: 5656,
        interface: "127.0.0.1"
      })
    )
    const e = toEngineConfig(new DistributorConfig(), c)
    expect(e.pycast).toEqual({ group: "224.10.11.12", port: 5656, hostAddress: "127.0.0.1" })
    expect(toEngineConfig(new DistributorConfig(), new ConnectionConfig()).pycast).toBeUndefined()
  })
})

describe("validation", () => {
  it.each([
    ["ff02::1", /IPv6 is not supported/],
    ["ff3e::8000:1", /IPv6 is not supported/],
    ["10.0.0.1", /not a multicast address.*224\.0\.0\.0\/4/],
    ["240.0.0.1", /not a multicast address/],
    ["223.255.255.255", /not a multicast address/],
    ["239.1.2", /Expected an IPv4 multicast address/],
    ["239.1.2.256", /Expected an IPv4 multicast address/],
    ["239.01.2.3", /Expected an IPv4 multicast address/],
    [" 239.1.2.3", /Expected an IPv4 multicast address/],
    ["multicast", /Expected an IPv4 multicast address/]
  ])("group %j is rejected", (group, message) => {
    const error = failure(decodeConnectionConfig({ group }))
    expect(error._tag).toBe("InvalidConfig")
    expect(error.reason).toBe("Decode")
    expect(error.path).toBe("group")
    expect(error.detail).toMatch(message)
  })

  it("every address in 224.0.0.0/4 is a valid group", () => {
    fc.assert(
      fc.property(fc.integer({ min: 224, max: 239 }), fc.nat(255), fc.nat(255), fc.nat(255), (a, b, c, d) => {
        const group = `${a}.${b}.${c}.${d}`
        expect(succeed(decodeConnectionConfig({ group })).group).toBe(group)
      }),
      { seed: 1, numRuns: 200 }
    )
  })

  it("interface must be a unicast dotted quad", () => {
    expect(succeed(decodeConnectionConfig({ interface: "192.168.1.20" })).interface).toBe("192.168.1.20")
    for (const bad of ["239.1.1.1", "255.255.255.255", "eth0", "::1", "1.2.3"]) {
      const error = failure(decodeConnectionConfig({ interface: bad }))
      expect(error.path).toBe("interface")
    }
  })

  it.each([0, -1, 65536, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "5197"])("port %p is rejected", (port) => {
    const error = failure(decodeConnectionConfig({ port }))
    expect(error.path).toBe("port")
    expect(error.reason).toBe("Decode")
  })

  it("port bounds are inclusive", () => {
    expect(succeed(decodeConnectionConfig({ port: 1 })).port).toBe(1)
    expect(succeed(decodeConnectionConfig({ port: 65535 })).port).toBe(65535)
  })

  it.each([
    ["recvBufferSize", -1],
    ["recvBufferSize", Number.NaN],
    ["sendBufferSize", 1.5],
    ["segmentSize", 511],
    ["segmentSize", 65001],
    ["maxUpdateSize", 0],
    ["maxUpdateSize", 1024 * MiB + 1],
    ["cacheMaxBytes", -16],
    ["cacheMaxBytes", Number.NaN],
    ["ttl", 256],
    ["holdbackDelayMs", 1001],
    ["holdbackDelayMs", -1],
    ["heartbeatIntervalMs", 0],
    ["nakMaxRetries", -1],
    ["maxBandwidth", -1],
    ["reorderBufferSegments", 0],
    ["subscriberBufferSize", 0],
    ["loopback", "yes"]
  ])("%s = %p is rejected", (field, value) => {
    const error = failure(decodeConnectionConfig({ [field]: value }))
    expect(error.path).toBe(field)
    expect(error.reason).toBe("Decode")
    expect(error.detail.length).toBeGreaterThan(0)
  })

  it("explains range failures", () => {
    expect(failure(decodeConnectionConfig({ segmentSize: 100 })).detail).toMatch(/between 512 and 65000/)
    expect(failure(decodeConnectionConfig({ recvBufferSize: 4.5 })).detail).toMatch(/integer/)
  })

  it("senderTimeoutMs must exceed heartbeatIntervalMs (cross-field, reason Inconsistent)", () => {
    for (const [senderTimeoutMs, heartbeatIntervalMs] of [
      [1000, 1000],
      [500, 1000]
    ]) {
      const error = failure(decodeConnectionConfig({ senderTimeoutMs, heartbeatIntervalMs }))
      expect(error.reason).toBe("Inconsistent")
      expect(error.path).toBe("senderTimeoutMs")
      expect(error.detail).toContain("heartbeatIntervalMs")
    }
    // Lowering only the timeout below the default heartbeat is caught too.
    expect(failure(decodeConnectionConfig({ senderTimeoutMs: 999 })).reason).toBe("Inconsistent")
    expect(succeed(decodeConnectionConfig({ senderTimeoutMs: 1001 })).senderTimeoutMs).toBe(1001)
  })

  it("a bad field wins over an inconsistency (reason Decode)", () => {
    const error = failure(decodeConnectionConfig({ senderTimeoutMs: 10, heartbeatIntervalMs: 100, port: -1 }))
    expect(error.reason).toBe("Decode")
    expect(error.path).toBe("port")
  })

  it("application: 1..64 characters, no control characters", () => {
    expect(succeed(decodeDistributorConfig({ application: "a".repeat(64) })).application).toHaveLength(64)
    expect(failure(decodeDistributorConfig({ application: "" })).path).toBe("application")
    expect(failure(decodeDistributorConfig({ application: "a".repeat(65) })).detail).toMatch(/at most 64/)
    expect(failure(decodeDistributorConfig({ application: "app\nx" })).detail).toMatch(/control characters/)
    expect(failure(decodeDistributorConfig({ application: 7 })).path).toBe("application")
  })

  it("host: non-empty, at most 255 UTF-8 bytes", () => {
    expect(failure(decodeDistributorConfig({ host: "" })).path).toBe("host")
    expect(failure(decodeDistributorConfig({ host: "é".repeat(128) })).detail).toMatch(/255 bytes/)
    expect(succeed(decodeDistributorConfig({ host: "h".repeat(255) })).host).toHaveLength(255)
  })

  it("nested errors name the nested field", () => {
    for (const port of [-1, 65536, 80.5]) {
      const error = failure(decodeDistributorConfig({ console: { port } }))
      expect(error.path).toBe("console.port")
      expect(error.reason).toBe("Decode")
    }
    expect(failure(decodeDistributorConfig({ console: { enabled: "yes" } })).path).toBe("console.enabled")
    expect(failure(decodeDistributorConfig({ console: { host: "" } })).path).toBe("console.host")
    expect(failure(decodeDistributorConfig({ console: 8888 })).path).toBe("console")
  })

  it("several issues: path names the first, detail lists them all", () => {
    const error = failure(decodeConnectionConfig({ group: "1.2.3.4", port: 0, ttl: 300 }))
    expect(error.path).toBe("group")
    expect(error.detail).toContain("group:")
    expect(error.detail).toContain("port:")
    expect(error.detail).toContain("ttl:")
  })

  it("non-object input fails at the root", () => {
    for (const input of [null, 42, "config", [1, 2]]) {
      const error = failure(decodeConnectionConfig(input))
      expect(error.path).toBe("")
      expect(error.reason).toBe("Decode")
    }
  })
})

describe("JSON", () => {
  it("decodes valid JSON with defaults", () => {
    const c = succeed(connectionConfigFromJson(`{"group":"239.10.0.1","port":7000,"nakBackoffMs":25}`))
    expect(c.key).toBe("239.10.0.1:7000")
    expect(c.nakBackoffMs).toBe(25)
    expect(c.ttl).toBe(1)
    const d = succeed(distributorConfigFromJson(`{"application":"ticker","console":{"enabled":false}}`))
    expect(d.application).toBe("ticker")
    expect(d.console.enabled).toBe(false)
    expect(d.console.port).toBe(8888)
  })

  it("round-trips a config through JSON.stringify", () => {
    const c = new ConnectionConfig({ group: "239.0.0.7", maxBandwidth: 12_345 })
    expect(succeed(connectionConfigFromJson(JSON.stringify(c)))).toEqual(c)
  })

  it('malformed JSON fails with path "" and reason Decode', () => {
    for (const text of ["{bad", "", '{"port": 1,}']) {
      const error = failure(connectionConfigFromJson(text))
      expect(error.path).toBe("")
      expect(error.reason).toBe("Decode")
      expect(error.detail).toMatch(/malformed JSON/)
    }
    expect(failure(distributorConfigFromJson("[")).path).toBe("")
  })

  it("valid JSON with a bad field names the field", () => {
    expect(failure(distributorConfigFromJson(`{"console":{"port":99999}}`)).path).toBe("console.port")
    expect(failure(connectionConfigFromJson(`{"group":"ff02::1"}`)).detail).toMatch(/IPv6 is not supported/)
  })
})

describe("console access settings", () => {
  const TOKEN = "abcdef0123456789-._~XYZ"
  it("token decodes to a Redacted value that never prints; allowedHosts to a list", () => {
    const d = succeed(
      decodeDistributorConfig({ console: { token: TOKEN, allowedHosts: ["a.example", "[::1]:9", "*"] } })
    )
    expect(d.console.token === undefined ? undefined : Redacted.value(d.console.token)).toBe(TOKEN)
    expect(String(d.console.token)).not.toContain(TOKEN)
    expect(JSON.stringify(d)).not.toContain(TOKEN)
    expect(d.console.allowedHosts).toEqual(["a.example", "[::1]:9", "*"])
    expect(new DistributorConfig().console.token).toBeUndefined()
  })

  it("a token must be 16..256 URL-safe characters; an allowed host a name, IP or [v6], with an optional port", () => {
    for (const token of [
      "short",
      "x".repeat(257),
      "has space 0123456789",
      "semi;colon0123456789",
      "plus+0123456789abc"
    ]) {
      expect(failure(decodeDistributorConfig({ console: { token } })).path).toBe("console.token")
    }
    for (const host of ["", "a b", "http://x", "evil.example/path", "::1"]) {
      expect(failure(decodeDistributorConfig({ console: { allowedHosts: [host] } })).path).toBe(
        "console.allowedHosts.0"
      )
    }
  })

  it("reads DISTRIBUTOR_CONSOLE_TOKEN and DISTRIBUTOR_CONSOLE_ALLOWED_HOSTS (comma-separated)", () => {
    const d = Either.getOrThrow(
      withEnv(loadDistributorConfig, {
        DISTRIBUTOR_CONSOLE_TOKEN: TOKEN,
        DISTRIBUTOR_CONSOLE_ALLOWED_HOSTS: " a.example, b.example:8080 ,,"
      })
    )
    expect(d.console.token === undefined ? undefined : Redacted.value(d.console.token)).toBe(TOKEN)
    expect(d.console.allowedHosts).toEqual(["a.example", "b.example:8080"])
    const bad = Either.flip(withEnv(loadDistributorConfig, { DISTRIBUTOR_CONSOLE_TOKEN: "short" })).pipe(
      Either.getOrThrow
    )
    expect(bad.path).toBe("DISTRIBUTOR_CONSOLE_TOKEN")
  })
})

describe("unknown fields", () => {
  it("decoding rejects a field the config does not have, naming it and suggesting the closest", () => {
    const typo = failure(decodeConnectionConfig({ group: "239.1.2.3", prot: 6000 }))
    expect(typo).toMatchObject({ _tag: "InvalidConfig", reason: "UnknownField", path: "prot" })
    expect(typo.detail).toBe('unknown field "prot" (did you mean "port"?)')
    const far = failure(decodeConnectionConfig({ colour: "blue" }))
    expect(far.detail).toBe('unknown field "colour"')
    const nested = failure(decodeDistributorConfig({ console: { enabled: true, hots: "0.0.0.0" } }))
    expect(nested).toMatchObject({ reason: "UnknownField", path: "console.hots" })
    expect(nested.detail).toContain('did you mean "host"?')
  })

  it("unknown fields are listed first, with the other problems after them", () => {
    const error = failure(decodeDistributorConfig({ aplication: "x", console: { port: "x" } }))
    expect(error.reason).toBe("UnknownField")
    expect(error.path).toBe("aplication")
    expect(error.detail).toMatch(
      /^aplication: unknown field "aplication" \(did you mean "application"\?\); console\.port: /
    )
  })

  it("JSON input is checked the same way", () => {
    const error = failure(connectionConfigFromJson(`{"port": 6000, "nakBackofMs": 5}`))
    expect(error).toMatchObject({ reason: "UnknownField", path: "nakBackofMs" })
    expect(error.detail).toContain('did you mean "nakBackoffMs"?')
    expect(failure(distributorConfigFromJson(`{"console":{"token2":"x"}}`)).path).toBe("console.token2")
  })

  it("the class constructors throw for an unknown field instead of dropping it", () => {
    const untyped = (u: unknown) => u as ConstructorParameters<typeof ConnectionConfig>[0]
    expect(() => new ConnectionConfig(untyped({ prot: 1 }))).toThrow(/unknown field "prot" \(did you mean "port"\?\)/)
    expect(
      () => new DistributorConfig({ consle: {} } as unknown as ConstructorParameters<typeof DistributorConfig>[0])
    ).toThrow(/unknown field "consle"/)
    expect(
      () => new WebConsoleConfig({ prt: 1 } as unknown as ConstructorParameters<typeof WebConsoleConfig>[0])
    ).toThrow(/unknown field "prt"/)
    // Known fields and no arguments still work.
    expect(new ConnectionConfig({ port: 6000 }).key).toBe("239.192.0.1:6000")
    expect(new DistributorConfig().console).toEqual(new WebConsoleConfig())
  })
})

describe("environment", () => {
  it("names variables as prefix + SCREAMING_SNAKE of the field", () => {
    expect(envVarName("DISTRIBUTOR_", ["nakBackoffMs"])).toBe("DISTRIBUTOR_NAK_BACKOFF_MS")
    expect(envVarName("DISTRIBUTOR_", ["console", "port"])).toBe("DISTRIBUTOR_CONSOLE_PORT")
    expect(envVarName("MARKET", ["recvBufferSize"])).toBe("MARKET_RECV_BUFFER_SIZE")
    expect(envVarName("", ["ttl"])).toBe("TTL")
  })

  it("no variables means all defaults", () => {
    const d = withEnv(distributorConfig, {})
    expect(Either.getOrThrow(d)).toEqual(new DistributorConfig())
    expect(Either.getOrThrow(withEnv(connectionConfig(), {}))).toEqual(new ConnectionConfig())
  })

  it("reads the distributor variables, nested ones joined with _", () => {
    const d = Either.getOrThrow(
      withEnv(distributorConfig, {
        DISTRIBUTOR_APPLICATION: "pricer",
        DISTRIBUTOR_HOST: "node-7",
        DISTRIBUTOR_CONSOLE_ENABLED: "false",
        DISTRIBUTOR_CONSOLE_HOST: "0.0.0.0",
        DISTRIBUTOR_CONSOLE_PORT: "9000"
      })
    )
    expect(d.application).toBe("pricer")
    expect(d.host).toBe("node-7")
    expect({ ...d.console }).toEqual({ enabled: false, host: "0.0.0.0", port: 9000, allowedHosts: [] })
  })

  it("reads the connection variables", () => {
    const c = Either.getOrThrow(
      withEnv(connectionConfig(), {
        DISTRIBUTOR_GROUP: "239.5.5.5",
        DISTRIBUTOR_PORT: "6001",
        DISTRIBUTOR_INTERFACE: "10.1.2.3",
        DISTRIBUTOR_LOOPBACK: "no",
        DISTRIBUTOR_NAK_BACKOFF_MS: "30",
        DISTRIBUTOR_RECV_BUFFER_SIZE: "8388608",
        DISTRIBUTOR_SUBSCRIBER_BUFFER_SIZE: " 1024 "
      })
    )
    expect(c.key).toBe("239.5.5.5:6001")
    expect(c.interface).toBe("10.1.2.3")
    expect(c.loopback).toBe(false)
    expect(c.nakBackoffMs).toBe(30)
    expect(c.recvBufferSize).toBe(8 * MiB)
    expect(c.subscriberBufferSize).toBe(1024)
    expect(c.ttl).toBe(1)
  })

  it("honours a custom prefix", () => {
    const vars = { MARKET_GROUP: "239.9.9.9", DISTRIBUTOR_GROUP: "239.1.1.1" }
    expect(Either.getOrThrow(withEnv(connectionConfig("MARKET"), vars)).group).toBe("239.9.9.9")
    expect(Either.getOrThrow(withEnv(connectionConfig("MARKET_"), vars)).group).toBe("239.9.9.9")
    expect(Either.getOrThrow(withEnv(loadConnectionConfig("MARKET"), vars)).group).toBe("239.9.9.9")
  })

  it("a bad value fails with a ConfigError naming the variable", () => {
    const syntax = withEnv(connectionConfig(), { DISTRIBUTOR_NAK_BACKOFF_MS: "ten" })
    expect(Either.isLeft(syntax)).toBe(true)
    expect(String(Either.flip(syntax).pipe(Either.getOrThrow))).toMatch(/DISTRIBUTOR_NAK_BACKOFF_MS.*integer/)

    const range = withEnv(distributorConfig, { DISTRIBUTOR_CONSOLE_PORT: "70000" })
    expect(String(Either.flip(range).pipe(Either.getOrThrow))).toMatch(/DISTRIBUTOR_CONSOLE_PORT.*between 0 and 65535/)

    const group = withEnv(connectionConfig(), { DISTRIBUTOR_GROUP: "ff02::1" })
    expect(String(Either.flip(group).pipe(Either.getOrThrow))).toMatch(/DISTRIBUTOR_GROUP.*IPv6 is not supported/)

    const bool = withEnv(distributorConfig, { DISTRIBUTOR_CONSOLE_ENABLED: "maybe" })
    expect(String(Either.flip(bool).pipe(Either.getOrThrow))).toMatch(/DISTRIBUTOR_CONSOLE_ENABLED/)
  })

  it("integers are parsed strictly", () => {
    for (const text of ["", "1.5", "0x10", "1e3", "12abc"]) {
      const error = Either.flip(withEnv(loadConnectionConfig(), { DISTRIBUTOR_TTL: text })).pipe(Either.getOrThrow)
      expect(error.path).toBe("DISTRIBUTOR_TTL")
      expect(error.reason).toBe("Decode")
    }
  })

  it("load* map failures to InvalidConfig with the variable as path", () => {
    const syntax = Either.flip(withEnv(loadConnectionConfig(), { DISTRIBUTOR_PORT: "abc" })).pipe(Either.getOrThrow)
    expect(syntax._tag).toBe("InvalidConfig")
    expect(syntax.path).toBe("DISTRIBUTOR_PORT")
    expect(syntax.detail).toMatch(/integer/)

    const nested = Either.flip(withEnv(loadDistributorConfig, { DISTRIBUTOR_CONSOLE_PORT: "-1" })).pipe(
      Either.getOrThrow
    )
    expect(nested.path).toBe("DISTRIBUTOR_CONSOLE_PORT")
    expect(nested.reason).toBe("Decode")

    const inconsistent = Either.flip(
      withEnv(loadConnectionConfig("M"), { M_HEARTBEAT_INTERVAL_MS: "5000", M_SENDER_TIMEOUT_MS: "4000" })
    ).pipe(Either.getOrThrow)
    expect(inconsistent.reason).toBe("Inconsistent")
    expect(inconsistent.path).toBe("M_SENDER_TIMEOUT_MS")

    const several = Either.flip(withEnv(loadConnectionConfig(), { DISTRIBUTOR_PORT: "x", DISTRIBUTOR_TTL: "y" })).pipe(
      Either.getOrThrow
    )
    expect(several.detail).toContain("DISTRIBUTOR_PORT")
    expect(several.detail).toContain("DISTRIBUTOR_TTL")
  })

  it("load* reject a variable with the prefix that is not read, suggesting the closest", () => {
    const typo = Either.flip(withEnv(loadConnectionConfig(), { DISTRIBUTOR_NAK_BACKOF_MS: "5" })).pipe(
      Either.getOrThrow
    )
    expect(typo).toMatchObject({ _tag: "InvalidConfig", reason: "UnknownField", path: "DISTRIBUTOR_NAK_BACKOF_MS" })
    expect(typo.detail).toContain('did you mean "DISTRIBUTOR_NAK_BACKOFF_MS"?')
    const nested = Either.flip(withEnv(loadDistributorConfig, { DISTRIBUTOR_CONSOLE_PROT: "1" })).pipe(
      Either.getOrThrow
    )
    expect(nested.path).toBe("DISTRIBUTOR_CONSOLE_PROT")
    expect(nested.detail).toContain('did you mean "DISTRIBUTOR_CONSOLE_PORT"?')
    const custom = Either.flip(withEnv(loadConnectionConfig("MARKET"), { MARKET_GRUOP: "239.1.1.1" })).pipe(
      Either.getOrThrow
    )
    expect(custom.path).toBe("MARKET_GRUOP")
    const several = Either.flip(withEnv(loadConnectionConfig(), { DISTRIBUTOR_B: "1", DISTRIBUTOR_A: "1" })).pipe(
      Either.getOrThrow
    )
    expect(several.path).toBe("DISTRIBUTOR_A")
    expect(several.detail).toContain("DISTRIBUTOR_B")
  })

  it("the default prefix is shared: distributor and connection variables are both known to both", () => {
    const vars = { DISTRIBUTOR_CONSOLE_PORT: "0", DISTRIBUTOR_PORT: "6001", OTHER_THING: "x", MARKET_X: "y" }
    expect(Either.getOrThrow(withEnv(loadDistributorConfig, vars)).console.port).toBe(0)
    expect(Either.getOrThrow(withEnv(loadConnectionConfig(), vars)).port).toBe(6001)
    // Another prefix knows only the connection variables; variables of other prefixes are ignored.
    const market = Either.flip(withEnv(loadConnectionConfig("MARKET"), { MARKET_CONSOLE_PORT: "1" })).pipe(
      Either.getOrThrow
    )
    expect(market.path).toBe("MARKET_CONSOLE_PORT")
    expect(Either.isRight(withEnv(loadConnectionConfig("MARKET"), { DISTRIBUTOR_BOGUS: "1" }))).toBe(true)
  })

  it("checkEnvironment runs the same check for users of the Config variants", () => {
    expect(Either.isRight(withEnv(checkEnvironment(), { DISTRIBUTOR_PORT: "1" }))).toBe(true)
    // The process-wide switch of the native addons is known too.
    expect(Either.isRight(withEnv(checkEnvironment(), { DISTRIBUTOR_NATIVE: "0" }))).toBe(true)
    expect(Either.isRight(withEnv(loadDistributorConfig, { DISTRIBUTOR_NATIVE: "0" }))).toBe(true)
    const error = Either.flip(withEnv(checkEnvironment("M"), { M_TTLL: "1" })).pipe(Either.getOrThrow)
    expect(error).toMatchObject({ reason: "UnknownField", path: "M_TTLL" })
    // An empty prefix would claim every variable: nothing is checked.
    expect(Either.isRight(withEnv(checkEnvironment(""), { HOME: "/root" }))).toBe(true)
  })

  it("enumerates the real process environment through ConfigProvider.fromEnv (names split at _)", () => {
    process.env.DISTRIBUTOR_CONSOLE_PORT = "9"
    process.env.DISTRIBUTOR_CONSOLE_PROT = "1"
    try {
      const provider = ConfigProvider.fromEnv()
      const result = Effect.runSync(Effect.either(Effect.withConfigProvider(loadDistributorConfig, provider)))
      expect(Either.flip(result).pipe(Either.getOrThrow).path).toBe("DISTRIBUTOR_CONSOLE_PROT")
      delete process.env.DISTRIBUTOR_CONSOLE_PROT
      expect(Effect.runSync(Effect.withConfigProvider(loadDistributorConfig, provider)).console.port).toBe(9)
    } finally {
      delete process.env.DISTRIBUTOR_CONSOLE_PORT
      delete process.env.DISTRIBUTOR_CONSOLE_PROT
    }
  })

  it.effect("works as a yieldable Config inside Effect.gen", () =>
    Effect.gen(function* () {
      const c = yield* connectionConfig()
      expect(c.port).toBe(6100)
    }).pipe(Effect.withConfigProvider(env({ DISTRIBUTOR_PORT: "6100" })))
  )
})
