/**
 * How the commands talk: a live progress line on a terminal (stderr, redrawn in place), plain
 * lines otherwise, and JSON for scripts (`--json`: one summary object on stdout; `--json-lines`:
 * ready/progress lines, then the summary). Writes are synchronous so nothing is lost when the
 * process exits right after.
 */

import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"

/** Process exit codes of every command (also in the README and in `--help`). */
export const ExitCode = {
  /** Done; everything received was verified (reported losses allowed with `--on-loss report`). */
  Ok: 0,
  /** A runtime failure: socket, web console port, unexpected error. */
  Failure: 1,
  /** Bad arguments. */
  Usage: 2,
  /** Verification failed: an update went missing without a reported loss, or a duplicate, reordering or corrupt payload. */
  VerificationFailed: 3,
  /** An irrecoverable loss was reported and `--on-loss stop` stopped the subscriber. */
  LossReported: 4,
  /** `--count` / `--publishers` not reached within `--duration`. */
  Incomplete: 5
} as const

export const exitCodesHelp =
  "Exit codes: 0 ok; 1 runtime failure (socket, console port); 2 bad arguments; " +
  "3 verification failed (an update missing without a reported loss, a duplicate, reordering or corrupt payload); " +
  "4 irrecoverable loss reported (sub --on-loss stop); 5 incomplete (--count/--publishers/--await-receivers not reached within --duration). " +
  "Ctrl-C ends the run cleanly: sockets closed, summary printed."

/** A command's `--help` text: what it does, example command lines, then the exit codes. */
export const commandHelp = (description: string, examples: ReadonlyArray<string>): HelpDoc.HelpDoc =>
  HelpDoc.blocks([
    HelpDoc.p(description),
    HelpDoc.h1("EXAMPLES"),
    ...examples.map((example) => HelpDoc.p(example)),
    HelpDoc.p(exitCodesHelp)
  ])

export interface OutputOptions {
  readonly json: boolean
  readonly jsonLines: boolean
}

const CLEAR_LINE = "\r\x1b[2K"

export class Reporter {
  readonly machine: boolean
  private readonly tty: boolean
  private progressShown = false
  private lastPlainProgress = Date.now()
  private lastTtyProgress = 0

  constructor(
    readonly command: string,
    private readonly options: OutputOptions
  ) {
    this.machine = options.json || options.jsonLines
    this.tty = process.stderr.isTTY === true
  }

  private clearProgress(): void {
    if (this.progressShown) {
      process.stderr.write(CLEAR_LINE)
      this.progressShown = false
    }
  }

  /** A human message: stdout normally, stderr when stdout carries JSON. */
  info(text: string): void {
    this.clearProgress()
    if (this.machine) process.stderr.write(`${text}\n`)
    else process.stdout.write(`${text}\n`)
  }

  /** A JSON line while running (only with `--json-lines`). */
  event(type: string, fields: Record<string, unknown>): void {
    if (this.options.jsonLines) process.stdout.write(`${JSON.stringify({ type, command: this.command, ...fields })}\n`)
  }

  /** Call a few times a second: redrawn on a terminal, a plain line every 5 s otherwise. */
  progress(line: string, now: number): void {
    if (this.machine) return
    if (this.tty) {
      if (now - this.lastTtyProgress < 200) return
      this.lastTtyProgress = now
      // A line wider than the terminal would wrap, and `\r` only returns to its last row.
      const width = process.stderr.columns ?? 0
      process.stderr.write(`${CLEAR_LINE}${width > 1 && line.length >= width ? line.slice(0, width - 1) : line}`)
      this.progressShown = true
    } else if (now - this.lastPlainProgress >= 5000) {
      this.lastPlainProgress = now
      process.stderr.write(`${line}\n`)
    }
  }

  /** A progress JSON line (with `--json-lines`); separate so it can be rate-limited by the caller. */
  progressJson(fields: Record<string, unknown>): void {
    this.event("progress", fields)
  }

  /**
   * Run `progress` (which draws the progress line and returns its fields) every `every` in the
   * scope, and with `--json-lines` also emit its fields as a JSON line once a second.
   */
  forkProgress<A extends Record<string, unknown>, E, R>(
    progress: Effect.Effect<A, E, R>,
    every: string & `${number} millis`
  ): Effect.Effect<void, never, R | Scope.Scope> {
    const draw = Effect.forkScoped(Effect.repeat(progress, Schedule.spaced(every)))
    if (!this.options.jsonLines) return Effect.asVoid(draw)
    const lines = Effect.forkScoped(
      Effect.repeat(
        Effect.flatMap(progress, (f) => Effect.sync(() => this.progressJson(f))),
        Schedule.spaced("1 second")
      )
    )
    return Effect.asVoid(Effect.zipRight(draw, lines))
  }

  summary(summary: Record<string, unknown>, lines: ReadonlyArray<string>): void {
    this.clearProgress()
    if (this.machine) {
      process.stdout.write(`${JSON.stringify({ type: "summary", command: this.command, ...summary })}\n`)
    } else {
      process.stdout.write(`${lines.join("\n")}\n`)
    }
  }

  error(message: string): void {
    this.clearProgress()
    process.stderr.write(`${this.command}: ${message}\n`)
  }
}

export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US")

export const fmtMs = (n: number): string => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0))
