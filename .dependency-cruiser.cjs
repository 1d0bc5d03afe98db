// dependency-cruiser's rules for src/, derived from the floor plan in
// layers.cjs: no import from a layer above (one rule per layer), no circle
// between files, and nothing in src/ that reaches into tests/, bench/ or
// docs/. `npm run lint:layers` runs it; `npm test` runs that.
'use strict';
const { LAYERS } = require('./layers.cjs');

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const pattern = (layer) => `^src/(${layer.paths.map((p) => (p.endsWith('/') ? esc(p) : `${esc(p)}$`)).join('|')})`;

const upward = LAYERS.slice(1).map((layer, i) => ({
  name: `layer-${layer.name}`,
  comment: `${layer.name} (${layer.what}) may not import from the layers above it: ${LAYERS.slice(0, i + 1)
    .map((l) => l.name)
    .join(', ')} (layers.cjs, docs/development.rst)`,
  severity: 'error',
  from: { path: pattern(layer) },
  to: { path: LAYERS.slice(0, i + 1).map(pattern) },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-circular',
      comment: 'a circle of imports between files of src/ (split out what both need into a module below them)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'src-stands-alone',
      comment: 'src/ may not import tests/, bench/ or docs/',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(tests|bench|docs)/' },
    },
    {
      name: 'unplaced-module',
      comment: 'every module of src/ belongs to a layer of layers.cjs: add its folder there (and to docs/development.rst)',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERS.map(pattern) },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
