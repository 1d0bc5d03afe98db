/**
 * README.rst is the operator's manual: it must parse as reStructuredText
 * without a warning (a broken table renders as a wall of text). Checked with
 * Debian's python3-docutils, which deploy/dev/up.sh installs.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { REPO_ROOT } from '../helpers/env.js';

const CHECK = `
import sys, docutils.core
docutils.core.publish_doctree(open(sys.argv[1], encoding='utf-8').read(), source_path=sys.argv[1],
    settings_overrides={'report_level': 2, 'halt_level': 5, 'warning_stream': sys.stdout})
`;

describe('README.rst', () => {
  it('parses as reStructuredText without warnings or errors', () => {
    const out = execFileSync('/usr/bin/python3', ['-c', CHECK, path.join(REPO_ROOT, 'README.rst')], { encoding: 'utf8' });
    expect(out, out).to.equal('');
  });
});
