/**
 * The gateway's options: a Schema with the documented defaults, decoded once when it starts; a bad
 * value fails with `InvalidConfig` whose `path` names it (`gateway.port`).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "../../DistributorError.js"

const MiB = 1024 * 1024
const Int = (min: number, max: number) => Schema.Int.pipe(Schema.between(min, max))
const withDefault = <A, I>(schema: Schema.Schema<A, I>, value: () => A) =>
  Schema.optionalWith(schema, { default: value, exact: true })

export const GatewayOptionsSchema = Schema.Struct({
  host: withDefault(Schema.String.pipe(Schema.minLength(1)), () => "127.0.0.1"),
  port: withDefault(Int(0, 65_535), () => 0),
  /** URL path of the WebSocket endpoint. */
  path: withDefault(Schema.String.pipe(Schema.pattern(/^\/[^?#\s]*$/)), () => "/"),
  token: Schema.optional(
    Schema.Union(Schema.Redacted(Schema.String), Schema.String).pipe(
      Schema.filter((t) => (Redacted.isRedacted(t) ? Redacted.value(t) : t).length >= 8, {
        message: () => "a token needs at least 8 characters"
      })
    )
  ),
  allowedHosts: withDefault(Schema.Array(Schema.String), () => []),
  /** How long a disconnected client's session (subscriptions, replay buffer) is kept. */
  resumeWindowMs: withDefault(Int(0, 24 * 3_600_000), () => 60_000),
  /** Replay buffer per client (also its outgoing queue): frames and bytes. */
  replayMaxUpdates: withDefault(Int(1, 16_777_216), () => 10_000),
  replayMaxBytes: withDefault(Int(1024, 2 ** 31), () => 16 * MiB),
  /** Bytes handed to a connected client's socket and not yet written to the network. */
  sendQueueMaxBytes: withDefault(Int(1024, 2 ** 31), () => MiB),
  /** Sessions (connected or within their resume window). */
  maxClients: withDefault(Int(1, 1_000_000), () => 1_000),
  /** Largest frame accepted from a client. */
  maxFrameBytes: withDefault(Int(1024, 2 ** 30), () => 16 * MiB),
  maxSubscriptionsPerClient: withDefault(Int(1, 1_000_000), () => 1_000),
  /** Publish bytes a client may have sent and not had acknowledged (`pubAck`). */
  publishWindowBytes: withDefault(Int(1024, 2 ** 30), () => 4 * MiB),
  /** Malformed frames tolerated from one socket before it is closed. */
  maxErrorsPerSocket: withDefault(Int(1, 1_000_000), () => 100),
  /** Time a new socket has to send `hello`. */
  helloTimeoutMs: withDefault(Int(1, 3_600_000), () => 10_000),
  /** Expired sessions remembered (their numbering), so a late client learns the exact loss. */
  tombstones: withDefault(Int(0, 10_000_000), () => 10_000),
  /** Buffer of the gateway's own subscription on each connection. Default: the connection's. */
  subscriberBufferSize: Schema.optional(Int(1, 16_777_216))
})

export type GatewayOptions = typeof GatewayOptionsSchema.Type
export type GatewayOptionsInput = typeof GatewayOptionsSchema.Encoded

const decodeEither = Schema.decodeUnknownEither(GatewayOptionsSchema, { errors: "all", onExcessProperty: "error" })

export const decodeOptions = (input: unknown): Effect.Effect<GatewayOptions, InvalidConfig> =>
  Either.match(decodeEither(input ?? {}), {
    onRight: Effect.succeed,
    onLeft: (error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      const unknown = issue?.message.startsWith("is unexpected") === true
      return Effect.fail(
        new InvalidConfig({
          reason: unknown ? "UnknownField" : "Decode",
          path: ["gateway", ...(issue?.path ?? []).map(String)].join("."),
          detail: issue?.message ?? "invalid gateway options"
        })
      )
    }
  })
