/**
 * The figures of the suite, in the order they run. A new figure is one
 * module exporting a Figure, added here.
 */
import type { Figure } from '../harness.js';
import { burstClaimsFigure } from './burst-claims.js';
import { burstCreateFigure } from './burst-create.js';
import { coldCreateFigure } from './cold-create.js';
import { densityFigure } from './density.js';
import { executeFigure } from './execute.js';
import { heartbeatFigure } from './heartbeat.js';
import { imagePullFigure } from './image-pull.js';
import { injectedCreateFigure } from './injected-create.js';
import { poolFreezeFigure } from './pool-freeze.js';
import { restartFigure } from './restart.js';
import { rpcFigure } from './rpc.js';
import { statsWriterFigure } from './stats-writer.js';
import { streamingFigure } from './streaming.js';
import { warmCreateFigure } from './warm-create.js';

export const figures: Figure[] = [
  rpcFigure,
  coldCreateFigure,
  injectedCreateFigure,
  warmCreateFigure,
  executeFigure,
  streamingFigure,
  burstCreateFigure,
  burstClaimsFigure,
  poolFreezeFigure,
  restartFigure,
  heartbeatFigure,
  statsWriterFigure,
  densityFigure,
  imagePullFigure,
];
