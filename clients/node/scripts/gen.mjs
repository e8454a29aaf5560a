// Regenerate the TypeScript code of the protos (packages/client/src/gen) with buf and
// protoc-gen-es, both from npm, so a fresh `npm ci` is all it needs.
//
//   node scripts/gen.mjs           rewrite packages/client/src/gen
//   node scripts/gen.mjs --check   exit 1 if the committed code is stale
//
// Input: the repository's protos/, which carries the google.rpc error details the broker sends
// in the grpc-status-details-bin trailer (protos/google/rpc, vendored) beside jobbroker.v1.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, cpSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(dirname(fileURLToPath(import.meta.url)));
const PROTOS = join(HERE, "..", "..", "protos");
const OUT = join(HERE, "packages", "client", "src", "gen");
const BUF = join(HERE, "node_modules", ".bin", "buf");

function files(root) {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true })
    .map((name) => join(root, name))
    .filter((path) => statSync(path).isFile())
    .map((path) => relative(root, path))
    .sort();
}

function generate(into) {
  execFileSync(BUF, ["generate", PROTOS, "--template", "buf.gen.yaml", "--output", into], {
    cwd: HERE,
    stdio: "inherit",
  });
}

const check = process.argv.includes("--check");
const tmp = mkdtempSync(join(tmpdir(), "jobbroker-gen-"));
try {
  generate(tmp);
  if (check) {
    const fresh = files(tmp);
    const committed = files(OUT);
    const stale = [...new Set([...fresh, ...committed])].filter(
      (name) =>
        !fresh.includes(name) ||
        !committed.includes(name) ||
        !readFileSync(join(tmp, name)).equals(readFileSync(join(OUT, name))),
    );
    if (stale.length) {
      console.error(`stale generated code in ${relative(process.cwd(), OUT)}, run npm run gen:`);
      for (const name of stale) console.error(`  ${name}`);
      process.exit(1);
    }
    console.log("generated code is up to date");
  } else {
    rmSync(OUT, { recursive: true, force: true });
    cpSync(tmp, OUT, { recursive: true });
    console.log(`wrote ${files(OUT).length} files to ${relative(process.cwd(), OUT)}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
