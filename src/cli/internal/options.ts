/**
 * Options shared by the commands, and parsers for the values people type: durations (`10s`,
 * `500ms`, `2m`, or plain seconds), percentages (`5`, `5%`), size ranges (`100`, `64-1024`).
 * A value that does not parse is a `ValidationError`, which @effect/cli prints as a one-line
 * message (exit code 2), never a stack trace.
 */

import { readFileSync } from "node:fs"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { HEADER_SIZE } from "./payload.js"

export const invalid = (message: string) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(message)))

/** Milliseconds from `10s`, `500ms`, `2m`, `1.5` (seconds). */
export const parseDuration = (name: string, text: string): Effect.Effect<number, ValidationError.ValidationError> => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text)
  if (m === null)
    return invalid(`--${name}: expected a duration such as 10s, 500ms, 2m or 1.5 (seconds), got '${text}'`)
  const unit = m[2] ?? "s"
  const ms = Number(m[1]) * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000)
  return ms > 0 && Number.isFinite(ms)
    ? Effect.succeed(ms)
    : invalid(`--${name}: must be greater than 0, got '${text}'`)
}

export const duration = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withDescription(description),
    Options.mapEffect((text) => parseDuration(name, text)),
    Options.optional
  )

export const durationWithDefault = (name: string, description: string, fallback: string) =>
  Options.text(name).pipe(
    Options.withDescription(description),
    Options.withDefault(fallback),
    Options.mapEffect((text) => parseDuration(name, text))
  )

/** A fraction 0..1 from a percentage `5` or `5%`. */
export const percent = (name: string, description: string, fallback: number) =>
  Options.text(name).pipe(
    Options.withDescription(`${description} Percent, 0 to 100 (e.g. 5 or 5%).`),
    Options.withDefault(String(fallback)),
    Options.mapEffect((text) => {
      const m = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(text)
      const value = m === null ? Number.NaN : Number(m[1])
      return value >= 0 && value <= 100
        ? Effect.succeed(value / 100)
        : invalid(`--${name}: expected a percentage from 0 to 100, got '${text}'`)
    })
  )

export interface SizeRange {
  readonly min: number
  readonly max: number
}

const MAX_PAYLOAD = 64 * 1024 * 1024

export const sizeRange = (fallback: string) =>
  Options.text("size").pipe(
    Options.withDescription(
      `Payload size in bytes: one size (100) or a range (64-1024), drawn uniformly per update. At least ${HEADER_SIZE} ` +
        "(the header with sequence numbers and send time)."
    ),
    Options.withDefault(fallback),
    Options.mapEffect((text): Effect.Effect<SizeRange, ValidationError.ValidationError> => {
      const m = /^\s*(\d+)\s*(?:(?:-|\.\.)\s*(\d+)\s*)?$/.exec(text)
      if (m === null) return invalid(`--size: expected a size (100) or a range (64-1024) in bytes, got '${text}'`)
      const min = Number(m[1])
      const max = m[2] === undefined ? min : Number(m[2])
      if (min > max) return invalid(`--size: the range ${min}-${max} is empty (minimum above maximum)`)
      if (min < HEADER_SIZE) return invalid(`--size: at least ${HEADER_SIZE} bytes (the payload header), got ${min}`)
      if (max > MAX_PAYLOAD) return invalid(`--size: at most ${MAX_PAYLOAD} bytes (64 MiB), got ${max}`)
      return Effect.succeed({ min, max })
    })
  )

/** An integer option checked against a lower bound. */
export const integerAtLeast = (name: string, description: string, min: number) =>
  Options.integer(name).pipe(
    Options.withDescription(description),
    Options.mapEffect((n) => (n >= min ? Effect.succeed(n) : invalid(`--${name}: must be at least ${min}, got ${n}`)))
  )

export const nonNegativeNumber = (name: string, description: string, fallback: number) =>
  Options.float(name).pipe(
    Options.withDescription(description),
    Options.withDefault(fallback),
    Options.mapEffect((n) =>
      n >= 0 && Number.isFinite(n) ? Effect.succeed(n) : invalid(`--${name}: must be 0 or more, got ${n}`)
    )
  )

// ---- connection -----------------------------------------------------------------------------

export const group = (fallback: string) =>
  Options.text("group").pipe(
    Options.withAlias("g"),
    Options.withDescription("IPv4 multicast group (224.0.0.0/4)."),
    Options.withDefault(fallback)
  )

export const port = (fallback: number) =>
  Options.integer("port").pipe(
    Options.withAlias("p"),
    Options.withDescription("UDP port."),
    Options.withDefault(fallback)
  )

export const controlPort = Options.integer("control-port").pipe(
  Options.withDescription("UDP port of the control channel (NAKs, status reports). Default: --port + 1."),
  Options.optional
)

/** The connection config field of `--control-port`, when given. */
export const controlPortConfig = (value: Option.Option<number>): { readonly controlPort?: number } =>
  Option.isSome(value) ? { controlPort: value.value } : {}

export const iface = (fallback: string) =>
  Options.text("interface").pipe(
    Options.withAlias("i"),
    Options.withDescription(
      "IPv4 address of the local interface to use; 0.0.0.0 lets the OS choose, 127.0.0.1 keeps traffic on this host."
    ),
    Options.withDefault(fallback)
  )

export const application = (fallback: string) =>
  Options.text("application").pipe(
    Options.withDescription("Application name reported to peers."),
    Options.withDefault(fallback)
  )

export type DialectName = "native" | "pycast"

export const dialect = Options.choice("dialect", ["native", "pycast"] as const).pipe(
  Options.withDescription(
    "Wire format: native, or pycast's, to share the group with pycast (Python) nodes " +
      "(segment size 8192, no flow control or presence)."
  ),
  Options.withDefault("native" as const)
)

/** The connection fields a dialect needs: pycast fixes the segment size and has no flow control. */
export const dialectConfig = (dialect: DialectName) =>
  dialect === "pycast" ? ({ dialect: "pycast", segmentSize: 8192, flowControl: "none" } as const) : {}

export const seed = Options.integer("seed").pipe(
  Options.withDescription("Seed of the simulated loss (the same seed drops the same datagrams)."),
  Options.withDefault(1)
)

export const consolePort = Options.integer("console-port").pipe(
  Options.withDescription("Start the web console on this TCP port of 127.0.0.1 (0 picks a free port)."),
  Options.mapEffect((n) =>
    n >= 0 && n <= 65535 ? Effect.succeed(n) : invalid(`--console-port: expected 0 to 65535, got ${n}`)
  ),
  Options.optional
)

/**
 * `--token-env NAME`: the name of an environment variable holding a token (a gateway's), so the
 * secret never appears on the command line. The variable must be set and hold 8+ characters.
 */
export const tokenEnv = (description: string) =>
  Options.text("token-env").pipe(
    Options.withDescription(description),
    Options.mapEffect((name) => {
      const value = process.env[name]
      if (value === undefined || value === "") return invalid(`--token-env: environment variable ${name} is not set`)
      if (value.length < 8) return invalid(`--token-env: the token in ${name} must have at least 8 characters`)
      return Effect.succeed(name)
    }),
    Options.optional
  )

// ---- output ---------------------------------------------------------------------------------

export const json = Options.boolean("json").pipe(
  Options.withDescription("Print one JSON summary on stdout (and nothing else there) instead of human-readable text.")
)

export const jsonLines = Options.boolean("json-lines").pipe(
  Options.withDescription(
    'Print JSON lines on stdout while running ({"type":"ready"}, {"type":"progress"} once a second), ' +
      'then the JSON summary ({"type":"summary"}).'
  )
)

/** The `security` part of a connection config, as the CLI options give it (undefined: plaintext). */
export interface SecurityOption {
  readonly mode: "encrypt" | "authenticate"
  readonly keyId: number
  readonly key?: string
  readonly passphrase?: string
}

/**
 * `--key-file` (a file holding the key: 64 hex digits or base64 of 32 bytes) or `--passphrase-env`
 * (the name of an environment variable holding a passphrase), with `--security-mode` and
 * `--key-id`. Secrets never appear on the command line itself. Neither given: no security (the
 * DISTRIBUTOR_SECURITY_* variables are not read by the tools).
 */
export const security = Options.all({
  keyFile: Options.text("key-file").pipe(
    Options.withDescription(
      "Secure the connection with the key in this file (64 hex digits or base64 of 32 bytes, e.g. `openssl rand -hex 32 > key`)."
    ),
    Options.optional
  ),
  passphraseEnv: Options.text("passphrase-env").pipe(
    Options.withDescription(
      "Secure the connection with the passphrase in this environment variable (instead of --key-file)."
    ),
    Options.optional
  ),
  mode: Options.choice("security-mode", ["encrypt", "authenticate"] as const).pipe(
    Options.withDescription("With a key: encrypt and authenticate (default), or authenticate only."),
    Options.withDefault("encrypt" as const)
  ),
  keyId: Options.integer("key-id").pipe(
    Options.withDescription("With a key: its id, 0..255 (every peer must use the same one)."),
    Options.withDefault(1)
  )
}).pipe(
  Options.mapEffect(
    ({
      keyFile,
      keyId,
      mode,
      passphraseEnv
    }): Effect.Effect<SecurityOption | undefined, ValidationError.ValidationError> => {
      if (Option.isSome(keyFile) && Option.isSome(passphraseEnv))
        return invalid("--key-file and --passphrase-env: give one of them, not both")
      if (!(Number.isInteger(keyId) && keyId >= 0 && keyId <= 255))
        return invalid(`--key-id: expected an integer from 0 to 255, got ${keyId}`)
      if (Option.isSome(keyFile)) {
        let text: string
        try {
          text = readFileSync(keyFile.value, "utf8").trim()
        } catch (err) {
          return invalid(`--key-file: cannot read ${keyFile.value}: ${(err as Error).message}`)
        }
        return Effect.succeed({ mode, keyId, key: text })
      }
      if (Option.isSome(passphraseEnv)) {
        const passphrase = process.env[passphraseEnv.value]
        if (passphrase === undefined || passphrase === "")
          return invalid(`--passphrase-env: environment variable ${passphraseEnv.value} is not set`)
        return Effect.succeed({ mode, keyId, passphrase })
      }
      return Effect.succeed(undefined)
    }
  )
)
