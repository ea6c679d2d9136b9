// What a view of the session's shared terminal shows and sends, apart from
// VS Code: live output in seq order, redrawn by a replay (TerminalFeed); the
// size it shows the terminal at (SizeFollower); and keystrokes sent one
// request at a time (RequestQueue). No `vscode` import: unit-tested in node.

import type { TerminalEndedParams, TerminalOutputParams, TerminalSize, TerminalStartedParams } from './protocol';

/**
 * Full reset (RIS). A replay holds the whole recent screen, so one that
 * comes after something was drawn replaces it rather than adding to it.
 */
export const RESET = '\x1bc';

/**
 * Live output shown since the last replay that a replay arriving after it
 * must draw again; the oldest go first, and a replay covers those.
 */
const MAX_RECENT = 256;

/**
 * The hub sends a replay with the terminalStarted of a terminal that was
 * already open (to a view that joins, to an editor that rejoins), none for
 * one that just opened, whose output starts at seq 0. So live output is
 * shown as it comes, and a replay redraws the screen: what it repeats of
 * the live output shown before it is drawn once.
 */
export class TerminalFeed {
  /** The terminal shown; undefined until the first message about one. */
  terminalId: number | undefined;
  /** Ended for good: a later Open makes a new view. */
  ended = false;
  /** The seq of the next live output to show; older is on screen already. */
  private nextSeq = 0;
  private recent: TerminalOutputParams[] = [];
  /** Whether anything was written that a replay must clear. */
  private drawn = false;

  /** A terminalStarted: the text to write ('' unless it replaces another terminal). */
  started(params: TerminalStartedParams): string {
    if (this.ended || params.terminalId === this.terminalId) {
      return '';
    }
    // A new terminal while this view showed another: that one ended while
    // this editor was away from the hub.
    this.adopt(params.terminalId);
    return this.clear();
  }

  /** A terminalOutput: the text to write ('' for none). */
  output(params: TerminalOutputParams): string {
    if (this.ended) {
      return '';
    }
    if (this.terminalId === undefined) {
      this.adopt(params.terminalId);
    }
    if (params.terminalId !== this.terminalId) {
      return '';
    }
    if (params.replay) {
      return this.replay(params);
    }
    if (params.seq < this.nextSeq) {
      return '';
    }
    this.nextSeq = params.seq + 1;
    this.recent.push(params);
    if (this.recent.length > MAX_RECENT) {
      this.recent.shift();
    }
    this.drawn ||= params.data !== '';
    return params.data;
  }

  private replay(params: TerminalOutputParams): string {
    let text = this.clear() + params.data;
    this.drawn = params.data !== '';
    this.nextSeq = params.seq;
    const after = this.recent.filter((e) => e.seq >= params.seq).sort((a, b) => a.seq - b.seq);
    this.recent = [];
    for (const e of after) {
      if (e.seq >= this.nextSeq) {
        text += e.data;
        this.drawn ||= e.data !== '';
        this.nextSeq = e.seq + 1;
        this.recent.push(e);
      }
    }
    return text;
  }

  private adopt(terminalId: number): void {
    this.terminalId = terminalId;
    this.nextSeq = 0;
    this.recent = [];
  }

  /** What clears the screen, if anything is on it. */
  private clear(): string {
    const text = this.drawn ? RESET : '';
    this.drawn = false;
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
    this.recent = [];
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
      return this.release();
    }
    if (sameSize(size, this.forced)) {
      return undefined;
    }
    this.forced = { cols: size.cols, rows: size.rows };
    return this.forced;
  }

  /**
   * Null when the override must go (this user types, so the terminal is
   * about to take this view's size; or the view is done), else undefined.
   */
  release(): null | undefined {
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
