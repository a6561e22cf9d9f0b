/**
 * Access control of the web console, checked on every request before routing:
 *
 * 1. `Host` header (DNS rebinding): a page on `evil.example` that re-points its name at 127.0.0.1
 *    makes the browser send `Host: evil.example:8888`; only the console's own names are answered
 *    (`localhost`, `127.0.0.1`, `[::1]`, the bound address; for a wildcard bind also this machine's
 *    interface addresses and host name), with the console's port, plus `allowedHosts`. Anything
 *    else gets `421 Misdirected Request`.
 * 2. Bearer token, when one is configured: `Authorization: Bearer <token>`, the cookie the page
 *    sets, or `?token=<token>`. `GET /?token=<token>` answers `303 See Other` to `/` with the
 *    cookie, so the token leaves the address bar and the page's own requests (fetch, EventSource,
 *    links) carry the cookie. Anything else gets `401 Unauthorized`. Tokens are compared in
 *    constant time (SHA-256 of both, then `timingSafeEqual`).
 */
import { createHash, timingSafeEqual } from "node:crypto"
import * as os from "node:os"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Redacted from "effect/Redacted"

/** A configured token's text (it may come wrapped in `Redacted`). */
export const tokenValue = (token: Redacted.Redacted<string> | string | undefined): string | undefined =>
  Redacted.isRedacted(token) ? Redacted.value(token) : token

/** Loopback addresses: no token is required to listen on them. */
export const isLoopback = (host: string): boolean => {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1")
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

const isWildcard = (host: string): boolean => host === "0.0.0.0" || host === "::" || host === "[::]"

/** `host[:port]` or `[v6][:port]` → lower-case name (IPv6 without brackets) and port text. */
const splitHost = (value: string): { readonly name: string; readonly port: string | undefined } | undefined => {
  const v = value.trim().toLowerCase()
  if (v === "") return undefined
  if (v.startsWith("[")) {
    const close = v.indexOf("]")
    if (close < 0) return undefined
    const rest = v.slice(close + 1)
    if (rest !== "" && !/^:\d+$/.test(rest)) return undefined
    return { name: v.slice(1, close), port: rest === "" ? undefined : rest.slice(1) }
  }
  const colon = v.lastIndexOf(":")
  if (colon >= 0 && v.indexOf(":") === colon) {
    const port = v.slice(colon + 1)
    if (!/^\d+$/.test(port)) return undefined
    return { name: v.slice(0, colon).replace(/\.$/, ""), port }
  }
  // A bare IPv6 address (no brackets) is not a valid Host header value.
  if (colon >= 0) return undefined
  return { name: v.replace(/\.$/, ""), port: undefined }
}

/** The cookie the page's token is kept in; per port, since cookies do not separate ports. */
export const cookieName = (port: number): string => `distributor_console_${port}`

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest()

export interface GuardOptions {
  /** What the console was asked to bind to. */
  readonly host: string
  /** The address and port actually bound. */
  readonly boundAddress: string
  readonly port: number
  readonly token: string | undefined
  /** Extra `Host` values: `name` (any port) or `name:port`; `"*"` turns the Host check off. */
  readonly allowedHosts: ReadonlyArray<string>
  /**
   * The console's browser convenience: `GET /?token=` answered with a cookie, and that cookie
   * accepted. Default true; the gateway turns it off (WebSocket clients send the token each time).
   */
  readonly cookie?: boolean
}

const noStore = { "cache-control": "no-store", "x-content-type-options": "nosniff" }

export interface Guard {
  /** A response refusing the request, or undefined to serve it. */
  readonly check: (request: HttpServerRequest.HttpServerRequest) => HttpServerResponse.HttpServerResponse | undefined
}

export const make = (options: GuardOptions): Guard => {
  const port = String(options.port)
  const names = new Set(["localhost", "127.0.0.1", "::1"])
  for (const h of [options.host, options.boundAddress]) {
    if (!isWildcard(h)) names.add(h.toLowerCase().replace(/^\[(.*)\]$/, "$1"))
  }
  if (isWildcard(options.host) || isWildcard(options.boundAddress)) {
    names.add(os.hostname().toLowerCase())
    for (const addresses of Object.values(os.networkInterfaces())) {
      for (const a of addresses ?? []) names.add(a.address.toLowerCase().replace(/%.*$/, ""))
    }
  }
  const anyHost = options.allowedHosts.includes("*")
  const extraAnyPort = new Set<string>()
  const extraExact = new Set<string>()
  for (const entry of options.allowedHosts) {
    const parsed = splitHost(entry)
    if (parsed === undefined) continue
    if (parsed.port === undefined) extraAnyPort.add(parsed.name)
    else extraExact.add(`${parsed.name}:${parsed.port}`)
  }

  const hostAllowed = (header: string | undefined): boolean => {
    if (anyHost) return true
    if (header === undefined) return false
    const parsed = splitHost(header)
    if (parsed === undefined) return false
    if (extraAnyPort.has(parsed.name)) return true
    if (parsed.port !== undefined && extraExact.has(`${parsed.name}:${parsed.port}`)) return true
    // Browsers leave the port out only when it is the scheme's default.
    const portMatches = parsed.port === undefined ? port === "80" : parsed.port === port
    return portMatches && names.has(parsed.name)
  }

  const expected = options.token === undefined ? undefined : digest(options.token)
  const matches = (candidate: string | undefined): boolean =>
    expected !== undefined && candidate !== undefined && timingSafeEqual(digest(candidate), expected)
  const cookie = cookieName(options.port)

  const fromCookie = (header: string | undefined): string | undefined => {
    if (header === undefined) return undefined
    for (const part of header.split(";")) {
      const eq = part.indexOf("=")
      if (eq > 0 && part.slice(0, eq).trim() === cookie) return part.slice(eq + 1).trim()
    }
    return undefined
  }

  const misdirected = HttpServerResponse.text(
    "421 Misdirected Request: this console does not answer to that Host header. Use the address it listens " +
      "on (or localhost), or add the name to the console's allowedHosts.\n",
    { status: 421, headers: noStore }
  )
  const unauthorized = HttpServerResponse.text(
    "401 Unauthorized: this console needs its access token. Open /?token=<token> once in a browser (a cookie " +
      "keeps it), or send the header Authorization: Bearer <token>.\n",
    { status: 401, headers: { ...noStore, "www-authenticate": 'Bearer realm="effect-distributor console"' } }
  )

  return {
    check: (request) => {
      if (!hostAllowed(request.headers.host)) return misdirected
      if (expected === undefined) return undefined
      const authorization = request.headers.authorization
      if (authorization !== undefined) {
        const m = /^bearer\s+(\S+)\s*$/i.exec(authorization)
        return m !== null && matches(m[1]) ? undefined : unauthorized
      }
      const query = new URL(request.url, "http://console.invalid").searchParams.get("token")
      if (query !== null) {
        if (!matches(query)) return unauthorized
        if (options.cookie === false) return undefined
        const path = new URL(request.url, "http://console.invalid").pathname
        if (path !== "/" || request.method !== "GET") return undefined
        // The page: keep the token in a cookie and take it out of the address bar (and history).
        return HttpServerResponse.empty({
          status: 303,
          headers: {
            ...noStore,
            location: "./",
            "referrer-policy": "no-referrer",
            // Lax, not Strict: links from other sites to the page still work, and every route is a
            // read-only GET, so there is nothing to forge.
            "set-cookie": `${cookie}=${query}; Path=/; HttpOnly; SameSite=Lax`
          }
        })
      }
      return options.cookie !== false && matches(fromCookie(request.headers.cookie)) ? undefined : unauthorized
    }
  }
}
