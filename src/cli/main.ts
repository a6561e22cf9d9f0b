#!/usr/bin/env node
/**
 * The `distributor` command: `pub`, `sub`, `gateway` and `demo`, on @effect/cli, run with
 * `NodeRuntime.runMain` so Ctrl-C (SIGINT/SIGTERM) interrupts the program and every scope closes:
 * publishers flush and say goodbye, sockets leave the group and close, the web console stops,
 * and the command prints its summary.
 *
 * Exit codes: see `ExitCode` in `internal/output.ts`. User errors (bad arguments, an invalid
 * group or topic, a port in use) are printed as one line, never as a stack trace.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Demo from "./demo.js"
import * as Gateway from "./gateway.js"
import { ExitCode, exitCodesHelp } from "./internal/output.js"
import * as Pub from "./pub.js"
import * as Sub from "./sub.js"

const root = Command.make("distributor", {}, () =>
  Console.log("distributor: pub, sub, gateway or demo. Run `distributor --help` or `distributor <command> --help`.")
).pipe(
  Command.withDescription(
    HelpDoc.blocks([
      HelpDoc.p("Reliable publish/subscribe over IP multicast: publish, subscribe and verify, or run the demo."),
      HelpDoc.h1("EXAMPLES"),
      HelpDoc.p("distributor demo"),
      HelpDoc.p("distributor sub -i 127.0.0.1 '/distributor/...'   # in one terminal"),
      HelpDoc.p("distributor pub -i 127.0.0.1 --rate 1000 --duration 10s   # in another"),
      HelpDoc.p(
        "distributor gateway -i 127.0.0.1   # WebSocket clients: distributor sub --gateway ws://127.0.0.1:8787/"
      ),
      HelpDoc.p(exitCodesHelp)
    ])
  ),
  Command.withSubcommands([Pub.command, Sub.command, Gateway.command, Demo.command])
)

const cli = Command.run(root, { name: "distributor", version: "0.1.0" })

const commands = new Set(["pub", "sub", "gateway", "demo"])

/** Tagged errors of the library that mean the user asked for something invalid. */
const usageErrors = new Set(["InvalidConfig", "InvalidTopic"])
/** Errors that mean the run ended before reaching what was asked within --duration. */
const incompleteErrors = new Set(["ReceiversMissing"])

const program = Effect.suspend(() => cli(process.argv)).pipe(
  Effect.catchAll((error) =>
    Effect.sync(() => {
      if (ValidationError.isValidationError(error)) {
        // @effect/cli has printed the problem already.
        const sub = process.argv.slice(2).find((a) => commands.has(a))
        process.stderr.write(`Run \`distributor ${sub ?? "<command>"} --help\` for the options.\n`)
        process.exitCode = ExitCode.Usage
        return
      }
      const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "Error"
      const message = error instanceof Error ? error.message : String(error)
      process.stderr.write(`distributor: ${message}\n`)
      process.exitCode = usageErrors.has(tag)
        ? ExitCode.Usage
        : incompleteErrors.has(tag)
          ? ExitCode.Incomplete
          : ExitCode.Failure
    })
  ),
  // Library logs (engine faults and the like) go to stderr: stdout may carry JSON.
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.prettyLoggerDefault))),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
      // A defect: a bug, not a user error; the stack trace helps.
      process.stderr.write(`distributor: unexpected failure\n${Cause.pretty(exit.cause)}\n`)
      onExit(ExitCode.Failure)
      return
    }
    onExit(Number(process.exitCode ?? ExitCode.Ok))
  }
})
