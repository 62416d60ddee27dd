// Componentize one JavaScript guest with componentize-js.
//
//   node build.mjs <source.js> <wit-dir> <world> <out.wasm>
//
// scripts/build-foreign-guests.sh copies this file next to the pinned
// node_modules in target/toolchains/js and runs it from there, so the bare
// imports below resolve to the versions in package-lock.json.
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const [sourcePath, witPath, worldName, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node build.mjs <source.js> <wit-dir> <world> <out.wasm>');
  process.exit(2);
}

// componentize-js runs its WIT/bindings splicer as a wasm component on top of
// @bytecodealliance/preview2-shim. Since preview2-shim 0.26 the shim starts
// with no preopened directories, so the splicer could not read the WIT files
// ("reading file ...: No such file or directory (os error 44)"). Give it the
// host root; paths passed below are absolute.
_setPreopens({ '/': '/' });

const { component } = await componentize({
  sourcePath,
  witPath,
  worldName,
});
await writeFile(outPath, component);
