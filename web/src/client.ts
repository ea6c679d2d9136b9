// The ot.js client state machine, one per open document, facing the hub.
// Mirrors protocol/src/client.rs (see its diagram): at most one op is
// unacknowledged, later local ops are composed into a buffer, and remote
// ops are transformed against both before they touch the local text.

import { apply, compose, transform, type WireOp } from './ot.js';

export type State =
  | { kind: 'synchronized' }
  | { kind: 'awaitingConfirm'; outstanding: WireOp }
  | { kind: 'awaitingWithBuffer'; outstanding: WireOp; buffer: WireOp };

/// An op ready for the hub, based on revision `rev`.
export interface Outgoing {
  rev: number;
  op: WireOp;
}

export class OtClient {
  state: State = { kind: 'synchronized' };

  /// `rev` is the last hub revision this client has seen; `base`, when
  /// given, the hub's text at `rev`, kept up to date so that a merge by
  /// text (merge.ts) knows what the page's unacknowledged edits are
  /// relative to after the hub has lost the history to rebase them.
  constructor(
    public rev: number,
    public base?: string,
  ) {}

  get synchronized(): boolean {
    return this.state.kind === 'synchronized';
  }

  /// A local op on the current text; returns what to send now.
  local(op: WireOp): Outgoing | undefined {
    const s = this.state;
    switch (s.kind) {
      case 'synchronized':
        this.state = { kind: 'awaitingConfirm', outstanding: op };
        return { rev: this.rev, op };
      case 'awaitingConfirm':
        this.state = { kind: 'awaitingWithBuffer', outstanding: s.outstanding, buffer: op };
        return undefined;
      case 'awaitingWithBuffer':
        this.state = { ...s, buffer: compose(s.buffer, op) };
        return undefined;
    }
  }

  /// The hub made the outstanding op revision `rev`.
  ack(rev: number): Outgoing | undefined {
    const s = this.state;
    this.rev = rev;
    if (s.kind !== 'synchronized' && this.base !== undefined) this.base = apply(this.base, s.outstanding);
    switch (s.kind) {
      case 'synchronized':
        throw new Error('acknowledgement received with no operation outstanding');
      case 'awaitingConfirm':
        this.state = { kind: 'synchronized' };
        return undefined;
      case 'awaitingWithBuffer':
        this.state = { kind: 'awaitingConfirm', outstanding: s.buffer };
        return { rev, op: s.buffer };
    }
  }

  /// Another client's op, ordered as revision `rev`; returns the op to
  /// apply to the local text. Pending ops go first in `transform`: the
  /// hub has not ordered them yet (the tie rule in protocol/src/ot.rs).
  remote(rev: number, op: WireOp): WireOp {
    const s = this.state;
    if (this.base !== undefined) this.base = apply(this.base, op);
    let local = op;
    switch (s.kind) {
      case 'synchronized':
        break;
      case 'awaitingConfirm': {
        const [outstanding, op2] = transform(s.outstanding, op);
        this.state = { kind: 'awaitingConfirm', outstanding };
        local = op2;
        break;
      }
      case 'awaitingWithBuffer': {
        const [outstanding, op2] = transform(s.outstanding, op);
        const [buffer, op3] = transform(s.buffer, op2);
        this.state = { kind: 'awaitingWithBuffer', outstanding, buffer };
        local = op3;
        break;
      }
    }
    this.rev = rev;
    return local;
  }
}
