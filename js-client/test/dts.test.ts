// The committed type declarations (js-client/dist/types and types-cjs) must match what
// tsc emits from the sources now: `npm run build` regenerates them.

import { test } from "node:test"
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { repoRoot } from "./helpers"

test("js-client/dist/types is up to date with js-client/src", { timeout: 120_000 }, async () => {
  const root = repoRoot()
  const out = mkdtempSync(join(tmpdir(), "hearth-dts-"))
  try {
    const tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc")
    await promisify(execFile)(process.execPath, [tsc, "-p", join(root, "js-client", "tsconfig.types.json"), "--outDir", out], { cwd: root })
    const fresh = readdirSync(out).sort()
    // types: the ESM declarations; types-cjs: the same for require(), with a
    // package.json saying "commonjs".
    for (const dir of ["types", "types-cjs"]) {
      const committedDir = join(root, "js-client", "dist", dir)
      assert.deepEqual(readdirSync(committedDir).filter((n) => n !== "package.json").sort(), fresh, `js-client/dist/${dir}: declaration files differ: run \`npm run build\``)
      for (const name of fresh) {
        assert.equal(readFileSync(join(committedDir, name), "utf8"), readFileSync(join(out, name), "utf8"), `js-client/dist/${dir}/${name} is stale: run \`npm run build\``)
      }
    }
    assert.deepEqual(JSON.parse(readFileSync(join(root, "js-client", "dist", "types-cjs", "package.json"), "utf8")), { type: "commonjs" })
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})
