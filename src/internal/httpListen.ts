/**
 * An @effect/platform HTTP server on a Node `http.Server` of our own, listening on `host:port` in
 * the current scope: what the web console and the gateway share. A failure to listen is told apart
 * (`PortInUse` or `Bind`, with a readable detail) so each caller can raise its own typed error.
 */
import * as http from "node:http"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface ListenFailure {
  readonly reason: "PortInUse" | "Bind"
  readonly detail: string
  readonly cause: unknown
}

export interface Listening {
  readonly server: HttpServer.HttpServer
  /** The Node server (to close lingering connections on shutdown). */
  readonly nodeServer: http.Server
  /** The address and port actually bound (the port differs from the one asked for with 0). */
  readonly hostname: string
  readonly port: number
}

export const listen = (host: string, port: number): Effect.Effect<Listening, ListenFailure, Scope.Scope> => {
  let nodeServer: http.Server | undefined
  return NodeHttpServer.make(
    () => {
      nodeServer = http.createServer()
      return nodeServer
    },
    { port, host }
  ).pipe(
    Effect.mapError((error): ListenFailure => {
      const cause = error.cause as NodeJS.ErrnoException | undefined
      const inUse = cause?.code === "EADDRINUSE"
      return {
        reason: inUse ? "PortInUse" : "Bind",
        detail: inUse
          ? `port ${port} is already in use on ${host}`
          : `cannot listen: ${cause?.message ?? String(cause)}`,
        cause
      }
    }),
    Effect.map((server): Listening => {
      const bound = server.address._tag === "TcpAddress" ? server.address : { hostname: host, port }
      return { server, nodeServer: nodeServer!, hostname: bound.hostname, port: bound.port }
    })
  )
}
