/** Aggregation of runner output into run results, for every api version. */
import { expect } from 'chai';
import { completeUpTo, MAX_PENDING_BYTES, MAX_RECORD_BYTES, RunOutput, type OutputFields } from '../../src/relay/output.js';
import { msgpackCodec } from '../../src/wire/codec.js';

/** What a client reads: the fields packed as a reply and unpacked again. */
const wire = (out: OutputFields) => msgpackCodec.decode(msgpackCodec.encode(out)) as Record<string, unknown>;

describe('run output aggregation', () => {
  it('merges adjacent stdout and stderr records into console entries (api 2 and 3)', () => {
    const o = new RunOutput();
    o.addText('stdout', Buffer.from('a'));
    o.addText('stdout', Buffer.from('b\n'));
    o.addText('stderr', Buffer.from('oops\n'));
    o.addMedia(Buffer.from(JSON.stringify({ type: 'image/svg+xml', data: '<svg/>' })));
    o.addText('stdout', Buffer.from('c'));
    o.addHtml(Buffer.from('<b>x</b>'));
    expect(wire(o.take(2))).to.deep.equal({
      console: [
        ['stdout', 'ab\n'],
        ['stderr', 'oops\n'],
        ['media', ['image/svg+xml', '<svg/>']],
        ['stdout', 'c'],
        ['html', '<b>x</b>'],
      ],
    });
    expect(wire(o.take(3))).to.deep.equal({ console: [] });
  });

  it('shapes the same output as stdout, stderr, media and html for api 1', () => {
    const o = new RunOutput();
    o.addText('stdout', Buffer.from('2\n'));
    o.addText('stderr', Buffer.from('e'));
    o.addText('stdout', Buffer.from('3\n'));
    o.addMedia(Buffer.from(JSON.stringify({ type: 'text/plain', data: 'x' })));
    expect(wire(o.take(1))).to.deep.equal({ stdout: '2\n3\n', stderr: 'e', media: [['text/plain', 'x']], html: [] });
  });

  it('keeps a multi-byte character split across two records whole', () => {
    const o = new RunOutput();
    const snow = Buffer.from('é☃\n'); // c3 a9 e2 98 83 0a
    o.addText('stdout', snow.subarray(0, 1));
    o.addText('stdout', snow.subarray(1, 3));
    o.addText('stdout', snow.subarray(3));
    expect(wire(o.take(2))).to.deep.equal({ console: [['stdout', 'é☃\n']] });
    // a split that straddles a take comes out whole in the next one
    o.addText('stdout', snow.subarray(0, 4));
    expect(wire(o.take(2))).to.deep.equal({ console: [['stdout', 'é']] });
    o.addText('stdout', snow.subarray(4));
    expect(wire(o.take(2))).to.deep.equal({ console: [['stdout', '☃\n']] });
  });

  it('truncates a record over 10 MiB with a marker instead of failing', () => {
    const o = new RunOutput();
    o.addText('stdout', Buffer.alloc(MAX_RECORD_BYTES + 5, 'x'));
    const [[type, text]] = (wire(o.take(2)) as { console: Array<[string, string]> }).console as [[string, string]];
    expect(type).to.equal('stdout');
    expect(text.length).to.be.below(MAX_RECORD_BYTES + 200);
    expect(text).to.match(/\[output truncated: a record of 10485765 bytes exceeded the 10485760-byte limit\]\n$/);
  });

  it('turns an unreadable media record into a note, and flushes a dangling byte at the end', () => {
    const o = new RunOutput();
    o.addMedia(Buffer.from('not json'));
    o.addText('stdout', Buffer.from([0xe2, 0x98]));
    o.finish();
    expect(wire(o.take(2))).to.deep.equal({
      console: [
        ['stderr', '[a media record from the kernel could not be read]\n'],
        ['stdout', '\ufffd'],
      ],
    });
  });

  it('is full at MAX_PENDING_BYTES until a reply takes the output, and wakes who waits for room', async () => {
    const o = new RunOutput();
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    for (let i = 0; i < 15; i++) o.addText('stdout', chunk);
    expect(o.full).to.equal(false);
    await o.waitForRoom(); // not full: at once
    o.addText('stdout', chunk);
    expect(o.full).to.equal(true);
    let woke = false;
    const waiting = o.waitForRoom().then(() => (woke = true));
    await new Promise((r) => setImmediate(r)); // every promise that could wake it has run by now
    expect(woke).to.equal(false);
    const out = wire(o.take(2)) as { console: Array<[string, string]> };
    expect(out.console[0]![1]).to.have.length(MAX_PENDING_BYTES); // nothing lost
    await waiting;
    expect(o.full).to.equal(false);
  });

  it('turns bytes that are not UTF-8 into U+FFFD and keeps the rest of the record', () => {
    const o = new RunOutput();
    o.addText('stdout', Buffer.from([0x61, 0xff, 0x62, 0xc3])); // a, a stray byte, b, the lead of a 2-byte character
    o.addText('stdout', Buffer.from([0x28, 0x0a])); // "(" cannot continue it
    expect(wire(o.take(2))).to.deep.equal({ console: [['stdout', 'a\ufffdb\ufffd(\n']] });
  });

  it('finds where an unfinished character begins at the end of a record', () => {
    const snow = Buffer.from('x☃'); // 78 e2 98 83
    expect(completeUpTo(snow)).to.equal(4);
    expect(completeUpTo(snow.subarray(0, 3))).to.equal(1);
    expect(completeUpTo(snow.subarray(0, 2))).to.equal(1);
    expect(completeUpTo(Buffer.from('😀').subarray(0, 3))).to.equal(0);
    expect(completeUpTo(Buffer.alloc(0))).to.equal(0);
  });
});
