// What a view of the session's shared terminal shows and sends, apart from
// VS Code: the replay, then live output in seq order (TerminalFeed); the
// size it shows the terminal at (SizeFollower); and keystrokes sent one
// request at a time (RequestQueue). No `vscode` import: unit-tested in node.

import type { TerminalEndedParams, TerminalOutputParams, TerminalSize, TerminalStartedParams } from './protocol';

/**
 * Full reset (RIS). A replay holds the whole recent screen, so one that
 * comes after something was drawn replaces it rather than adding to it.
 */
export const RESET = '\x1bc';

/**
 * Live output kept while the replay is awaited: it normally comes before
 * the replay and is inside it, but what came after it must not be lost.
 * Past this many chunks the oldest go, which the replay covers.
 */
const MAX_EARLY = 4096;

export class TerminalFeed {
  /** The terminal shown; undefined until its terminalStarted or replay. */
  terminalId: number | undefined;
  /** Ended for good: a later Open makes a new view. */
  ended = false;
  /** No replay since the view asked for one: live output waits for it. */
  private awaitingReplay = true;
  /** The seq of the next live output to show; older is in the replay. */
  private nextSeq = 0;
  private early: TerminalOutputParams[] = [];
  /** Whether anything was written, which a replay must then clear. */
  private drawn = false;

  /**
   * A terminalStarted. Returns true when the view must ask for the replay
   * again (send `chorus.terminal`): it is one the view did not ask for, so
   * the proxy rejoined the hub and output may have been missed, or a new
   * terminal opened after this one ended unseen.
   */
  started(params: TerminalStartedParams): boolean {
    if (this.ended) {
      return false;
    }
    if (this.terminalId === undefined) {
      this.terminalId = params.terminalId;
      return false;
    }
    if (params.terminalId === this.terminalId && this.awaitingReplay) {
      return false;
    }
    if (params.terminalId !== this.terminalId) {
      this.terminalId = params.terminalId;
      this.early = [];
    }
    this.awaitingReplay = true;
    return true;
  }

  /** A terminalOutput: the text to write to the view ('' for none). */
  output(params: TerminalOutputParams): string {
    if (this.ended) {
      return '';
    }
    if (params.replay) {
      return this.replay(params);
    }
    if (this.awaitingReplay) {
      if (this.terminalId === undefined || params.terminalId === this.terminalId) {
        this.early.push(params);
        if (this.early.length > MAX_EARLY) {
          this.early.shift();
        }
      }
      return '';
    }
    if (params.terminalId !== this.terminalId || params.seq < this.nextSeq) {
      return '';
    }
    this.nextSeq = params.seq + 1;
    this.drawn ||= params.data !== '';
    return params.data;
  }

  private replay(params: TerminalOutputParams): string {
    this.terminalId ??= params.terminalId;
    if (params.terminalId !== this.terminalId) {
      return '';
    }
    let text = (this.drawn ? RESET : '') + params.data;
    this.drawn = true;
    this.awaitingReplay = false;
    this.nextSeq = params.seq;
    const after = this.early
      .filter((e) => e.terminalId === this.terminalId && e.seq >= this.nextSeq)
      .sort((a, b) => a.seq - b.seq);
    this.early = [];
    for (const e of after) {
      if (e.seq >= this.nextSeq) {
        text += e.data;
        this.nextSeq = e.seq + 1;
      }
    }
    return text;
  }

  /** A terminalEnded: the line that says so ('' when it is not this view's terminal). */
  end(params: TerminalEndedParams): string {
    if (this.ended || params.terminalId !== this.terminalId) {
      return '';
    }
    return this.close(params.reason);
  }

  /** Ends the view without a terminalEnded (the session was left). */
  close(reason: string): string {
    if (this.ended) {
      return '';
    }
    this.ended = true;
    this.early = [];
    return `\r\n[terminal ended: ${reason}]\r\n`;
  }
}

export function sameSize(a: TerminalSize | undefined, b: TerminalSize | undefined): boolean {
  return a !== undefined && b !== undefined && a.cols === b.cols && a.rows === b.rows;
}

/**
 * The terminal follows its most recent typist, so it is often sized for
 * someone else's view. Output laid out for another width reads as garbage,
 * so the view shows the terminal at its real size (VS Code's dimension
 * override, which only ever shrinks a view) until this user types: then
 * the terminal takes this view's size and the override goes.
 */
export class SizeFollower {
  /** This view's own size as last sent; the override's echoes are not. */
  private own: TerminalSize | undefined;
  /** The size forced on the view, if any. */
  private forced: TerminalSize | undefined;

  /** The size this view opens with. */
  opened(size: TerminalSize): void {
    this.own = size;
  }

  /** This view's own size, as last sent. */
  get size(): TerminalSize | undefined {
    return this.own;
  }

  /** VS Code sized the view: the size to send, if any. */
  viewSized(size: TerminalSize): TerminalSize | undefined {
    // While forced, VS Code reports the forced size back (or the panel's,
    // when smaller): neither is a size this user asked for.
    if (this.forced || sameSize(size, this.own)) {
      return undefined;
    }
    this.own = size;
    return size;
  }

  /**
   * The terminal's size changed (terminalStarted, terminalResized): the
   * override to set, null to lift it, undefined for no change.
   */
  terminalSized(size: TerminalSize): TerminalSize | null | undefined {
    if (sameSize(size, this.own)) {
      return this.lift();
    }
    if (sameSize(size, this.forced)) {
      return undefined;
    }
    this.forced = { cols: size.cols, rows: size.rows };
    return this.forced;
  }

  /** This user types: null when the override must go, as the terminal is about to take this view's size. */
  typing(): null | undefined {
    return this.lift();
  }

  private lift(): null | undefined {
    if (!this.forced) {
      return undefined;
    }
    this.forced = undefined;
    return null;
  }
}

export type TerminalRequest =
  | { kind: 'open'; size: TerminalSize }
  | { kind: 'input'; data: string }
  | { kind: 'resize'; size: TerminalSize };

/**
 * A view's requests to the proxy, one in flight at a time. The language
 * server may handle concurrent requests in any order, and keystrokes out
 * of order are wrong input; while one request is out, keystrokes typed
 * meanwhile gather into the next, and a newer size replaces a queued one.
 */
export class RequestQueue {
  private readonly queued: TerminalRequest[] = [];
  private busy = false;
  private disposed = false;

  /** `send` must not reject: the view reports its own errors. */
  constructor(private readonly send: (request: TerminalRequest) => Promise<void>) {}

  push(request: TerminalRequest): void {
    if (this.disposed) {
      return;
    }
    const end = this.queued.length - 1;
    const last = this.queued[end];
    if (request.kind === 'input' && last?.kind === 'input') {
      this.queued[end] = { kind: 'input', data: last.data + request.data };
    } else if (request.kind === 'resize' && last?.kind === 'resize') {
      this.queued[end] = request;
    } else {
      this.queued.push(request);
    }
    void this.pump();
  }

  dispose(): void {
    this.disposed = true;
    this.queued.length = 0;
  }

  private async pump(): Promise<void> {
    if (this.busy) {
      return;
    }
    this.busy = true;
    try {
      for (let next = this.queued.shift(); next && !this.disposed; next = this.queued.shift()) {
        await this.send(next);
      }
    } finally {
      this.busy = false;
    }
  }
}
