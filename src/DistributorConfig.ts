/**
 * Configuration of a `Distributor` (one per process) and of its `Connection`s (one multicast
 * group + UDP port each), as `Schema.Class`es with documented defaults.
 *
 * Every field has a default, so `new ConnectionConfig({ group, port })` and decoding partial input
 * (JSON, environment variables) both fill in the rest. Durations are plain numbers in milliseconds
 * with names ending in `Ms`; sizes are in bytes. Validation lives in the schemas only: the JSON and
 * environment readers decode through them, so every source applies the same rules.
 *
 * Environment variables: prefix + the field name in SCREAMING_SNAKE_CASE, nested fields joined with
 * `_` — e.g. `DISTRIBUTOR_APPLICATION`, `DISTRIBUTOR_CONSOLE_PORT`, `DISTRIBUTOR_NAK_BACKOFF_MS`.
 * A missing variable means the default. See docs/CONFIGURATION.md for the full table.
 *
 * Unknown fields are errors (`InvalidConfig` with reason `UnknownField` when decoding, a
 * `ParseError` from the constructors), and so are unknown variables under the prefix for
 * `loadDistributorConfig` / `loadConnectionConfig` (see `checkEnvironment`).
 *
 * @since 0.1.0
 */
import { hostname, networkInterfaces } from "node:os"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as HashSet from "effect/HashSet"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "./DistributorError.js"
import type { EngineConfig } from "./internal/protocol/engine.js"
import { DEFAULT_FRESHNESS_MS, type EngineSecurity } from "./internal/security/config.js"
import { parseKey, passphraseKey } from "./internal/security/keys.js"

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
/** Largest value a socket buffer option accepts (a C `int`). */
const MAX_SOCKET_BUFFER = 2 ** 31 - 1
/** Host and application travel in every packet with a u8 byte-length prefix. */
const MAX_NAME_BYTES = 255
const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/** An integer in `[min, max]`; rejects NaN, ±Infinity and fractions. */
const IntBetween = (min: number, max: number) => Schema.Int.pipe(Schema.between(min, max))

const controlCharIndex = (s: string): number => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return i
  }
  return -1
}

const utf8Length = (s: string): number => Buffer.byteLength(s, "utf8")

/** A name carried in every packet (host or application). */
const Name = (what: string, maxChars: number) =>
  Schema.String.pipe(
    Schema.filter((s) => {
      if (s.length === 0) return `${what} must not be empty`
      if (s.length > maxChars) return `${what} must be at most ${maxChars} characters, got ${s.length}`
      if (utf8Length(s) > MAX_NAME_BYTES) {
        return `${what} must be at most ${MAX_NAME_BYTES} bytes in UTF-8, got ${utf8Length(s)}`
      }
      const i = controlCharIndex(s)
      if (i >= 0) return `${what} must not contain control characters (found U+${hex4(s.charCodeAt(i))} at index ${i})`
      return true
    })
  )

const hex4 = (n: number): string => n.toString(16).toUpperCase().padStart(4, "0")

/**
 * Strict dotted-quad parse: four decimal octets 0..255, no leading zeros (which some resolvers
 * read as octal), no whitespace.
 */
const parseDottedQuad = (s: string): ReadonlyArray<number> | undefined => {
  const parts = s.split(".")
  if (parts.length !== 4) return undefined
  const octets: Array<number> = []
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined
    const n = Number(part)
    if (n > 255) return undefined
    octets.push(n)
  }
  return octets
}

const isMulticast = (octets: ReadonlyArray<number>): boolean => octets[0] >= 224 && octets[0] <= 239

/** An IPv4 multicast group address (224.0.0.0/4). */
const MulticastGroup = Schema.String.pipe(
  Schema.filter((s) => {
    if (s.includes(":")) {
      return (
        `IPv6 is not supported: ${JSON.stringify(s)} is an IPv6 address; use an IPv4 multicast group ` +
        "in 224.0.0.0/4, e.g. 239.192.0.1"
      )
    }
    const octets = parseDottedQuad(s)
    if (octets === undefined) {
      return `Expected an IPv4 multicast address (dotted quad in 224.0.0.0/4, e.g. 239.192.0.1), got ${JSON.stringify(s)}`
    }
    if (!isMulticast(octets)) {
      return `${s} is not a multicast address: the group must be in 224.0.0.0/4 (224.0.0.0 to 239.255.255.255)`
    }
    return true
  })
)

/** The IPv4 address of a local interface, or 0.0.0.0 for the OS default. */
const InterfaceAddress = Schema.String.pipe(
  Schema.filter((s) => {
    if (s.includes(":")) return `IPv6 is not supported: ${JSON.stringify(s)} is not an IPv4 interface address`
    const octets = parseDottedQuad(s)
    if (octets === undefined) {
      return `Expected the IPv4 address of a local interface as a dotted quad (or 0.0.0.0 for the OS default), got ${JSON.stringify(s)}`
    }
    if (isMulticast(octets)) return `${s} is a multicast address; the interface must be a local unicast IPv4 address`
    if (s === "255.255.255.255") return "255.255.255.255 is the broadcast address, not an interface address"
    return true
  })
)

/** A console access token: URL-, header- and cookie-safe characters only, long enough to guess. */
const ConsoleToken = Schema.String.pipe(
  Schema.filter((s) => {
    if (s.length < 16 || s.length > 256) return `console token must be 16..256 characters, got ${s.length}`
    if (!/^[A-Za-z0-9._~-]+$/.test(s)) {
      return "console token may contain only A-Z a-z 0-9 . _ ~ - (e.g. from `openssl rand -hex 32`)"
    }
    return true
  })
)

/** An `allowedHosts` entry: `name`, `name:port`, `[v6]`, `[v6]:port`, or `*`. */
const AllowedHost = Schema.String.pipe(
  Schema.filter((s) =>
    s === "*" || /^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.test(s)
      ? true
      : `allowed host must be a host name or IP, optionally with :port ([v6] in brackets), or "*"; got ${JSON.stringify(s)}`
  )
)

/**
 * Schema.Class constructors drop fields they do not have; ours throw a `ParseError` for them
 * instead, like they do for a bad value (decoding reports them as `InvalidConfig`).
 */
const rejectUnknownFields = (props: unknown, fields: Schema.Struct.Fields, what: string): void => {
  if (props === null || typeof props !== "object") return
  for (const key of Object.keys(props)) {
    if (!Object.hasOwn(fields, key)) {
      const value = (props as Record<string, unknown>)[key]
      const message = unknownMessage("field", key, Object.keys(fields))
      throw new ParseResult.ParseError({
        issue: new ParseResult.Pointer(key, props, new ParseResult.Unexpected(value, `${message} of ${what}`))
      })
    }
  }
}

/** A bind address for the HTTP console: a host name or IP literal, without whitespace. */
const BindHost = Schema.String.pipe(
  Schema.filter((s) => {
    if (s.length === 0) return "console host must not be empty"
    if (s.length > 253) return `console host must be at most 253 characters, got ${s.length}`
    if (/\s/.test(s) || controlCharIndex(s) >= 0) {
      return `console host must not contain whitespace or control characters, got ${JSON.stringify(s)}`
    }
    return true
  })
)

// ---------------------------------------------------------------------------------------------
// WebConsoleConfig
// ---------------------------------------------------------------------------------------------

/**
 * The HTTP web console (HTML page, JSON and Prometheus text).
 *
 * @since 0.1.0
 */
export class WebConsoleConfig extends Schema.Class<WebConsoleConfig>("WebConsoleConfig")({
  /** Whether the Distributor starts the web console. Default: `true`. */
  enabled: Schema.optionalWith(Schema.Boolean, { default: () => true, exact: true }),
  /**
   * Address the console binds to (host name or IP literal). Default: `"127.0.0.1"` (local only;
   * use `"0.0.0.0"` to expose it on every interface).
   */
  host: Schema.optionalWith(BindHost, { default: () => "127.0.0.1", exact: true }),
  /** TCP port of the console, 0..65535; 0 picks a free port. Default: `8888`. */
  port: Schema.optionalWith(IntBetween(0, 65535), { default: () => 8888, exact: true }),
  /**
   * Access token (16..256 characters of `A-Z a-z 0-9 . _ ~ -`, e.g. `openssl rand -hex 32`) that
   * every request must carry: `Authorization: Bearer <token>`, or `?token=<token>` once in a
   * browser (a cookie keeps it). Required when `host` is not a loopback address: the console
   * refuses to start without one (`WebConsoleError` `TokenRequired`). Redacted in the decoded
   * config. Default: none.
   */
  token: Schema.optionalWith(Schema.Redacted(ConsoleToken), { exact: true }),
  /**
   * Extra `Host` header values the console answers, besides its own address, `localhost`,
   * `127.0.0.1` and `[::1]` with its port (the check that stops DNS rebinding): `name` (any port),
   * `name:port`, or `"*"` to turn the check off (e.g. behind a reverse proxy that rewrites nothing).
   * Default: `[]`.
   */
  allowedHosts: Schema.optionalWith(Schema.Array(AllowedHost), { default: () => [], exact: true })
}) {
  constructor(
    props: void | Schema.Struct.Constructor<typeof WebConsoleConfig.fields> = {},
    options?: Schema.MakeOptions
  ) {
    rejectUnknownFields(props, WebConsoleConfig.fields, "WebConsoleConfig")
    super(props, options)
  }
}

// ---------------------------------------------------------------------------------------------
// DistributorConfig
// ---------------------------------------------------------------------------------------------

/**
 * Process-level configuration of a Distributor.
 *
 * @since 0.1.0
 */
export class DistributorConfig extends Schema.Class<DistributorConfig>("DistributorConfig")({
  /**
   * Application name reported to peers in every packet (with `host` it identifies a sender).
   * 1..64 characters, no control characters. Default: `"effect-distributor"`.
   */
  application: Schema.optionalWith(Name("application", 64), { default: () => "effect-distributor", exact: true }),
  /**
   * Host name reported to peers in every packet. 1..255 UTF-8 bytes, no control characters.
   * Default: `os.hostname()`, read when the config is built.
   */
  host: Schema.optionalWith(Name("host", MAX_NAME_BYTES), { default: () => hostname(), exact: true }),
  /** The web console. Default: enabled on 127.0.0.1:8888. */
  console: Schema.optionalWith(WebConsoleConfig, { default: () => new WebConsoleConfig(), exact: true })
}) {
  constructor(
    props: void | Schema.Struct.Constructor<typeof DistributorConfig.fields> = {},
    options?: Schema.MakeOptions
  ) {
    rejectUnknownFields(props, DistributorConfig.fields, "DistributorConfig")
    super(props, options)
  }
}

// ---------------------------------------------------------------------------------------------
// SecurityConfig
// ---------------------------------------------------------------------------------------------

/** A 256-bit key as text: 64 hex digits or the base64 of 32 bytes. */
const KeyText = Schema.String.pipe(
  Schema.filter((s) => {
    const key = parseKey(s)
    return typeof key === "string" ? key : true
  })
)

/** A passphrase, stretched with scrypt when the connection opens. */
const PassphraseText = Schema.String.pipe(
  Schema.filter((s) =>
    s.length >= 8 && s.length <= 1024 ? true : `a passphrase must be 8..1024 characters, got ${s.length}`
  )
)

const securityFields = {
  /**
   * `"encrypt"`: AES-256-GCM over every datagram (confidential and authentic). `"authenticate"`:
   * GMAC only, datagrams travel in the clear but forged or altered ones are dropped. Every peer of
   * the connection must use the same mode. Default: `"encrypt"`.
   */
  mode: Schema.optionalWith(Schema.Literal("encrypt", "authenticate"), {
    default: () => "encrypt" as const,
    exact: true
  }),
  /** Id (0..255) of the key this connection sends with, carried in every datagram. Default: `1`. */
  keyId: Schema.optionalWith(IntBetween(0, 255), { default: () => 1, exact: true }),
  /** The 256-bit key: 64 hex digits or the base64 of 32 bytes (`openssl rand -hex 32`). Redacted. */
  key: Schema.optionalWith(Schema.Redacted(KeyText), { exact: true }),
  /** Instead of `key`: a passphrase (8..1024 characters) stretched with scrypt. Redacted. */
  passphrase: Schema.optionalWith(Schema.Redacted(PassphraseText), { exact: true }),
  /** Id of a second key this connection also accepts (key rotation); must differ from `keyId`. */
  acceptKeyId: Schema.optionalWith(IntBetween(0, 255), { exact: true }),
  /** The second accepted key (with `acceptKeyId`), as `key`. Redacted. */
  acceptKey: Schema.optionalWith(Schema.Redacted(KeyText), { exact: true }),
  /** Instead of `acceptKey`: its passphrase. Redacted. */
  acceptPassphrase: Schema.optionalWith(Schema.Redacted(PassphraseText), { exact: true }),
  /**
   * Largest difference, ms (0 .. 1 day), between a datagram's timestamp and the receiver's clock
   * before it is dropped as stale (bounds replays to receivers that restarted); peers' clocks must
   * agree within it. 0 turns the check off. Default: `300000` (5 minutes).
   */
  freshnessMs: Schema.optionalWith(IntBetween(0, DAY_MS), { default: () => DEFAULT_FRESHNESS_MS, exact: true })
}

const securityConsistency = (c: Schema.Struct.Type<typeof securityFields>) => {
  if (c.key !== undefined && c.passphrase !== undefined) {
    return { path: ["passphrase"], message: "give either key or passphrase, not both" }
  }
  if (c.key === undefined && c.passphrase === undefined) {
    return { path: ["key"], message: "security needs a key (64 hex digits or base64 of 32 bytes) or a passphrase" }
  }
  const accept = c.acceptKey !== undefined || c.acceptPassphrase !== undefined
  if (c.acceptKey !== undefined && c.acceptPassphrase !== undefined) {
    return { path: ["acceptPassphrase"], message: "give either acceptKey or acceptPassphrase, not both" }
  }
  if (c.acceptKeyId === undefined && accept) {
    return { path: ["acceptKeyId"], message: "acceptKey/acceptPassphrase needs its acceptKeyId" }
  }
  if (c.acceptKeyId !== undefined && !accept) {
    return { path: ["acceptKey"], message: "acceptKeyId needs an acceptKey or acceptPassphrase" }
  }
  if (c.acceptKeyId !== undefined && c.acceptKeyId === c.keyId) {
    return { path: ["acceptKeyId"], message: `acceptKeyId must differ from keyId (both ${c.keyId})` }
  }
  return true
}

/**
 * Authenticated encryption of a connection's datagrams (docs/PROTOCOL.md "Security"): one key (or
 * passphrase) with an id, optionally a second accepted one for rotation. Every datagram that is not
 * sealed with an accepted key, or is replayed or stale, is dropped and counted.
 *
 * @since 0.2.0
 */
export class SecurityConfig extends Schema.Class<SecurityConfig>("SecurityConfig")(
  Schema.Struct(securityFields).pipe(Schema.filter(securityConsistency))
) {
  constructor(props: Schema.Struct.Constructor<typeof securityFields>, options?: Schema.MakeOptions) {
    rejectUnknownFields(props, securityFields, "SecurityConfig")
    super(props, options)
  }
}

const keyBytes = (key: Redacted.Redacted<string> | undefined, passphrase: Redacted.Redacted<string> | undefined) => {
  if (key !== undefined) {
    const bytes = parseKey(Redacted.value(key))
    if (typeof bytes === "string") throw new Error(bytes) // unreachable: the schema checked it
    return bytes
  }
  return passphraseKey(Redacted.value(passphrase!))
}

/**
 * The engine's security settings of a connection: keys parsed, passphrases stretched (scrypt, once
 * per connection open).
 *
 * @since 0.2.0
 */
export const toEngineSecurity = (security: SecurityConfig, context: string): EngineSecurity => {
  const keys = [{ id: security.keyId, key: keyBytes(security.key, security.passphrase) }]
  if (security.acceptKeyId !== undefined) {
    keys.push({ id: security.acceptKeyId, key: keyBytes(security.acceptKey, security.acceptPassphrase) })
  }
  return { mode: security.mode, keys, freshnessMs: security.freshnessMs, context }
}

// ---------------------------------------------------------------------------------------------
// ConnectionConfig
// ---------------------------------------------------------------------------------------------

const connectionFields = {
  /**
   * IPv4 multicast group (224.0.0.0/4). IPv6 is not supported. Default: `"239.192.0.1"`, from the
   * administratively scoped range 239.0.0.0/8 (RFC 2365) meant for private use.
   */
  group: Schema.optionalWith(MulticastGroup, { default: () => "239.192.0.1", exact: true }),
  /** UDP port, 1..65535. Default: `5197`. */
  port: Schema.optionalWith(IntBetween(1, 65535), { default: () => 5197, exact: true }),
  /**
   * UDP port of the control channel on the same group, 1..65535: receivers multicast their NAKs and
   * Status reports there, and every connection listens there, while only connections with
   * subscriptions join the data port — so a publish-only process receives no data, not even its own
   * (docs/PROTOCOL.md "Channels"). Default (absent): `port + 1` (`65534` when `port` is 65535).
   * Equal to `port`: one channel for everything, every connection joined to it. The pycast dialect
   * always uses `port` (pycast NAKs on the data channel).
   */
  controlPort: Schema.optionalWith(IntBetween(1, 65535), { exact: true }),
  /**
   * IPv4 address of the local interface to send and receive multicast on. Default: `"0.0.0.0"`,
   * meaning the OS chooses (its default multicast route).
   */
  interface: Schema.optionalWith(InterfaceAddress, { default: () => "0.0.0.0", exact: true }),
  /** Multicast time-to-live (router hops), 0..255; 1 keeps traffic on the local subnet. Default: `1`. */
  ttl: Schema.optionalWith(IntBetween(0, 255), { default: () => 1, exact: true }),
  /**
   * Multicast loopback: whether datagrams sent by this host are also delivered to sockets on this
   * host (needed for peers on the same machine). Default: `true`.
   */
  loopback: Schema.optionalWith(Schema.Boolean, { default: () => true, exact: true }),
  /**
   * Socket receive buffer, bytes (1 KiB .. 2^31-1). Large, because the OS default (~200 KB) drops
   * datagrams at 1–10 k/s. Default: 4 MiB. The OS may cap it (Linux: `net.core.rmem_max`).
   */
  recvBufferSize: Schema.optionalWith(IntBetween(KiB, MAX_SOCKET_BUFFER), { default: () => 4 * MiB, exact: true }),
  /** Socket send buffer, bytes (1 KiB .. 2^31-1). Default: 1 MiB. */
  sendBufferSize: Schema.optionalWith(IntBetween(KiB, MAX_SOCKET_BUFFER), { default: () => MiB, exact: true }),
  /**
   * Largest datagram the engine builds, bytes, protocol header included; 512..65000. Default:
   * `1400`, which fits a 1500-byte Ethernet MTU after the IP (20) and UDP (8) headers with room for
   * tunnels/VLAN tags, so datagrams are never IP-fragmented (a lost fragment loses the datagram).
   */
  segmentSize: Schema.optionalWith(IntBetween(512, 65000), { default: () => 1400, exact: true }),
  /**
   * Largest update payload `publish` accepts, bytes (1 .. 1 GiB); bigger updates fail with
   * `UpdateTooLarge`. Larger-than-segment updates are fragmented. Default: 64 MiB.
   */
  maxUpdateSize: Schema.optionalWith(IntBetween(1, GiB), { default: () => 64 * MiB, exact: true }),
  /**
   * Longest a partly filled datagram is held back to pack more updates under load, ms (0..1000);
   * 0 disables holdback. Default: `2`.
   */
  holdbackDelayMs: Schema.optionalWith(IntBetween(0, 1000), { default: () => 2, exact: true }),
  /**
   * Publish rate, updates/s (0..10^8), at or above which holdback engages; below it every publish
   * is sent at once. Default: `2000` (above a publisher paced at 1 000/s, which should see no
   * added latency).
   */
  holdbackThreshold: Schema.optionalWith(IntBetween(0, 100_000_000), { default: () => 2000, exact: true }),
  /**
   * Longest gap between heartbeats of an idle sender, ms (1 .. 1 h). Heartbeats carry the highest
   * sequence sent, so receivers notice a lost tail. Default: `1000`.
   */
  heartbeatIntervalMs: Schema.optionalWith(IntBetween(1, HOUR_MS), { default: () => 1000, exact: true }),
  /**
   * A remote sender silent this long is considered gone, ms (1 .. 1 day); must exceed
   * `heartbeatIntervalMs`. Default: `10000`.
   */
  senderTimeoutMs: Schema.optionalWith(IntBetween(1, DAY_MS), { default: () => 10_000, exact: true }),
  /**
   * Upper bound of the random back-off before a receiver's first NAK for a gap, ms (0..60000); lets
   * one receiver's NAK suppress the others'. Default: `10`.
   */
  nakBackoffMs: Schema.optionalWith(IntBetween(0, 60_000), { default: () => 10, exact: true }),
  /** Interval between NAK retries for a gap still missing, ms (1..60000). Default: `100`. */
  nakRetryIntervalMs: Schema.optionalWith(IntBetween(1, 60_000), { default: () => 100, exact: true }),
  /** NAK retries (0..1000) before a gap is declared lost (`RetriesExhausted`). Default: `10`. */
  nakMaxRetries: Schema.optionalWith(IntBetween(0, 1000), { default: () => 10, exact: true }),
  /**
   * A sender retransmits a given sequence at most once within this window, ms (0..60000), so
   * duplicate NAKs from many receivers cause one retransmission. Default: `10`.
   */
  retransmitHoldoffMs: Schema.optionalWith(IntBetween(0, 60_000), { default: () => 10, exact: true }),
  /** Retransmission cache size bound, bytes (1 .. 2^53-1). Default: 16 MiB. */
  cacheMaxBytes: Schema.optionalWith(IntBetween(1, Number.MAX_SAFE_INTEGER), { default: () => 16 * MiB, exact: true }),
  /** Retransmission cache age bound, ms (1 .. 1 day): older segments are dropped. Default: `60000`. */
  cacheMaxAgeMs: Schema.optionalWith(IntBetween(1, DAY_MS), { default: () => 60_000, exact: true }),
  /** Most bytes/s a sender puts on the wire (token bucket), 0..10^11; 0 = unlimited. Default: `0`. */
  maxBandwidth: Schema.optionalWith(IntBetween(0, 100_000_000_000), { default: () => 0, exact: true }),
  /**
   * Out-of-order segments (1..2^24) a receiver holds per remote session before declaring an overrun
   * (`ReceiverOverrun`). Default: `16384`.
   */
  reorderBufferSegments: Schema.optionalWith(IntBetween(1, 16_777_216), { default: () => 16_384, exact: true }),
  /**
   * Updates buffered per subscriber (1..2^24) before it overflows (`SubscriberOverflow`); a slow
   * subscriber never stalls the others. Default: `65536`.
   */
  subscriberBufferSize: Schema.optionalWith(IntBetween(1, 16_777_216), { default: () => 65_536, exact: true }),
  /**
   * This connection's name as a receiver, shown to publishers (presence, web console, `distributor
   * pub`); up to 64 characters, no control characters. Default: none (`""`).
   */
  name: Schema.optionalWith(Schema.Union(Schema.Literal(""), Name("name", 64)), { default: () => "", exact: true }),
  /**
   * Flow control of this connection's publishers: `"min"` bounds what is in flight by the slowest
   * live receiver (no receiver meets `NotInSenderCache` or a kernel drop from a fast publisher),
   * `"max"` by the fastest (slow receivers may lose), `"none"` sends at will (hard real time).
   * Default: `"min"`.
   */
  flowControl: Schema.optionalWith(Schema.Literal("min", "max", "none"), {
    default: () => "min" as const,
    exact: true
  }),
  /**
   * Data bytes this connection accepts in flight as a receiver (64 KiB .. 1 GiB), shared by the
   * sessions it receives; at most three quarters of the receive buffer the kernel granted is used,
   * so a full window fits the socket buffer (see `receiverWindow`). Default: 3 MiB, all that the
   * default 4 MiB buffer allows. A window is what a publisher may run ahead of its slowest
   * receiver: on loopback, 3 MiB instead of 2 gave 64 KiB updates ~15 % more throughput for less
   * CPU (fewer reports, each of which wakes the publisher and every other receiver).
   */
  receiverWindowBytes: Schema.optionalWith(IntBetween(64 * KiB, GiB), { default: () => 3 * MiB, exact: true }),
  /**
   * Interval of a receiver's status reports while data flows, ms (1..10000); while idle it doubles
   * up to a quarter of `receiverTimeoutMs`. Default: `100`.
   */
  statusIntervalMs: Schema.optionalWith(IntBetween(1, 10_000), { default: () => 100, exact: true }),
  /**
   * A receiver whose status is not heard this long leaves flow control and presence, ms (10 .. 1 h);
   * at least 4 × `statusIntervalMs`. Default: `2000`.
   */
  receiverTimeoutMs: Schema.optionalWith(IntBetween(10, HOUR_MS), { default: () => 2000, exact: true }),
  /**
   * Remote sending sessions tracked at most (1 .. 10^6); a quarter of them may be unconfirmed (not
   * yet a complete update delivered). A new session beyond either limit is refused and counted
   * (`sessionsRejected`): a flood of forged session ids never evicts a live session. Default: `1024`.
   */
  maxRemoteSessions: Schema.optionalWith(IntBetween(1, 1_000_000), { default: () => 1024, exact: true }),
  /**
   * Retransmitted bytes per second one requesting address may cause (token bucket, a burst of 1/32
   * of it), 0..10^11; 0 = unlimited; all requesters together get four times that. Bounds what
   * forged NAKs can make a publisher send.
   * Default: 4 MiB.
   */
  retransmitRateBytes: Schema.optionalWith(IntBetween(0, 100_000_000_000), { default: () => 4 * MiB, exact: true }),
  /**
   * Reorder buffer + partly reassembled update bytes one remote session may hold (64 KiB .. 2^53-1);
   * beyond it its oldest pending data is given up (`ReceiverOverrun`, counted `bufferOverruns`).
   * Default: `maxUpdateSize` + 16 MiB.
   */
  sessionBufferBytes: Schema.optionalWith(IntBetween(64 * KiB, Number.MAX_SAFE_INTEGER), { exact: true }),
  /**
   * Reorder buffer + reassembly bytes over all remote sessions of the connection (1 MiB .. 2^53-1);
   * beyond it a session holding at least its fair share gives up its oldest pending data.
   * Default: 256 MiB.
   */
  connectionBufferBytes: Schema.optionalWith(IntBetween(MiB, Number.MAX_SAFE_INTEGER), {
    default: () => 256 * MiB,
    exact: true
  }),
  /**
   * Wire format of this connection: `"native"` (this library's protocol) or `"pycast"` (the Python
   * system this project grew from, so pycast nodes and ours share one group; docs/PROTOCOL.md
   * "pycast dialect"). pycast has no flow control and a fixed segment size, so `"pycast"` requires
   * `segmentSize: 8192` and `flowControl: "none"`. Default: `"native"`.
   */
  dialect: Schema.optionalWith(Schema.Literal("native", "pycast"), { default: () => "native" as const, exact: true }),
  /**
   * Authenticated encryption of every datagram (`SecurityConfig`); peers with and without it, or
   * with different keys, do not hear each other. Default: none (plaintext).
   */
  security: Schema.optionalWith(SecurityConfig, { exact: true })
}

/** pycast's segment size: its receivers read datagrams into 8 192-byte buffers and pack by it. */
export const PYCAST_SEGMENT_SIZE = 8192

/** Rules between fields. Each field alone is already valid when this runs. */
const connectionConsistency = (c: Schema.Struct.Type<typeof connectionFields>) =>
  c.dialect === "pycast" && c.segmentSize !== PYCAST_SEGMENT_SIZE
    ? {
        path: ["segmentSize"],
        message: `dialect "pycast" requires segmentSize ${PYCAST_SEGMENT_SIZE} (pycast's fixed segment size), got ${c.segmentSize}`
      }
    : c.dialect === "pycast" && c.flowControl !== "none"
      ? {
          path: ["flowControl"],
          message: `dialect "pycast" requires flowControl "none": pycast receivers send no status reports, got "${c.flowControl}"`
        }
      : c.dialect === "pycast" && c.controlPort !== undefined && c.controlPort !== c.port
        ? {
            path: ["controlPort"],
            message: `dialect "pycast" has no separate control channel: controlPort must be absent or equal port (${c.port}), got ${c.controlPort}`
          }
        : c.dialect === "pycast" && c.security !== undefined
          ? {
              path: ["security"],
              message: 'dialect "pycast" cannot be combined with security: pycast nodes neither seal nor open datagrams'
            }
          : c.senderTimeoutMs <= c.heartbeatIntervalMs
            ? {
                path: ["senderTimeoutMs"],
                message:
                  `senderTimeoutMs (${c.senderTimeoutMs}) must exceed heartbeatIntervalMs (${c.heartbeatIntervalMs}), ` +
                  "or idle senders would be timed out between heartbeats"
              }
            : c.receiverTimeoutMs < 4 * c.statusIntervalMs
              ? {
                  path: ["receiverTimeoutMs"],
                  message:
                    `receiverTimeoutMs (${c.receiverTimeoutMs}) must be at least 4 × statusIntervalMs (${c.statusIntervalMs}), ` +
                    "or receivers would be timed out between their status reports"
                }
              : true

/**
 * One connection: a multicast group + UDP port, its socket options and protocol timings.
 *
 * @since 0.1.0
 */
export class ConnectionConfig extends Schema.Class<ConnectionConfig>("ConnectionConfig")(
  Schema.Struct(connectionFields).pipe(Schema.filter(connectionConsistency))
) {
  constructor(props: void | Schema.Struct.Constructor<typeof connectionFields> = {}, options?: Schema.MakeOptions) {
    rejectUnknownFields(props, connectionFields, "ConnectionConfig")
    super(props, options)
  }

  /** `group:port`, the connection's identity within a Distributor. */
  get key(): string {
    return `${this.group}:${this.port}`
  }

  /** The control channel's port: `controlPort`, its default, or `port` (pycast). */
  get effectiveControlPort(): number {
    if (this.dialect === "pycast") return this.port
    return this.controlPort ?? (this.port < 65535 ? this.port + 1 : this.port - 1)
  }
}

// ---------------------------------------------------------------------------------------------
// Field names (how each field is read from the environment, and which fields exist)
// ---------------------------------------------------------------------------------------------

type Kind = "string" | "integer" | "boolean" | "list"
type EnvSpec = { readonly [field: string]: Kind | EnvSpec }

const distributorEnvSpec = {
  application: "string",
  host: "string",
  console: { enabled: "boolean", host: "string", port: "integer", token: "string", allowedHosts: "list" }
} as const satisfies { readonly [K in keyof typeof DistributorConfig.fields]: Kind | EnvSpec }

const connectionEnvSpec = {
  group: "string",
  port: "integer",
  interface: "string",
  ttl: "integer",
  loopback: "boolean",
  recvBufferSize: "integer",
  sendBufferSize: "integer",
  segmentSize: "integer",
  maxUpdateSize: "integer",
  holdbackDelayMs: "integer",
  holdbackThreshold: "integer",
  heartbeatIntervalMs: "integer",
  senderTimeoutMs: "integer",
  nakBackoffMs: "integer",
  nakRetryIntervalMs: "integer",
  nakMaxRetries: "integer",
  retransmitHoldoffMs: "integer",
  cacheMaxBytes: "integer",
  cacheMaxAgeMs: "integer",
  maxBandwidth: "integer",
  reorderBufferSegments: "integer",
  subscriberBufferSize: "integer",
  name: "string",
  flowControl: "string",
  receiverWindowBytes: "integer",
  statusIntervalMs: "integer",
  receiverTimeoutMs: "integer",
  maxRemoteSessions: "integer",
  retransmitRateBytes: "integer",
  sessionBufferBytes: "integer",
  connectionBufferBytes: "integer",
  dialect: "string",
  controlPort: "integer",
  security: {
    mode: "string",
    keyId: "integer",
    key: "string",
    passphrase: "string",
    acceptKeyId: "integer",
    acceptKey: "string",
    acceptPassphrase: "string",
    freshnessMs: "integer"
  }
} as const satisfies { readonly [K in keyof typeof ConnectionConfig.fields]: Kind | EnvSpec }

/** The field names known at `path` of a spec (`[]` for the root), or undefined below a leaf. */
const fieldsAt = (spec: EnvSpec, path: ReadonlyArray<PropertyKey>): ReadonlyArray<string> | undefined => {
  let node: Kind | EnvSpec = spec
  for (const key of path) {
    if (typeof node === "string") return undefined
    node = node[String(key)]
    if (node === undefined) return undefined
  }
  return typeof node === "string" ? undefined : Object.keys(node)
}

/**
 * Edit distance counting a swap of two neighbours as one edit (optimal string alignment), for "did
 * you mean" suggestions; small inputs only.
 */
const editDistance = (a: string, b: string): number => {
  const d: Array<Array<number>> = Array.from({ length: a.length + 1 }, (_, i) => [i])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
      }
    }
  }
  return d[a.length][b.length]
}

/** The known name closest to `name` (case-insensitive, at most a third of it edited), if any. */
const closest = (name: string, known: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1
  for (const candidate of known) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

const unknownMessage = (what: string, name: string, known: ReadonlyArray<string>): string => {
  const suggestion = closest(name, known)
  return suggestion === undefined
    ? `unknown ${what} ${JSON.stringify(name)}`
    : `unknown ${what} ${JSON.stringify(name)} (did you mean ${JSON.stringify(suggestion)}?)`
}

// ---------------------------------------------------------------------------------------------
// Decoding unknown input and JSON
// ---------------------------------------------------------------------------------------------

type Issue = ParseResult.ArrayFormatterIssue
type RenderPath = (path: ReadonlyArray<PropertyKey>) => string

const dotted: RenderPath = (path) => path.map(String).join(".")

/** Unknown fields are reported first (a misspelt field usually explains the rest). */
const toInvalidConfig = (
  reason: InvalidConfig["reason"],
  all: ReadonlyArray<Issue>,
  render: RenderPath,
  spec: EnvSpec
): InvalidConfig => {
  const unknown: Array<Issue> = []
  const other: Array<Issue> = []
  for (const issue of all) {
    if (issue._tag !== "Unexpected" || issue.path.length === 0) {
      other.push(issue)
      continue
    }
    const name = String(issue.path[issue.path.length - 1])
    const known = fieldsAt(spec, issue.path.slice(0, -1)) ?? []
    unknown.push({ ...issue, message: unknownMessage("field", name, known) })
  }
  if (unknown.length > 0) reason = "UnknownField"
  const issues = [...unknown, ...other]
  const first = issues[0]
  const detail =
    issues.length <= 1
      ? (first?.message ?? "invalid value")
      : issues.map((issue) => `${render(issue.path) || "<root>"}: ${issue.message}`).join("; ")
  return new InvalidConfig({ reason, path: first ? render(first.path) : "", detail })
}

/**
 * A decoder that tells a bad field (`Decode`) from fields that are each valid but contradict one
 * another (`Inconsistent`): the latter pass the plain field struct and fail only the class.
 */
const makeDecoder = <A, I>(
  fieldsOnly: Schema.Schema<any, any, never>,
  schema: Schema.Schema<A, I>,
  spec: EnvSpec
): ((u: unknown, render: RenderPath) => Either.Either<A, InvalidConfig>) => {
  // A field the schema does not have is an error (usually a typo), not silently dropped.
  const options = { errors: "all", onExcessProperty: "error" } as const
  const decodeFields = Schema.decodeUnknownEither(fieldsOnly, options)
  const decodeFull = Schema.decodeUnknownEither(schema, options)
  return (u, render) => {
    const result = decodeFull(u)
    if (Either.isRight(result)) return Either.right(result.right)
    const reason = Either.isRight(decodeFields(u)) ? "Inconsistent" : "Decode"
    return Either.left(toInvalidConfig(reason, ParseResult.ArrayFormatter.formatErrorSync(result.left), render, spec))
  }
}

const decodeDistributor = makeDecoder(Schema.Struct(DistributorConfig.fields), DistributorConfig, distributorEnvSpec)
const decodeConnection = makeDecoder(Schema.Struct(ConnectionConfig.fields), ConnectionConfig, connectionEnvSpec)

/**
 * Decodes a `DistributorConfig` from unknown input (e.g. parsed JSON); missing fields get their
 * defaults. Fails with `InvalidConfig` whose `path` names the first bad field (e.g. `console.port`).
 *
 * @since 0.1.0
 */
export const decodeDistributorConfig = (u: unknown): Effect.Effect<DistributorConfig, InvalidConfig> =>
  decodeDistributor(u, dotted)

/**
 * Decodes a `ConnectionConfig` from unknown input; missing fields get their defaults. Fails with
 * `InvalidConfig` whose `path` names the first bad field (e.g. `group`); `reason` is `Inconsistent`
 * when every field is valid alone but a cross-field rule fails.
 *
 * @since 0.1.0
 */
export const decodeConnectionConfig = (u: unknown): Effect.Effect<ConnectionConfig, InvalidConfig> =>
  decodeConnection(u, dotted)

const parseJsonText = Schema.decodeUnknownEither(Schema.parseJson())

const fromJsonText = <A>(
  text: string,
  decode: (u: unknown, render: RenderPath) => Either.Either<A, InvalidConfig>
): Effect.Effect<A, InvalidConfig> =>
  Either.match(parseJsonText(text), {
    onLeft: (error) =>
      Effect.fail(
        new InvalidConfig({
          reason: "Decode",
          path: "",
          detail: `malformed JSON: ${ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.message ?? "parse error"}`
        })
      ),
    onRight: (u) => decode(u, dotted)
  })

/**
 * Decodes a `DistributorConfig` from JSON text. Malformed JSON fails with `InvalidConfig`
 * (reason `Decode`, path `""`).
 *
 * @since 0.1.0
 */
export const distributorConfigFromJson = (text: string): Effect.Effect<DistributorConfig, InvalidConfig> =>
  fromJsonText(text, decodeDistributor)

/**
 * Decodes a `ConnectionConfig` from JSON text. Malformed JSON fails with `InvalidConfig`
 * (reason `Decode`, path `""`).
 *
 * @since 0.1.0
 */
export const connectionConfigFromJson = (text: string): Effect.Effect<ConnectionConfig, InvalidConfig> =>
  fromJsonText(text, decodeConnection)

// ---------------------------------------------------------------------------------------------
// Environment variables (Effect Config)
// ---------------------------------------------------------------------------------------------

/** The default prefix of every environment variable. */
const DEFAULT_PREFIX = "DISTRIBUTOR_"

const screamingSnake = (field: string): string => field.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()

const normalizePrefix = (prefix: string): string => (prefix === "" || prefix.endsWith("_") ? prefix : `${prefix}_`)

/**
 * The environment variable of a config field: prefix + SCREAMING_SNAKE_CASE of the field, nested
 * fields joined with `_`. A prefix without a trailing `_` gets one.
 *
 * @example
 * envVarName("DISTRIBUTOR_", ["console", "port"]) // "DISTRIBUTOR_CONSOLE_PORT"
 * envVarName("MARKET", ["nakBackoffMs"]) // "MARKET_NAK_BACKOFF_MS"
 *
 * @since 0.1.0
 */
export const envVarName = (prefix: string, path: ReadonlyArray<string>): string =>
  normalizePrefix(prefix) + path.map(screamingSnake).join("_")

/** Strict: `Config.integer` would read "" as 0 and "0x10" as 16. */
const INTEGER_TEXT = /^[+-]?\d+$/

const readVariable = (name: string, kind: Kind): Config.Config<Option.Option<unknown>> => {
  switch (kind) {
    case "string":
      return Config.option(Config.string(name))
    case "boolean":
      return Config.option(Config.boolean(name))
    case "list":
      // Comma-separated; spaces around items and empty items are ignored.
      return Config.option(
        Config.map(Config.string(name), (text) =>
          text
            .split(",")
            .map((item) => item.trim())
            .filter((item) => item !== "")
        )
      )
    case "integer":
      return Config.option(
        Config.string(name).pipe(
          Config.mapOrFail((text) => {
            const trimmed = text.trim()
            return INTEGER_TEXT.test(trimmed)
              ? Either.right(Number(trimmed))
              : Either.left(ConfigError.InvalidData([], `Expected an integer, got ${JSON.stringify(text)}`))
          })
        )
      )
  }
}

/**
 * Reads every variable of `spec` that is set into a (nested) plain object; unset variables are
 * left out so the schema fills their defaults. Only syntax (integer, boolean) is checked here.
 */
const readRaw = (
  prefix: string,
  spec: EnvSpec,
  path: ReadonlyArray<string> = []
): Config.Config<Record<string, unknown>> => {
  const entries: Record<string, Config.Config<Option.Option<unknown>>> = {}
  for (const [field, kind] of Object.entries(spec)) {
    const fieldPath = [...path, field]
    entries[field] =
      typeof kind === "string"
        ? readVariable(envVarName(prefix, fieldPath), kind)
        : readRaw(prefix, kind, fieldPath).pipe(
            Config.map((nested) => (Object.keys(nested).length === 0 ? Option.none() : Option.some(nested)))
          )
  }
  return Config.all(entries).pipe(
    Config.map((values) => {
      const out: Record<string, unknown> = {}
      for (const [field, value] of Object.entries(values)) {
        if (Option.isSome(value)) out[field] = value.value
      }
      return out
    })
  )
}

/** Renders a schema path (`["console", "port"]`) as the variable it came from. */
const envRender =
  (prefix: string): RenderPath =>
  (path) =>
    path.length === 0 ? "" : envVarName(prefix, path.map(String))

/** The Config variant: schema failures become `ConfigError.InvalidData` at the variable's name. */
const toConfig = <A>(
  raw: Config.Config<Record<string, unknown>>,
  decode: (u: unknown, render: RenderPath) => Either.Either<A, InvalidConfig>,
  prefix: string
): Config.Config<A> =>
  raw.pipe(
    Config.mapOrFail((u) =>
      Either.mapLeft(decode(u, envRender(prefix)), (error) =>
        ConfigError.InvalidData(error.path === "" ? [] : [error.path], error.detail)
      )
    )
  )

const configErrorLeaves = (error: ConfigError.ConfigError): Array<{ path: string; message: string }> => {
  switch (error._op) {
    case "And":
    case "Or":
      return [...configErrorLeaves(error.left), ...configErrorLeaves(error.right)]
    default:
      return [{ path: error.path.join("_"), message: error.message }]
  }
}

const configErrorToInvalid = (error: ConfigError.ConfigError): InvalidConfig => {
  const leaves = configErrorLeaves(error)
  const first = leaves[0]
  return new InvalidConfig({
    reason: "Decode",
    path: first?.path ?? "",
    detail:
      leaves.length <= 1
        ? (first?.message ?? String(error))
        : leaves.map((leaf) => `${leaf.path || "<root>"}: ${leaf.message}`).join("; ")
  })
}

/** Every variable a spec reads under `prefix`. */
const variableNames = (prefix: string, spec: EnvSpec, path: ReadonlyArray<string> = []): Array<string> =>
  Object.entries(spec).flatMap(([field, kind]) =>
    typeof kind === "string" ? [envVarName(prefix, [...path, field])] : variableNames(prefix, kind, [...path, field])
  )

/**
/**
 * Process-wide switches under the default prefix that are not configuration fields:
 * `DISTRIBUTOR_NATIVE=0` turns the native addons off (the security layer's AES-GCM accelerator,
 * src/internal/security/gcm.ts, and the UDP backend, `Transport.udpBackend`);
 * `DISTRIBUTOR_NATIVE_PATH` names the AES-GCM addon's file.
 */
const PROCESS_VARIABLES: ReadonlyArray<string> = ["DISTRIBUTOR_NATIVE", "DISTRIBUTOR_NATIVE_PATH"]

/** The variables read under `prefix`: a connection's, and for the default prefix also the distributor's. */
const knownVariables = (prefix: string): ReadonlyArray<string> =>
  normalizePrefix(prefix) === DEFAULT_PREFIX
    ? [
        ...variableNames(DEFAULT_PREFIX, distributorEnvSpec),
        ...variableNames(DEFAULT_PREFIX, connectionEnvSpec),
        ...PROCESS_VARIABLES
      ]
    : variableNames(prefix, connectionEnvSpec)

/**
 * The names of the variables set under `prefix`, enumerated through the current `ConfigProvider`
 * (its path segments joined with `_`: `fromEnv` splits names at `_`, `fromMap` at `.`). A provider
 * that cannot enumerate yields none.
 */
const variablesUnder = (prefix: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.configProviderWith((provider) => {
    const flat = provider.flattened
    const walk = (path: ReadonlyArray<string>): Effect.Effect<Array<string>, ConfigError.ConfigError> =>
      Effect.flatMap(flat.enumerateChildren(path), (children) => {
        if (HashSet.size(children) === 0) return Effect.succeed(path.length === 0 ? [] : [path.join("_")])
        const relevant = Array.from(children).filter((child) => {
          const name = [...path, child].join("_")
          return name.startsWith(prefix) || prefix.startsWith(`${name}_`)
        })
        return Effect.map(
          Effect.forEach(relevant, (child) => walk([...path, child])),
          (names) => names.flat()
        )
      })
    return Effect.orElseSucceed(walk([]), () => [])
  })

/**
 * Fails with `InvalidConfig` (reason `UnknownField`, `path` the variable) when a variable starting
 * with `prefix` is set that the library does not read — usually a misspelt one, which would
 * otherwise be ignored and leave its field at the default. For the default prefix `DISTRIBUTOR_`
 * both the distributor's and the connection's variables are known; for another prefix only the
 * connection's. An empty prefix checks nothing.
 *
 * `loadDistributorConfig` and `loadConnectionConfig` run this check; the `Config` variants
 * (`distributorConfig`, `connectionConfig`) cannot (an Effect `Config` has no way to list the
 * provider's variables), so run it yourself next to them.
 *
 * @since 0.1.0
 */
export const checkEnvironment = (prefix: string = DEFAULT_PREFIX): Effect.Effect<void, InvalidConfig> => {
  const normalized = normalizePrefix(prefix)
  if (normalized === "") return Effect.void
  return Effect.flatMap(variablesUnder(normalized), (names) => {
    const known = knownVariables(normalized)
    const unknown = names.filter((name) => !known.includes(name)).sort()
    if (unknown.length === 0) return Effect.void
    const messages = unknown.map((name) => unknownMessage("environment variable", name, known))
    return Effect.fail(
      new InvalidConfig({
        reason: "UnknownField",
        path: unknown[0],
        detail: messages.length === 1 ? messages[0] : unknown.map((name, i) => `${name}: ${messages[i]}`).join("; ")
      })
    )
  })
}

/** The Effect variant: syntax errors and schema failures both become `InvalidConfig`. */
const load = <A>(
  raw: Config.Config<Record<string, unknown>>,
  decode: (u: unknown, render: RenderPath) => Either.Either<A, InvalidConfig>,
  prefix: string
): Effect.Effect<A, InvalidConfig> =>
  Effect.zipRight(
    checkEnvironment(prefix),
    Effect.flatMap(Effect.mapError(raw, configErrorToInvalid), (u) => decode(u, envRender(prefix)))
  )

/**
 * `DistributorConfig` from environment variables (through the current `ConfigProvider`):
 * `DISTRIBUTOR_APPLICATION`, `DISTRIBUTOR_HOST`, `DISTRIBUTOR_CONSOLE_ENABLED`,
 * `DISTRIBUTOR_CONSOLE_HOST`, `DISTRIBUTOR_CONSOLE_PORT`, `DISTRIBUTOR_CONSOLE_TOKEN`,
 * `DISTRIBUTOR_CONSOLE_ALLOWED_HOSTS` (comma-separated). Unset variables mean defaults; a bad
 * value fails with a `ConfigError` naming the variable. Unknown variables are not detected here
 * (see `checkEnvironment`).
 *
 * @since 0.1.0
 */
export const distributorConfig: Config.Config<DistributorConfig> = toConfig(
  readRaw(DEFAULT_PREFIX, distributorEnvSpec),
  decodeDistributor,
  DEFAULT_PREFIX
)

/**
 * `ConnectionConfig` from environment variables named `prefix` + SCREAMING_SNAKE_CASE of each
 * field (default prefix `DISTRIBUTOR_`: `DISTRIBUTOR_GROUP`, `DISTRIBUTOR_PORT`,
 * `DISTRIBUTOR_NAK_BACKOFF_MS`, …). Use another prefix per connection when a process has several.
 * Unset variables mean defaults; a bad value fails with a `ConfigError` naming the variable.
 *
 * @since 0.1.0
 */
export const connectionConfig = (prefix: string = DEFAULT_PREFIX): Config.Config<ConnectionConfig> =>
  toConfig(readRaw(prefix, connectionEnvSpec), decodeConnection, prefix)

/**
 * Like `distributorConfig`, failing with `InvalidConfig` whose `path` is the variable name; also
 * fails (reason `UnknownField`) for a `DISTRIBUTOR_` variable it does not know (`checkEnvironment`).
 *
 * @since 0.1.0
 */
export const loadDistributorConfig: Effect.Effect<DistributorConfig, InvalidConfig> = load(
  readRaw(DEFAULT_PREFIX, distributorEnvSpec),
  decodeDistributor,
  DEFAULT_PREFIX
)

/**
 * Like `connectionConfig(prefix)`, failing with `InvalidConfig` whose `path` is the variable name
 * (reason `Inconsistent` for a cross-field rule such as senderTimeoutMs > heartbeatIntervalMs;
 * `UnknownField` for a variable under the prefix that it does not know, see `checkEnvironment`).
 *
 * @since 0.1.0
 */
export const loadConnectionConfig = (prefix: string = DEFAULT_PREFIX): Effect.Effect<ConnectionConfig, InvalidConfig> =>
  load(readRaw(prefix, connectionEnvSpec), decodeConnection, prefix)

// ---------------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------------

/**
 * A full window must fit the socket's receive buffer B (the granted size). Linux reserves 2 B and
 * charges each queued datagram its truesize, measured here on loopback at up to 2.07× its bytes
 * (1 400-byte datagrams 2.3 KB, 8 000-byte ones 16.6 KB) and at least ~830 B (64-byte ones). So
 * 3/4 B in bytes and B/2048 in segments: at worst 2.07 × 0.75 B + 830 × B/2048 = 1.96 B < 2 B.
 * (BSD stacks count data bytes against B itself.)
 */
const receiverWindow = (connection: ConnectionConfig, granted: number | undefined) => {
  const buffer =
    granted !== undefined && granted > 0 ? Math.min(granted, connection.recvBufferSize) : connection.recvBufferSize
  return {
    receiverWindowBytes: Math.min(connection.receiverWindowBytes, Math.floor((buffer * 3) / 4)),
    receiverWindowSegments: Math.min(connection.reorderBufferSegments, Math.max(16, Math.floor(buffer / 2048)))
  }
}

/**
 * What the protocol engine of one connection needs: the connection's settings plus the identity
 * (host, application) of the distributor.
 *
 * @since 0.1.0
 */
export const toEngineConfig = (
  distributor: DistributorConfig,
  connection: ConnectionConfig,
  /**
   * The receive buffer the kernel granted (what the socket reports, less Linux's bookkeeping
   * double), when known: a smaller grant than `recvBufferSize` (`net.core.rmem_max`) shrinks the
   * window with it.
   */
  grantedRecvBuffer?: number
): EngineConfig => ({
  host: distributor.host,
  application: distributor.application,
  segmentSize: connection.segmentSize,
  maxUpdateSize: connection.maxUpdateSize,
  holdbackDelayMs: connection.holdbackDelayMs,
  holdbackThreshold: connection.holdbackThreshold,
  heartbeatIntervalMs: connection.heartbeatIntervalMs,
  senderTimeoutMs: connection.senderTimeoutMs,
  nakBackoffMs: connection.nakBackoffMs,
  nakRetryIntervalMs: connection.nakRetryIntervalMs,
  nakMaxRetries: connection.nakMaxRetries,
  retransmitHoldoffMs: connection.retransmitHoldoffMs,
  cacheMaxBytes: connection.cacheMaxBytes,
  cacheMaxAgeMs: connection.cacheMaxAgeMs,
  maxBandwidth: connection.maxBandwidth,
  reorderBufferSegments: connection.reorderBufferSegments,
  flowControl: connection.flowControl,
  receiverName: connection.name,
  ...receiverWindow(connection, grantedRecvBuffer),
  statusIntervalMs: connection.statusIntervalMs,
  receiverTimeoutMs: connection.receiverTimeoutMs,
  maxRemoteSessions: connection.maxRemoteSessions,
  retransmitRateBytes: connection.retransmitRateBytes,
  ...(connection.sessionBufferBytes !== undefined ? { sessionBufferBytes: connection.sessionBufferBytes } : {}),
  connectionBufferBytes: connection.connectionBufferBytes,
  ...(connection.dialect === "pycast"
    ? {
        pycast: {
          group: connection.group,
          port: connection.port,
          hostAddress: connection.interface !== "0.0.0.0" ? connection.interface : firstIpv4Address()
        }
      }
    : {}),
  ...(connection.security === undefined ? {} : { security: toEngineSecurity(connection.security, connection.key) })
})

/**
 * The host address pycast peers see in our packets when the connection uses the OS default
 * interface: the first non-internal IPv4 address, else 127.0.0.1.
 */
const firstIpv4Address = (): string => {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address
  }
  return "127.0.0.1"
}
