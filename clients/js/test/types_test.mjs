// The TypeScript declarations (herald.d.ts) against an app's use of the API and against the module
// they describe. TypeScript comes from npm (clients/js/package-lock.json; bash
// scripts/install-deps.sh --browser installs it).
//  - tsc, strict, over test/types/usage.ts (test/types/tsconfig.json): no diagnostic, so the
//    example compiles and each misuse it marks with @ts-expect-error is refused;
//  - the same over test/types/usage_nodom.ts with the ECMAScript library alone
//    (test/types/tsconfig.nodom.json: "lib": ["es2020"], no DOM, no @types/node): the declarations
//    name no type of the DOM, so a Node project without DOM types can use them;
//  - every value the declarations export is exported by herald.js, with the same kind, and every
//    member they declare on a class exists on an instance of it;
//  - the events and the client's own error codes herald.js produces are the declared ones.
//
// Usage: node --test test/types_test.mjs   (from clients/js)
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import * as herald from "../herald.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_DIR = path.dirname(HERE);
const DECLARATIONS = path.join(CLIENT_DIR, "herald.d.ts");
const SOURCE = fs.readFileSync(path.join(CLIENT_DIR, "herald.js"), "utf8");

// The program tsc builds from test/types/<config>.
function compile(config = "tsconfig.json") {
  const configPath = path.join(HERE, "types", config);
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, {}, {
    ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(format([d])),
  });
  assert.deepEqual(parsed.errors, []);
  return ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options });
}

function format(diagnostics) {
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f, getCurrentDirectory: () => CLIENT_DIR,
    getNewLine: () => "\n",
  });
}

const program = compile();
const checker = program.getTypeChecker();
const declarations = program.getSourceFile(DECLARATIONS);
const exported = checker.getExportsOfModule(checker.getSymbolAtLocation(declarations));
const byName = new Map(exported.map((symbol) => [symbol.name, symbol]));

// Instances to look members up on, for each declared class.
const instances = {
  HeraldClient: () => new herald.HeraldClient({ url: "ws://127.0.0.1:1/v1/ws", userId: "u",
    deviceId: "d", token: "t", watchNetwork: false }),
  HeraldError: () => new herald.HeraldError("rate_limited", "slow down", { retry_after_ms: 5 }),
  MemoryStorage: () => new herald.MemoryStorage(),
  WebStorage: () => new herald.WebStorage({}),
  FileStorage: () => new herald.FileStorage(path.join(HERE, "never-written.json")),
};

test("tsc finds no error in the usage example and the declarations", () => {
  const diagnostics = ts.getPreEmitDiagnostics(program);
  assert.ok(program.getSourceFiles().some((f) => f.fileName === DECLARATIONS.replaceAll("\\", "/")),
    "usage.ts imports herald.d.ts");
  assert.equal(diagnostics.length, 0, format(diagnostics));
});

test("tsc finds no error in a usage without DOM types, with the ECMAScript library alone", () => {
  const bare = compile("tsconfig.nodom.json");
  const files = bare.getSourceFiles().map((f) => path.basename(f.fileName));
  assert.ok(files.includes("herald.d.ts"), "usage_nodom.ts imports herald.d.ts");
  // A `/// <reference lib="dom" />` or a types package would bring the DOM back in unseen.
  const libraries = files.filter((name) => name.startsWith("lib."));
  assert.ok(libraries.includes("lib.es2020.d.ts"), `the ES2020 library is in: ${libraries}`);
  assert.deepEqual(libraries.filter((name) => /^lib\.(dom|webworker|scripthost)/.test(name)), [],
    "no library of a host (DOM, workers, scripting host)");
  assert.deepEqual(files.filter((name) => !name.startsWith("lib.")).sort(),
    ["herald.d.ts", "usage_nodom.ts"], "no other declarations (no @types/node)");
  const diagnostics = ts.getPreEmitDiagnostics(bare);
  assert.equal(diagnostics.length, 0, format(diagnostics));
});

test("every declared value is exported by herald.js with its kind", () => {
  const values = exported.filter((symbol) => symbol.flags & ts.SymbolFlags.Value);
  assert.ok(values.length >= 10);
  for (const symbol of values) {
    const value = herald[symbol.name];
    if (symbol.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Function)) {
      assert.equal(typeof value, "function", `${symbol.name} is a function or class`);
    } else {
      const type = checker.getTypeOfSymbolAtLocation(symbol, declarations);
      assert.equal(typeof value, checker.typeToString(type), `${symbol.name}'s runtime type`);
    }
  }
  const declared = new Set(values.map((symbol) => symbol.name));
  const undeclared = Object.keys(herald).filter((name) => !declared.has(name));
  assert.deepEqual(undeclared, [], "herald.js exports nothing the declarations leave out");
});

test("every member declared on a class exists on its instances", () => {
  for (const [name, make] of Object.entries(instances)) {
    const symbol = byName.get(name);
    assert.ok(symbol && symbol.flags & ts.SymbolFlags.Class, `${name} is a declared class`);
    const instance = make();
    for (const member of checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol))) {
      const where = member.declarations?.[0]?.getSourceFile().fileName;
      if (where !== declarations.fileName) continue;  // inherited from the standard library
      assert.ok(member.name in instance, `${name}.${member.name} exists`);
      if (member.flags & ts.SymbolFlags.Method) {
        assert.equal(typeof instance[member.name], "function", `${name}.${member.name}()`);
      }
    }
  }
});

// The string literals of a declared union type (ErrorCode) or the keys of an interface (EventMap).
function declaredNames(name) {
  const type = checker.getDeclaredTypeOfSymbol(byName.get(name));
  if (type.isUnion()) return new Set(type.types.map((t) => t.value));
  return new Set(checker.getPropertiesOfType(type).map((p) => p.name));
}

test("the events herald.js emits are the declared ones", () => {
  const emitted = new Set([...SOURCE.matchAll(/this\.emit\("([a-z]+)"/g)].map((m) => m[1]));
  assert.deepEqual([...emitted].sort(), [...declaredNames("EventMap")].sort());
});

test("the error codes herald.js makes are declared", () => {
  const declared = declaredNames("ErrorCode");
  const made = [...SOURCE.matchAll(/new HeraldError\("([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(made.length >= 5);
  assert.deepEqual(made.filter((code) => !declared.has(code)), []);
});
