// The floor plan of src/: its layers, top down, declared once. A module may
// import from its own layer and the layers below it, never from one above.
// .dependency-cruiser.cjs turns this list into rules (checked by `npm test`,
// `npm run lint:layers`), and docs/generate.ts draws it into
// docs/reference/layers.rst for docs/development.rst.
'use strict';

/**
 * @typedef {object} Layer
 * @property {string} name  the layer's name in the picture
 * @property {string[]} paths  folders (ending in /) and files below src/
 * @property {string} what  what lives there, in a line
 */

/** @type {Layer[]} */
const LAYERS = [
  { name: 'cli', paths: ['cli/'], what: 'the agent and agentctl commands, the one owner of signals, agent check' },
  {
    name: 'root',
    paths: ['agent.ts', 'kernel-room.ts', 'modern-side.ts', 'rpc-side.ts', 'index.ts'],
    what: 'the composition root and lifecycle, and the package entry (the client library)',
  },
  { name: 'bindings', paths: ['bindings/'], what: 'the RPC method tables bound to the services, one file per group of methods' },
  { name: 'services', paths: ['services/'], what: 'heartbeat, manager link, registration, live settings, the modern RPC handlers' },
  { name: 'metrics', paths: ['metrics/'], what: 'Prometheus metrics (file and HTTP)' },
  { name: 'kernels', paths: ['kernels/'], what: 'the kernel service: create, restart, destroy, adopt, watch, files, stats' },
  { name: 'pool', paths: ['pool/'], what: 'the warm pool: fills, claims, adoption, sizing, freezing' },
  { name: 'relay', paths: ['relay/'], what: "the link to each kernel's runner: runs, records, terminals, liveness" },
  {
    name: 'containers',
    paths: ['containers/'],
    what: 'what a kernel container is made of: spec, request, image traits, service ports, home',
  },
  { name: 'images', paths: ['images/'], what: 'kernel images: pulls, registry, inventory, prepull' },
  { name: 'stats', paths: ['stats/'], what: "the kernels' stats in the managers' Redis: both generations' forms and writers" },
  { name: 'events', paths: ['events/'], what: 'the event catalogue and its sinks (PUSH, the Redis stream)' },
  { name: 'ports', paths: ['ports/'], what: 'the host port range and the Docker engine that publishes from it' },
  { name: 'scratch', paths: ['scratch/'], what: "the kernels' homes by scratch_type: make, mount, remove, sweep" },
  { name: 'node', paths: ['node/'], what: 'what the node offers and its figures: slots, memory book, CPU and disk' },
  { name: 'accelerators', paths: ['accelerators/'], what: 'GPUs: detection, device books, Docker arguments' },
  { name: 'rpc', paths: ['rpc/'], what: 'the method tables, argument binding, the dispatcher, the clients' },
  { name: 'config', paths: ['config/'], what: 'flags and etcd settings compiled into one typed object, key files' },
  { name: 'wire', paths: ['wire/'], what: 'frames, codecs (msgpack, pickle), the ROUTER loop, Callosum framing, ZAP' },
  { name: 'adapters', paths: ['adapters/'], what: "Docker and etcd, and the labels of the agent's containers" },
  { name: 'util', paths: ['util/'], what: 'small utilities: backoff, atomic writes' },
  { name: 'base', paths: ['errors.ts', 'log.ts'], what: 'the error catalogue and the logger' },
];

module.exports = { LAYERS };
