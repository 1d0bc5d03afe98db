/**
 * The settings of image collection under disk pressure (src/images/gc.ts),
 * a part of the settings table (setting-table.ts places them after the
 * other image settings): the watermarks on the file system of Docker's data
 * root and how often it is checked.
 */
import { number } from './setting-parsers.js';
import { setting } from './setting-spec.js';

/** The image collection settings, in the order of the manual's table. */
export const IMAGE_GC_SETTINGS = [
  setting({
    key: 'image_gc_high',
    field: 'imageGcHigh',
    doc: "percent used (as df counts it) of the file system of Docker's data root above which the agent removes unused kernel images, least recently used first; 100 = never",
    see: 'Images',
    default: 85,
    live: true,
    parse: number(1, 100),
  }),
  setting({
    key: 'image_gc_low',
    field: 'imageGcLow',
    doc: 'percent used that a collection brings the file system under before it stops (at most image_gc_high)',
    see: 'Images',
    default: 80,
    live: true,
    parse: number(0, 100),
  }),
  setting({
    key: 'image_gc_interval',
    field: 'imageGcIntervalSec',
    doc: "seconds between checks of the data root's usage against image_gc_high (0 = never by itself; agentctl images gc still runs one)",
    see: 'Images',
    default: 300,
    live: true,
    parse: number(0, 24 * 3600),
  }),
];
