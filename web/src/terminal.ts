// The session's shared terminal in the page (issue 19; the hub side is
// issue 16's): xterm.js with its DOM renderer, fitted to its panel.
//
// xterm styles itself partly at run time: three `<style>` elements
// (scrollbar colours, the theme, cell dimensions) whose text it sets from
// script, and `setAttribute('style', …)` on cells with 24-bit colours.
// The page's CSP (`style-src 'self'`, ADR 0011) refuses both, as it
// should refuse injected markup. `cssomStyles()` routes those two calls,
// made by our own bundled script, through the CSSOM instead, which CSP
// does not govern (as CodeMirror's constructed stylesheets): a `<style>`
// created by script is an inert `<template>` whose text goes to a constructed
// stylesheet adopted by the document; a `style` attribute set by script
// becomes `style.cssText`. Markup parsed from anywhere is still bound by
// the CSP.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';

let installed = false;

export function cssomStyles(): void {
  if (installed) return;
  installed = true;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, options?: ElementCreationOptions) {
    if (tag.toLowerCase() !== 'style') return create.call(this, tag, options);
    // Even an empty `<style>` is refused (and reported) when inserted; a
    // `<template>` renders nothing and takes the same calls.
    const element = create.call(this, 'template');
    adoptText(this, element);
    return element;
  } as typeof create;
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (this: Element, name: string, value: string) {
    if (name.toLowerCase() === 'style' && this instanceof HTMLElement) this.style.cssText = value;
    else setAttribute.call(this, name, value);
  };
}

function adoptText(doc: Document, element: HTMLElement): void {
  const sheet = new CSSStyleSheet();
  let text = '';
  Object.defineProperty(element, 'textContent', {
    configurable: true,
    get: () => text,
    set: (value: string | null) => {
      text = value ?? '';
      sheet.replaceSync(text);
    },
  });
  const remove = element.remove.bind(element);
  element.remove = () => {
    doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter((s) => s !== sheet);
    remove();
  };
  doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
}

/// One view of the shared terminal. `send` takes protocol messages.
export class TerminalView {
  readonly term: Terminal;
  private readonly fit = new FitAddon();
  /// The terminal shown, and the next live `seq` expected from it.
  private id: number | undefined;
  private nextSeq = 0;
  /// The terminal this page sent `terminal` for (opened or joined).
  private joinedId: number | undefined;
  /// A `terminal` was sent and its `terminalStarted` has not come back.
  private asked = false;
  open = false;

  constructor(
    private readonly element: HTMLElement,
    private readonly send: (msg: object) => boolean,
    private readonly canType: () => boolean,
    private readonly onChange: (status: string) => void,
  ) {
    cssomStyles();
    this.term = new Terminal({ convertEol: false, scrollback: 2000, fontSize: 14 });
    this.term.loadAddon(this.fit);
    this.term.open(element);
    this.term.onData((data) => {
      if (this.open && this.canType()) this.send({ type: 'terminalInput', data });
    });
    this.term.onResize(({ cols, rows }) => {
      if (this.open) this.send({ type: 'terminalResize', cols, rows });
    });
    new ResizeObserver(() => this.refit()).observe(element);
    this.refit();
  }

  refit(): void {
    if (this.element.offsetParent === null) return;
    try {
      this.fit.fit();
    } catch {
      // Not laid out yet; the observer comes back.
    }
  }

  setTypable(typable: boolean): void {
    this.term.options.disableStdin = !typable;
  }

  /// Open the shared terminal, or join the one open.
  request(): void {
    this.refit();
    this.asked = true;
    this.send({ type: 'terminal', cols: this.term.cols, rows: this.term.rows });
  }

  stop(): void {
    this.send({ type: 'terminalStop' });
  }

  /// A fresh connection: whatever was joined is to be joined again.
  reconnected(): void {
    this.joinedId = undefined;
    this.asked = false;
  }

  started(msg: { terminalId: number; clientId: number; name: string }, me: number): void {
    if (msg.terminalId !== this.id) {
      this.id = msg.terminalId;
      this.nextSeq = 0;
      this.term.reset();
    }
    this.open = true;
    this.onChange(`terminal open (opened by ${msg.name})`);
    // Someone else's terminal, or ours from before a reconnect: join it,
    // which brings its recent output (a replay).
    const join = !this.asked && this.joinedId !== msg.terminalId && msg.clientId !== me;
    this.asked = false;
    this.joinedId = msg.terminalId;
    if (join) this.request();
  }

  output(msg: { terminalId: number; seq: number; data: string; replay?: boolean }): void {
    if (msg.terminalId !== this.id) {
      this.id = msg.terminalId;
      this.term.reset();
      this.nextSeq = 0;
    }
    if (msg.replay) {
      this.term.reset();
      this.term.write(msg.data);
      this.nextSeq = msg.seq;
      return;
    }
    if (msg.seq < this.nextSeq) return;
    this.term.write(msg.data);
    this.nextSeq = msg.seq + 1;
  }

  ended(msg: { terminalId: number; reason: string }): void {
    if (this.id !== undefined && msg.terminalId !== this.id) return;
    this.open = false;
    this.joinedId = undefined;
    this.term.write(`\r\n[terminal ended: ${msg.reason}]\r\n`);
    this.onChange(`terminal ended: ${msg.reason}`);
  }
}
