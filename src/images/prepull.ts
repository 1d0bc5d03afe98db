/**
 * Prepull keeps the images of the `prepull` setting (langs, resolved as
 * create_kernel resolves them; cluster and node keys, the node's winning) on
 * this node: at start, and whenever the list changes, it pulls what is
 * missing in the background through the pull queue (so its bounds and
 * events apply), logging each image and a summary. With
 * `prepull_before_running` the agent waits for the first pass before it
 * registers `running`.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ImageService } from './service.js';

/** What one pass found and did. */
export interface PrepullReport {
  present: string[];
  pulled: string[];
  failed: Array<{ image: string; error: string }>;
}

export class Prepull {
  private last = '';
  private pass: Promise<PrepullReport> | null = null;
  private again = false;
  private started = false;

  constructor(
    private readonly images: ImageService,
    private readonly list: () => readonly string[],
    private readonly log: Logger,
  ) {}

  /** The first pass; with `wait`, resolves when it is done (or rejects when the signal aborts), else at once. */
  async start(wait: boolean, signal: AbortSignal): Promise<void> {
    const pass = this.update();
    if (!wait || !pass) return;
    const aborted = new Promise<never>((_, reject) =>
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }),
    );
    await Promise.race([pass, aborted]);
  }

  /** Runs a pass when the list differs from the last one run (the first call always runs); resolves with its report. */
  update(): Promise<PrepullReport> | null {
    const key = this.list().join('\n');
    if (this.pass) {
      if (key !== this.last) this.again = true;
      return this.pass;
    }
    if (key === this.last && this.started) return null;
    this.started = true;
    this.last = key;
    this.pass = this.run([...this.list()]).finally(() => {
      this.pass = null;
      if (this.again) {
        this.again = false;
        void this.update();
      }
    });
    return this.pass;
  }

  private async run(langs: string[]): Promise<PrepullReport> {
    const report: PrepullReport = { present: [], pulled: [], failed: [] };
    if (langs.length === 0) return report;
    await Promise.all(
      langs.map(async (lang) => {
        let image = lang;
        try {
          image = this.images.resolve(lang);
          const r = await this.images.pullImage(lang);
          (r.pulled ? report.pulled : report.present).push(image);
          if (r.pulled) this.log.info('prepull: image pulled', { image });
        } catch (err) {
          report.failed.push({ image, error: errorMessage(err) });
          this.log.error('prepull: cannot get an image of the prepull list', { image, error: errorMessage(err) });
        }
      }),
    );
    this.log.info('prepull pass done', {
      present: report.present.length,
      pulled: report.pulled,
      failed: report.failed.map((f) => f.image),
    });
    return report;
  }
}
