/**
 * Where this package's optional native addons are (native/, `npm run build:native`), and the
 * switch that turns them all off (`DISTRIBUTOR_NATIVE=0`). An addon is looked for at the package
 * root above this module (src/ and dist/ both put it two levels down) and, for bundles of this
 * code (the benchmarks run bundled workers from a checkout), in the working directory — in either
 * place only when it is a checkout of this package: never native code from just any directory.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const nativeDisabled = (): boolean => process.env.DISTRIBUTOR_NATIVE === "0"

const isThisPackage = (dir: string): boolean => {
  try {
    return JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))?.name === "effect-distributor"
  } catch {
    return false
  }
}

/** The path of the built addon `file` (relative to the package root), if there is one. */
export const findAddon = (file: string): string | undefined => {
  const roots: Array<string> = []
  try {
    roots.push(fileURLToPath(new URL("../../", import.meta.url)))
  } catch {
    // not a file: URL (a bundle loaded some other way)
  }
  roots.push(process.cwd())
  for (const root of roots) {
    const path = join(root, file)
    if (isThisPackage(root) && existsSync(path)) return path
  }
  return undefined
}
