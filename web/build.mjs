// Builds the browser door into hub-server/web-dist/, which is committed and
// embedded in the hub (include_bytes!), so that `cargo build` never needs
// npm. Also writes web-dist/SOURCES.sha256: the sha256 of every input
// (sources, package.json, the lockfile, this script) and every output, in
// `sha256sum` format; hub-server's `the_committed_bundle_matches_its_sources`
// test recomputes it, and scripts/test.sh rebuilds and diffs the bundle.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const out = join(root, 'hub-server', 'web-dist');
mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: { app: join(here, 'src/app.ts'), style: join(here, 'src/style.css') },
  outdir: out,
  entryNames: '[name]',
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
  legalComments: 'none',
  logLevel: 'warning',
});
// Served to browsers that accept gzip (all of them): a third of the
// bytes. Level 9 and no timestamp (Node writes none), so the file is a
// function of its input like the rest.
for (const name of ['app.js', 'style.css']) {
  writeFileSync(join(out, `${name}.gz`), gzipSync(readFileSync(join(out, name)), { level: 9 }));
}
copyFileSync(join(here, 'src/session.html'), join(out, 'session.html'));
copyFileSync(join(here, 'src/index.html'), join(out, 'index.html'));

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}
const inputs = [
  ...files(join(here, 'src')),
  join(here, 'package.json'),
  join(here, 'package-lock.json'),
  join(here, 'build.mjs'),
];
const outputs = ['app.js', 'app.js.gz', 'style.css', 'style.css.gz', 'session.html', 'index.html'].map((f) => join(out, f));
const line = (path) =>
  `${createHash('sha256').update(readFileSync(path)).digest('hex')}  ${relative(root, path).split('\\').join('/')}\n`;
const sorted = (paths) => paths.map(line).sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1));
writeFileSync(join(out, 'SOURCES.sha256'), [...sorted(inputs), ...sorted(outputs)].join(''));
for (const path of outputs) console.log(`${relative(root, path)}: ${readFileSync(path).length} bytes`);
