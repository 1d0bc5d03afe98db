/**
 * The figures of the suite, in the order they run. A new figure is one
 * module exporting a Figure, added here (figure 3, warm creation from the
 * pool, will be one: its sides are a pooled and a cold create_kernel).
 */
import type { Figure } from '../harness.js';
import { coldCreateFigure } from './cold-create.js';
import { executeFigure } from './execute.js';
import { rpcFigure } from './rpc.js';

export const figures: Figure[] = [rpcFigure, coldCreateFigure, executeFigure];
