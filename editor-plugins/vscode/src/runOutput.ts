// Formats a shared run's notifications for the Output channel: a header per
// run, its output as it streams (stderr lines marked), and how it ended.
// No `vscode` import: unit-tested in node.

import type { RunFinishedParams, RunInputParams, RunOutputParams, RunStartedParams } from './protocol';

export class RunFormatter {
  /**
   * Whether the text so far ends a line: chunks split lines anywhere, and
   * a stderr marker belongs only at a line's start.
   */
  private atLineStart = true;
  private lastStream: 'stdout' | 'stderr' | undefined;

  started(params: RunStartedParams): string {
    // The plan says how the project runs; hubs older than plans send none.
    const plan = params.plan ? ` · ${params.plan}` : '';
    const text = `${this.atLineStart ? '' : '\n'}▶ run ${params.runId} · ${params.name} · ${params.doc}${plan}\n`;
    this.atLineStart = true;
    this.lastStream = undefined;
    return text;
  }

  output(params: RunOutputParams): string {
    let data = (params.data ?? '').replace(/\r\n/g, '\n');
    if (data === '') {
      return '';
    }
    let prefix = '';
    // A line cut off on one stream and continued on the other would read
    // as one line; start the other stream's text on a fresh line instead.
    if (!this.atLineStart && this.lastStream !== undefined && this.lastStream !== params.stream) {
      prefix = '\n';
      this.atLineStart = true;
    }
    if (params.stream === 'stderr') {
      const lines = data.split('\n');
      data = lines
        .map((line, i) => {
          const startsLine = i > 0 || this.atLineStart;
          const isTrailingEmpty = i === lines.length - 1 && line === '';
          return startsLine && !isTrailingEmpty ? `stderr: ${line}` : line;
        })
        .join('\n');
    }
    this.atLineStart = data.endsWith('\n');
    this.lastStream = params.stream;
    return prefix + data;
  }

  /** Someone's input: `> line  (from NAME)` per line sent, on lines of their own. */
  input(params: RunInputParams): string {
    const lines: string[] = [];
    if (params.text) {
      lines.push(...params.text.replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n'));
    }
    if (params.eof) {
      lines.push('(end of input)');
    }
    if (params.interrupt) {
      lines.push('(interrupt)');
    }
    if (lines.length === 0) {
      return '';
    }
    const text = lines.map((line) => `> ${line}  (from ${params.name})\n`).join('');
    const prefix = this.atLineStart ? '' : '\n';
    this.atLineStart = true;
    this.lastStream = undefined;
    return prefix + text;
  }

  finished(params: RunFinishedParams): string {
    const text = `${this.atLineStart ? '' : '\n'}■ run ${params.runId}: ${params.summary ?? 'finished'}\n`;
    this.atLineStart = true;
    this.lastStream = undefined;
    return text;
  }
}
